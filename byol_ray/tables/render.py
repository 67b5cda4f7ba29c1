"""Write a `Table` as Markdown (display + caption + verdict), LaTeX (booktabs) and CSV (numbers).

Hand-written rather than `DataFrame.to_markdown/to_latex`: no extra dependency (tabulate), and
the text cells ('missing', '72.5 ± 0.3 (n=3) [collapsed]') are escaped exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from byol_ray.tables.table import Table


def markdown_grid(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub pipe table (every value as text, `|` escaped)."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(table: Table, level: int = 2) -> str:
    """The table as a Markdown section: title, caption, grid, verdict, notes."""
    parts = [f"{'#' * level} {table.title}", f"*{table.caption}*", markdown_grid(table.display),
             f"**{table.verdict}**"]
    if table.notes:
        parts.append("\n".join(f"- {note}" for note in table.notes))
    return "\n\n".join(parts) + "\n"


_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "τ": r"$\tau$", "β": r"$\beta$", "✓": r"\checkmark{}", "✗": r"$\times$",
    "–": "--", "≤": r"$\leq$", "§": r"\S{}",
}


def latex_escape(text: object) -> str:
    """Text safe inside a LaTeX tabular (special characters and the symbols we use)."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """The table as a LaTeX `table` float (booktabs; needs amssymb for \\checkmark)."""
    columns = "l" * len(table.display.columns)
    body = [" & ".join(latex_escape(v) for v in row) + r" \\"
            for row in table.display.itertuples(index=False)]
    caption = latex_escape(f"{table.title}. {table.caption} {table.verdict}")
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small",
        rf"\caption{{{caption}}}", rf"\label{{tab:{table.key.replace('_', '-')}}}",
        rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
        " & ".join(latex_escape(c) for c in table.display.columns) + r" \\",
        r"\midrule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", "",
    ])


def write_table(table: Table, out_dir: Path) -> list[Path]:
    """Write `<key>.md`, `<key>.csv` (the numbers: missing cells empty, never 0) and
    `<key>.tex` into `out_dir`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{table.key}.{ext}" for ext in ("md", "csv", "tex")]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    table.data.to_csv(paths[1], index=False)
    paths[2].write_text(to_latex(table), encoding="utf-8")
    return paths
