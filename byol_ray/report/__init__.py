"""The paper's tables and figures (Tables 5a/5b, Fig. 3a/3b, random-init) from MLflow runs.

One module per step: `runs` reads the trial runs (`load_runs`), `cells` averages them over
seeds into cells (`aggregate`), `verdicts` compares shapes beyond the seeds' noise,
`builders` builds each table beside the paper's values (`build_tables`), `render` writes or
prints them (`write_report`, `print_tables`); `reference` holds the paper's values.
`analysis/paper_tables.ipynb` walks through the same steps.
"""

from byol_ray.report.builders import (
    Table,
    build_baseline,
    build_fig_3a,
    build_fig_3b,
    build_fig_3b_strength,
    build_table_5a,
    build_table_5b,
    build_tables,
)
from byol_ray.report.cells import aggregate, format_cell
from byol_ray.report.reference import reference_frame
from byol_ray.report.render import (
    Report,
    generate_report,
    plot_fig_3a,
    plot_fig_3b,
    print_tables,
    show_tables,
    to_latex,
    to_markdown,
    write_report,
)
from byol_ray.report.runs import (
    TablesError,
    load_runs,
    normalise_runs,
    resolve_uri,
    search_trial_runs,
    select_runs,
)
from byol_ray.report.verdicts import Check, Estimate, Noise

__all__ = [
    "Check", "Estimate", "Noise", "Report", "Table", "TablesError", "aggregate",
    "build_baseline", "build_fig_3a", "build_fig_3b", "build_fig_3b_strength", "build_table_5a",
    "build_table_5b", "build_tables", "format_cell", "generate_report", "load_runs",
    "normalise_runs", "plot_fig_3a", "plot_fig_3b", "print_tables", "reference_frame",
    "resolve_uri", "search_trial_runs", "select_runs", "show_tables", "to_latex", "to_markdown",
    "write_report",
]
