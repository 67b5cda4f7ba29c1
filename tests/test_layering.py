"""The package's layering, read from the source alone (pure AST: no module is imported).

Every import of every module of `byol_ray/` counts, those inside functions too. Two rules:
no import cycle between modules, and each stage imports only the stages below it
(core < learn < runtime < jobs; experiments and report beside them; cli on top).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "byol_ray"

# stage -> the other stages it may import (None: any); a stage may always import itself. No
# stage may import cli; the package root (`byol_ray/__init__.py`, `__main__`) may import any.
ALLOWED: dict[str, set[str] | None] = {
    "core": set(),
    "learn": {"core"},
    "runtime": {"core", "learn"},
    "jobs": {"core", "learn", "runtime", "experiments"},
    "tables": {"core", "experiments"},
    "experiments": {"core", "tables"},
    "report": {"core", "runtime", "tables", "experiments"},
    "cli": None,
}
# stage -> outside engines it never imports (top-level distribution names).
FORBIDDEN_ENGINES = {"core": {"torch", "torchvision", "ray", "mlflow"}, "learn": {"ray", "mlflow"}}



def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, function-level ones included.

    `from a.b import c` imports the module `a.b.c` when that is a module, else `a.b`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in modules else base, node.lineno))
    return found


def _graph() -> dict[str, dict[str, int]]:
    """importer -> {imported module (package ones and outside ones): first line}."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in _imports(name, path, modules):
            if target != name:
                edges.setdefault(target, line)
    return graph


def _where(graph: dict[str, dict[str, int]], importer: str, imported: str) -> str:
    """'a.b (line 12) imports c.d' for failure messages."""
    return f"{importer} (line {graph[importer][imported]}) imports {imported}"


def _stage(module: str) -> str | None:
    """The stage of a package module (`byol_ray.learn.data.views` -> learn); None: the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a, b, ..., a) per strongly connected component of the package's modules."""
    inner = {m: [t for t in edges if t in graph] for m, edges in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in inner[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(inner):
        if node not in index:
            visit(node)
    return [_path_within(inner, set(c), min(c)) for c in components]


def _path_within(inner: dict[str, list[str]], members: set[str], start: str) -> list[str]:
    """A shortest cycle through `start` inside one strongly connected component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in inner[node]:
                if nxt == start:
                    return [*paths[node], start]
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")


def _breaks_order(graph: dict[str, dict[str, int]], importer: str, imported: str) -> bool:
    """Whether this import goes against the stage order or brings in a forbidden engine."""
    stage = _stage(importer)
    if stage is None or ALLOWED[stage] is None:  # the package root and cli
        return False
    if imported not in graph:
        return imported.split(".")[0] in FORBIDDEN_ENGINES.get(stage, ())
    target = _stage(imported)
    return target != stage and target not in ALLOWED[stage]


def _violations(graph: dict[str, dict[str, int]]) -> list[tuple[str, str]]:
    """(importer, imported) edges that break the stage order."""
    return sorted((importer, imported) for importer, edges in graph.items()
                  for imported in edges if _breaks_order(graph, importer, imported))


def test_no_import_cycle_between_modules():
    """A cycle makes import order matter and hides which module is the lower one."""
    graph = _graph()
    cycles = _cycles(graph)
    lines = [" -> ".join(cycle) + "\n      " + "\n      ".join(
        _where(graph, a, b) for a, b in zip(cycle, cycle[1:], strict=False)) for cycle in cycles]
    assert not cycles, "import cycles between byol_ray modules:\n  " + "\n  ".join(lines)


def test_stages_import_only_the_stages_below():
    """core < learn < runtime < jobs, experiments/report beside them, cli on top; core never
    touches torch/Ray/MLflow and learn never Ray/MLflow."""
    graph = _graph()
    bad = _violations(graph)
    rules = "; ".join(f"{s} -> {', '.join(sorted(a))}" for s, a in ALLOWED.items()
                      if a is not None)
    assert not bad, (f"imports against the stage order ({rules}; core never imports torch, "
                     "ray, mlflow; learn never ray, mlflow; only cli imports cli):\n  "
                     + "\n  ".join(_where(graph, a, b) for a, b in bad))
