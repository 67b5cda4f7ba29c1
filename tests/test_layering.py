"""The package's layering, read from the source alone (pure AST: no module is imported).

Every import of every module of `byol_ray/` counts, those inside functions too, and so does
every `import_module` call: its module when the argument is a string, else every string of the
file that names a module of the package (absolute, or under the file's own package: the
`f"{__name__}.{name}"` of `experiments.paper_experiments` over `ORDER`). Two rules: no import
cycle between modules, and each stage imports only the stages below it (core < learn < runtime
< jobs; tables < experiments < report beside them; cli on top).
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
    "tables": {"core"},  # the table kit: cells, verdicts, table, reference
    "experiments": {"core", "tables"},  # the paper's tables and grids, built with the kit
    "report": {"core", "runtime", "tables", "experiments"},  # runs in, tables out
    "cli": None,
}
# stage -> outside engines it never imports (top-level distribution names).
FORBIDDEN_ENGINES = {"core": {"torch", "torchvision", "ray", "mlflow"}, "learn": {"ray", "mlflow"}}



def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, function-level ones included.

    `from a.b import c` imports the module `a.b.c` when that is a module, else `a.b`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if _is_import_module(node):
            found += _dynamic_imports(node, tree, name, modules)
        elif isinstance(node, ast.Import):
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


def _is_import_module(node: ast.AST) -> bool:
    """Whether `node` calls `import_module(...)` or `importlib.import_module(...)`."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "import_module"
            or isinstance(func, ast.Attribute) and func.attr == "import_module")


def _dynamic_imports(call: ast.Call, tree: ast.Module, name: str,
                     modules: dict[str, Path]) -> list[tuple[str, int]]:
    """The modules an `import_module` call may load: its string argument, else every string of
    the file naming a package module, absolutely or under `name` (`f"{__name__}.{x}"`)."""
    argument = call.args[0] if call.args else None
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return [(argument.value, call.lineno)]
    texts = {node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return [(module, call.lineno) for text in sorted(texts)
            for module in (text, f"{name}.{text}") if module in modules]


def _graph(package: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """importer -> {imported module (package ones and outside ones): first line}."""
    modules = _modules(package)
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


def _write(root: Path, files: dict[str, str]) -> Path:
    """A synthetic `byol_ray` package under `root`: {relative path: source}."""
    for relative, source in files.items():
        path = root / "byol_ray" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "byol_ray"


# tables < experiments < report, experiments loading its modules by name, as the package does.
_SHAPE = {
    "__init__.py": "",
    "tables/__init__.py": "",
    "tables/kit.py": "",
    "experiments/__init__.py": (
        "from importlib import import_module\n\nORDER = ('ablation',)\n\n\n"
        "def paper_experiments():\n"
        "    return [import_module(f'{__name__}.{name}') for name in ORDER]\n"),
    "experiments/ablation.py": "from byol_ray.tables import kit\n",
    "report/__init__.py": "",
    "report/render.py": "from byol_ray.experiments import paper_experiments\n",
}


def test_the_layering_checks_see_through_import_module(tmp_path):
    """An `import_module` that runs back up fails both checks, with a string argument or
    through a module list; the same package without it passes."""
    assert not _cycles(graph := _graph(_write(tmp_path / "ok", _SHAPE)))
    assert not _violations(graph)
    assert graph["byol_ray.experiments"]["byol_ray.experiments.ablation"] == 7  # the call's line

    back_up = "    return importlib.import_module('byol_ray.report.render')\n"
    literal = _write(tmp_path / "literal", {
        **_SHAPE, "tables/kit.py": "import importlib\n\n\ndef rows():\n" + back_up})
    graph = _graph(literal)
    assert ("byol_ray.tables.kit", "byol_ray.report.render") in _violations(graph)
    assert _cycles(graph)

    listed = _write(tmp_path / "listed", {
        **_SHAPE, "experiments/ablation.py": "from byol_ray import report\n"
                                             "from byol_ray.report import render\n"})
    graph = _graph(listed)
    assert ("byol_ray.experiments.ablation", "byol_ray.report.render") in _violations(graph)
    assert ["byol_ray.experiments", "byol_ray.experiments.ablation", "byol_ray.report.render",
            "byol_ray.experiments"] in _cycles(graph)
