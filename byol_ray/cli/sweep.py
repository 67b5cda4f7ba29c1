"""Command line of the sweeps: `python sweeps/NAME.py`, `byol-ray sweep NAME`, `reproduce`."""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from byol_ray.cli.options import (
    METRICS,
    add_cluster_options,
    add_config_options,
    add_verbose_option,
)
from byol_ray.core.config import ConfigError
from byol_ray.core.masking import masked_console
from byol_ray.core.presets import method_settings, preset_config
from byol_ray.experiments import GRIDS, OPT_IN
from byol_ray.runtime import console

if TYPE_CHECKING:  # the sweep machinery imports MLflow and Ray: only where a sweep runs
    from byol_ray.jobs.sweep.plan import Grid, SweepOptions, Trial
    from byol_ray.jobs.sweep.run import SweepResult

GRID_ORDER = GRIDS  # the experiments that have a sweep grid, in the paper's order
DEFAULT_GRIDS = [name for name in GRID_ORDER if name not in OPT_IN]  # what `reproduce` runs


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    """The options every sweep accepts."""
    add_config_options(parser)
    parser.add_argument("--seeds", type=int, default=1,
                        help="repeat each cell K times (the paper averages 3)")
    parser.add_argument("--only", action="append", default=[], metavar="GLOB",
                        help="run only trials whose name matches, e.g. 'byol-*'")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the trials and their resources; run nothing")
    parser.add_argument("--resume", action="store_true",
                        help="finish the newest sweep of this name: skip finished trials, "
                             "continue the others from their last checkpoint")
    parser.add_argument("--name", default="", help="sweep name (default: GRID-PRESET)")
    add_cluster_options(parser)
    parser.add_argument("--eval", dest="evals", type=_protocols, default=None,
                        metavar="PROTOCOL[,PROTOCOL]|none",
                        help="after each trial, as part of it: linear and/or finetune "
                             "(byol-ray eval), e.g. --eval linear,finetune; none: no protocol "
                             "(default: linear, the paper's protocol behind the tables, on "
                             "the GPU presets; none on cpu-mini)")
    parser.add_argument("--concurrent", type=int, default=0,
                        help="max trials at once (default: as many as the cluster fits)")
    parser.add_argument("--gpus", type=int, default=0, metavar="N",
                        help="--dry-run: the GPUs its wall-clock estimate assumes (default: "
                             "those of one trial)")


def _protocols(text: str) -> list[str]:
    """--eval's comma-separated protocols, each checked; 'none': no protocol."""
    if text.strip() == "none":
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    wrong = [name for name in names if name not in ("linear", "finetune")]
    if wrong or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: none, or a comma-separated list of linear, finetune")
    return names


def _grid_names(text: str) -> list[str]:
    """--grids' comma-separated grid names, each checked, in the paper's order."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if not names or names - set(GRID_ORDER):
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of "
                                         f"{', '.join(GRID_ORDER)}")
    return [name for name in GRID_ORDER if name in names]


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    """SweepOptions from parsed sweep options; the preset and --set checked first (unknown
    preset, key or type: ConfigError), before the grids and the sweep machinery load."""
    preset_config(args.preset, args.overrides)
    from byol_ray.jobs.sweep.plan import SweepOptions

    return SweepOptions(
        preset=args.preset, overrides=args.overrides, seeds=args.seeds,
        only=args.only, name=args.name, resume=args.resume, tracking_uri=args.tracking_uri,
        storage=args.storage, address=args.address, concurrent=args.concurrent,
        evals=args.evals, gpus=args.gpus,
    )


def run_sweep_cli(grid: Grid, argv: list[str] | None = None) -> int:
    """Entry point of `sweeps/NAME.py`: parse options, then dry-run or run the grid."""
    parser = argparse.ArgumentParser(prog=f"sweeps/{grid.name}.py", description=grid.description)
    add_sweep_options(parser)
    add_verbose_option(parser)
    args = parser.parse_args(argv)
    try:
        with console.chosen(args.verbose), masked_console():
            return sweep_command(grid, options_from_args(args), args.dry_run)
    except ConfigError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2


def sweep_command(grid: Grid, options: SweepOptions, dry_run: bool) -> int:
    """Print the plan (dry run) or run the sweep and print its summary; 1 if a trial failed."""
    if dry_run:
        return print_plans([(grid, options)])
    from byol_ray.jobs.sweep.run import run_sweep

    result = run_sweep(grid, options)
    print(summary(result))
    return 1 if any(t.status == "FAILED" for t in result.trials) else 0


def print_plans(jobs: list[tuple[Grid, SweepOptions]]) -> int:
    """--dry-run: each grid's trials with their settings and cost, then the total; trials that
    repeat an earlier grid's (`mark_twins`) run once and cost nothing more."""
    from byol_ray.jobs.sweep.plan import mark_twins, plan, target_memory_lines, trial_table

    plans = [plan(grid, options, check_paths=False) for grid, options in jobs]
    mark_twins(plans)
    gpus = jobs[0][1].gpus or None
    for (grid, options), trials in zip(jobs, plans, strict=True):
        print(f"{grid.name} ({grid.description}), preset {options.preset}")
        print(trial_table(trials))
        print(settings_lines(trials, options))
        if memory := target_memory_lines(trials):
            print(memory)
        runs = [t for t in trials if t.twin_of is None]
        print(f"cost: {_cost_line(runs, options, gpus)}\n")
    if len(plans) > 1:
        runs = [t for trials in plans for t in trials if t.twin_of is None]
        print(f"all grids: {_cost_line(runs, jobs[0][1], gpus)}")
    return 0


def _cost_line(runs: list[Trial], options: SweepOptions, gpus: int | None) -> str:
    """The dry run's price of `runs` (pretraining, monitor, the trials' protocols), the
    costliest trial's, and what the same cells cost at 3 seeds (random-init runs once)."""
    from byol_ray.core.methods import method_info
    from byol_ray.jobs.sweep.cost import describe_cost, total_cost, trial_cost

    evals = options.evals or []
    costs = [trial_cost(t.cfg, evals) for t in runs]
    once = [not method_info(t.cell.method).trains for t in runs]  # one run whatever the seeds
    three = sum((c.gpu_hours * (1 if single else 3 / options.seeds)
                 for single, c in zip(once, costs, strict=True)), 0.0)
    total = total_cost([t.cfg for t in runs], evals)
    per_trial = max(costs, key=lambda c: c.gpu_hours, default=None)
    return describe_cost(total, len(runs), gpus, three_seeds=total.scaled(
        three / total.gpu_hours if total.gpu_hours else 0.0), per_trial=per_trial)


def settings_lines(trials: list[Trial], options: SweepOptions) -> str:
    """What a dry run adds below its table: the settings a method takes on this preset
    (`core.presets.METHOD_SETTINGS`), the overrides of each cell (its axis value's meaning)
    and the protocols every trial runs (`--eval`)."""
    lines = [f"{method} trials on {options.preset} take its own settings before --set "
             f"(METHOD_SETTINGS): {' '.join(found)}"
             for method in dict.fromkeys(t.cell.method for t in trials)
             if (found := method_settings(options.preset, method))]
    cells = {(t.cell.ablation, t.cell.value): t.cell.overrides for t in trials}
    if any(cells.values()):
        lines.append("what each cell sets (applied after --set: the cell's own values win):")
        lines += [f"  {axis}={value}: {' '.join(sets)}"
                  for (axis, value), sets in cells.items() if sets]
    evals = ", ".join(options.evals or []) or "none"
    lines.append(f"protocols after every trial (--eval): {evals}")
    return "\n".join(lines)


def main_dry_run_keys(text: str) -> set[str]:
    """The trial names in a --dry-run table (its first column), for scripts and tests."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("trial "))
    rows = itertools.takewhile(lambda line: not re.match(r"\d+ trials, ", line), lines[start + 1:])
    return {line.split()[0] for line in rows}


def load_grid(name: str) -> Grid:
    """The GRID of `byol_ray.experiments.NAME` (shipped with the package)."""
    if name not in GRID_ORDER:
        raise ConfigError("sweep", f"{name!r} is not one of: {', '.join(GRID_ORDER)}")
    from byol_ray.experiments import grids

    return grids()[name]


def summary(result: SweepResult) -> str:
    """Per trial: axis value, kNN / linear top-1, collapsed or not, and its MLflow status; then
    where to browse the sweep's experiment (`ui.browse_hint`)."""
    from byol_ray.runtime.tracking.run import Run
    from byol_ray.runtime.tracking.ui import browse_hint

    rows = [("trial", "axis", "value", "kNN top-1", "few-label kNN", "linear top-1", "collapsed",
             "status")]
    for t in result.trials:
        m = Run(result.tracking_uri, t.run_id).read().metrics

        def pct(name: str, m=m) -> str:
            return f"{m[name]:.1f}" if name in m else "–"

        collapsed = {1.0: "yes", 0.0: "no"}.get(m.get("eval/collapsed"), "–")
        rows.append((t.key, t.cell.ablation, t.cell.value, pct("eval/knn_top1"),
                     pct("eval/few_label_knn_top1"), pct("eval/linear_top1"), collapsed,
                     t.status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"\n{result.name}: MLflow experiment {result.experiment!r}, parent run "
             f"{result.parent_run_id} ({result.tracking_uri}); top-1 in % on the held-out "
             "test split (kNN k=20, with every label or a few per class, and linear probe on "
             "frozen features)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    experiment_id = Run(result.tracking_uri, result.parent_run_id).read().experiment_id
    lines.append(browse_hint(result.tracking_uri, experiment_id))
    return "\n".join(lines)


def add_commands(commands) -> None:
    """Add `sweep` and `reproduce` to the `byol-ray` sub-commands."""
    sweep = commands.add_parser("sweep", help="run one ablation grid (sweeps/NAME.py)")
    sweep.add_argument("grid", metavar="NAME", help=f"one of: {', '.join(GRID_ORDER)}")
    add_sweep_options(sweep)
    sweep.set_defaults(handler=_sweep_handler)
    reproduce = commands.add_parser(
        "reproduce", help="run every grid in turn, skipping cells already finished")
    add_sweep_options(reproduce)
    reproduce.add_argument("--out", type=Path, default=None,
                           help="where the tables and report.md go (default: results/PRESET, "
                                "or results/PRESET-GRID-... for grids other than the default "
                                "set, so that they never overwrite a full report)")
    reproduce.add_argument("--grids", type=_grid_names,
                           default=DEFAULT_GRIDS,
                           metavar="NAME[,NAME]", help="the grids to run (default: all but "
                           f"the opt-in {', '.join(sorted(OPT_IN))})")
    reproduce.add_argument("--metric", choices=METRICS, default=None,
                           help="top-1 the tables show (default: the preset's, see "
                                "`byol-ray tables --help`)")
    reproduce.set_defaults(handler=reproduce_command)


def _sweep_handler(args: argparse.Namespace) -> int:
    """`byol-ray sweep NAME`: the options checked before the grid (and its machinery) loads."""
    options = options_from_args(args)
    return sweep_command(load_grid(args.grid), options, args.dry_run)


def reproduce_command(args: argparse.Namespace) -> int:
    """All grids in sequence (finished cells are skipped), then a summary per grid."""
    args.resume = True  # a second `reproduce` finishes what the first left
    # One random-init run serves every grid's tables; the grids share one Tune run's slots.
    options = options_from_args(args)
    jobs = [(load_grid(name), replace(options, random_init=i == 0))
            for i, name in enumerate(args.grids)]
    if args.dry_run:
        return print_plans(jobs)
    from byol_ray.jobs.sweep.run import run_sweeps

    started = time.perf_counter()
    results = run_sweeps(jobs)
    for result in results:
        print(summary(result))
    print(timing_report(results, time.perf_counter() - started))
    write_tables(results, args.preset, args.out or default_out(args.preset, args.grids),
                 args.metric, None if args.grids == DEFAULT_GRIDS else args.grids)
    return 1 if any(t.status == "FAILED" for r in results for t in r.trials) else 0


def default_out(preset: str, grids: list[str]) -> Path:
    """results/PRESET for the default grids; results/PRESET-GRID-... for any other set (its
    report would show the other grids' tables empty)."""
    return Path("results") / "-".join([preset, *(grids if grids != DEFAULT_GRIDS else [])])


def write_tables(results: list[SweepResult], preset: str, out: Path, metric: str | None,
                 grids: list[str] | None = None) -> None:
    """Print the paper's tables from the sweeps' runs and write them with report.md (only
    `grids`' tables and the others that have runs, when given)."""
    from byol_ray.report import generate_report, show_tables

    experiments = [r.experiment for r in results]
    report = generate_report(results[0].tracking_uri, out, experiments, preset, metric,
                             grids=grids)
    show_tables(report.tables)
    print(f"\ntables, figures and report: {report.path}")


def timing_report(results: list[SweepResult], total: float) -> str:
    """Where the time went: Ray start, trials (worker start-up, training, evaluation)."""
    from byol_ray.runtime.tracking.run import Run

    trial_s = train_s = eval_s = 0.0
    for result in results:
        for t in result.trials:
            if t.twin_of is not None:  # ran once, under its twin's run: counted there
                continue
            m = Run(result.tracking_uri, t.run_id).read().metrics
            trial_s += m.get("time/trial_s", 0.0)
            train_s += m.get("time/train_s", 0.0)
            eval_s += m.get("time/eval_s", 0.0)
    ray_s = sum(r.seconds.get("ray_start", 0.0) for r in results)
    overhead = max(trial_s - train_s - eval_s, 0.0)
    return (f"\ntime: {total:.0f} s wall; Ray start {ray_s:.0f} s; summed over trials run now: "
            f"{trial_s:.0f} s = training {train_s:.0f} s + evaluation {eval_s:.0f} s + "
            f"Train worker start-up and teardown {overhead:.0f} s")
