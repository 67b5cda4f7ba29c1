"""The paper's tables and figures (Tables 5a/5b, Fig. 3a/3b, random-init) from MLflow runs.

Read trial runs (`load_runs`), average them over seeds into cells (`aggregate`), build each
table beside the paper's values (`build_tables`), and write or print them (`write_report`,
`print_tables`). `analysis/paper_tables.ipynb` walks through the same steps.
"""

from byol_ray.tables.augment import build_fig_3b, build_fig_3b_strength
from byol_ray.tables.baseline import build_baseline
from byol_ray.tables.batch import build_fig_3a
from byol_ray.tables.cells import aggregate, format_cell
from byol_ray.tables.ema import build_table_5a
from byol_ray.tables.figures import plot_fig_3a, plot_fig_3b
from byol_ray.tables.reference import reference_frame
from byol_ray.tables.render import to_latex, to_markdown
from byol_ray.tables.report import (
    Report,
    build_tables,
    generate_report,
    print_tables,
    write_report,
)
from byol_ray.tables.runs import (
    TablesError,
    load_runs,
    normalise_runs,
    resolve_uri,
    search_trial_runs,
    select_runs,
)
from byol_ray.tables.table import Table
from byol_ray.tables.target import build_table_5b

__all__ = [
    "Report", "Table", "TablesError", "aggregate", "build_baseline", "build_fig_3a",
    "build_fig_3b", "build_fig_3b_strength", "build_table_5a", "build_table_5b", "build_tables",
    "format_cell", "generate_report", "load_runs", "normalise_runs", "plot_fig_3a", "plot_fig_3b",
    "print_tables", "reference_frame", "resolve_uri", "search_trial_runs", "select_runs",
    "to_latex", "to_markdown", "write_report",
]
