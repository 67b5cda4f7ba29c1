"""The paper's tables and figures from MLflow runs: runs -> cells -> verdicts -> render.

`runs` reads the trial runs (axis values in their grid's spelling), the table kit
(`byol_ray.tables`: `cells` averages them over seeds, `verdicts` compares shapes beyond the
seeds' noise, `table` is what each builder in `byol_ray.experiments` composes beside the paper's
values, `reference`), `render` asks the experiments for their tables (`build_tables`) and writes
or prints them. This package's API re-exports the kit's names a user calls;
`analysis/paper_tables.ipynb` walks through the same steps."""

from byol_ray.report.render import (
    Report,
    build_tables,
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
from byol_ray.tables.cells import aggregate, format_cell
from byol_ray.tables.reference import reference_frame
from byol_ray.tables.table import Inputs, Table
from byol_ray.tables.verdicts import Check, Estimate, Noise

__all__ = [
    "Check", "Estimate", "Inputs", "Noise", "Report", "Table", "TablesError", "aggregate",
    "build_tables", "format_cell", "generate_report", "load_runs", "normalise_runs",
    "plot_fig_3a", "plot_fig_3b", "print_tables", "reference_frame", "resolve_uri",
    "search_trial_runs", "select_runs", "show_tables", "to_latex", "to_markdown", "write_report",
]
