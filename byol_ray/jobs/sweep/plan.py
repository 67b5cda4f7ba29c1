"""A sweep's plan, pure (no Ray, no MLflow): a grid's cells (`byol_ray.experiments`) x seeds,
plus one random-init baseline, as validated trials; `mark_twins` finds trials that repeat
another grid's config and seed (they run once). `jobs.sweep.run` runs them on Ray Tune."""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field

from byol_ray.core.config import Config, ConfigError, to_dict, validate
from byol_ray.core.methods import untrained_names
from byol_ray.core.presets import preset_config
from byol_ray.experiments.grid import Cell, Grid
from byol_ray.learn.target_memory import SHARE_WARNING, TargetMemory, format_share

# Sweep-wide settings per preset, before the user's --set. On cpu-mini a trial is one Ray Train
# worker on half a core: a short trial spends most of its time starting processes and waiting
# on Ray's controller, so four side by side keep the 2 cores of a laptop busy.
PRESET_SWEEP_OVERRIDES: dict[str, tuple[str, ...]] = {
    "cpu-mini": ("scaling.num_workers=1", "scaling.cpus_per_worker=0.5", "eval.eval_every=0",
                 "train.checkpoint_every=5"),
}

# The paper's protocols each trial runs after pretraining unless `--eval` says otherwise: on the
# GPU presets the paper's linear evaluation [P App. C.1], the protocol behind every number of
# its Table 5 and Fig. 3, so that the tables compare it (`tables.cells.MINIATURE_PRESETS`).
# cpu-mini's tables use its few-label kNN monitor; a protocol would add minutes to each trial.
PRESET_SWEEP_EVALS: dict[str, tuple[str, ...]] = {"cpu-mini": ()}
DEFAULT_SWEEP_EVALS = ("linear",)


def default_evals(preset: str) -> list[str]:
    """The protocols a sweep on `preset` runs on every trial when `--eval` is not given."""
    return list(PRESET_SWEEP_EVALS.get(preset, DEFAULT_SWEEP_EVALS))


@dataclass
class Trial:
    """A cell at one seed, with its fully resolved config."""

    key: str
    cell: Cell
    seed: int
    cfg: Config
    run_id: str | None = None
    status: str = "NEW"  # MLflow status of its child run when the sweep starts
    twin_of: Trial | None = None  # an earlier grid's trial with the same config (`mark_twins`)


@dataclass
class SweepOptions:
    """Everything `run_sweep` needs besides the grid; the CLI fills it."""

    preset: str
    overrides: list[str] = field(default_factory=list)
    seeds: int = 1
    only: list[str] = field(default_factory=list)  # globs over trial keys
    name: str = ""  # default: "<grid>-<preset>"
    resume: bool = False
    tracking_uri: str = ""
    storage: str = ""  # default: ~/ray_results
    address: str | None = None
    concurrent: int = 0  # 0: as many as the cluster fits
    # protocols run on each finished trial; None: the preset's (`default_evals`)
    evals: list[str] | None = None
    random_init: bool = True  # also record the untrained encoder (`reproduce`: first grid only)
    gpus: int = 0  # --dry-run: GPUs its wall-clock estimate assumes (0: those of one trial)

    def __post_init__(self) -> None:
        """`evals` not given: the preset's protocols (`default_evals`)."""
        if self.evals is None:
            self.evals = default_evals(self.preset)


def sweep_name(grid: Grid, options: SweepOptions) -> str:
    """The sweep's name: MLflow parent run name and Tune experiment name."""
    return options.name or f"{grid.name}-{options.preset}"


def experiment_name(grid: Grid, preset: str) -> str:
    """One MLflow experiment per sweep grid and preset, e.g. "ema_decay/cpu-mini"."""
    return f"{grid.name}/{preset}"


def plan(grid: Grid, options: SweepOptions, check_paths: bool = True) -> list[Trial]:
    """The sweep's trials with validated configs; bad input raises ConfigError naming it."""
    if options.seeds < 1:
        raise ConfigError("--seeds", f"{options.seeds}: need at least 1")
    cells = grid.cells(options.preset)
    if options.random_init:
        cells = [*cells, *(Cell(name, name, name) for name in untrained_names())]
    trials = []
    for cell in cells:
        for seed in range(1 if cell.method in untrained_names() else options.seeds):
            key = cell.key(seed)
            if options.only and not any(fnmatch.fnmatch(key, p) for p in options.only):
                continue
            overrides = [*PRESET_SWEEP_OVERRIDES.get(options.preset, ()), *options.overrides,
                         *cell.overrides, f"method.name={cell.method}", f"train.seed={seed}",
                         f"tracking.experiment={experiment_name(grid, options.preset)}",
                         f"tracking.run_name={key}"]
            try:
                cfg = validate(preset_config(options.preset, overrides), check_paths=check_paths)
            except ConfigError as error:
                raise ConfigError(error.field, f"{error.message} (in trial {key})") from None
            trials.append(Trial(key, cell, seed, cfg))
    if not trials:
        raise ConfigError("--only", f"{options.only} matches no trial of grid {grid.name!r}")
    return trials


def _target(cfg: Config) -> tuple[str, str]:
    """The target's tau schedule and initial weights ("-" for a method without a target)."""
    m = cfg.method
    if m.name != "byol" or not m.target_network:
        return "-", "-"
    fixed = m.tau_schedule == "constant" or m.tau_base == 1
    return (f"{m.tau_base:g} constant" if fixed else f"cosine {m.tau_base:g}->1"), m.target_init


def trial_table(trials: list[Trial]) -> str:
    """The trials, what each trains with and the resources it asks for, as a fixed-width table
    (for --dry-run): the optimiser batch (summed over workers and accumulated batches), the group
    that BN statistics and negatives are computed within, the peak learning rate, the tau schedule
    and the target's initialisation."""
    rows = [("trial", "method", "axis", "value", "batch", "BN/negatives", "lr", "workers",
             "per worker", "epochs", "tau", "target init")]
    for t in trials:
        s, d = t.cfg.scaling, t.cfg.data
        batch = d.batch_size * t.cfg.train.accumulate_steps
        gpu = "" if s.use_gpu == "false" else " (+1 GPU if present)"
        rows.append((t.key, t.cell.method, t.cell.ablation, t.cell.value, str(batch),
                     f"groups of {d.group_size}" if d.group_size else f"batch of {d.batch_size}",
                     f"{t.cfg.optim.lr(batch):.4g}", str(s.num_workers),
                     f"{s.cpus_per_worker:g} CPU{gpu}", str(t.cfg.train.epochs), *_target(t.cfg)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    workers = sum(t.cfg.scaling.num_workers for t in trials)
    lines.append(f"{len(trials)} trials, {workers} Ray Train workers in all")
    return "\n".join(lines)


def target_memory_lines(trials: list[Trial]) -> str:
    """For --dry-run, one line per trial with a target network (issue 30): its optimiser steps,
    the share of its initialisation left at the end (Pi tau_k) and the EMA horizon
    1/(1 - tau_base) against the run's length (`learn.target_memory`); "" if none has one."""
    rows = [(t.key, m) for t in trials if (m := TargetMemory.of(t.cfg)) is not None]
    if not rows:
        return ""
    width = max(len(key) for key, _ in rows)
    lines = [f"target at the end of each run ({rows[0][1].images} images: {rows[0][1].source}): "
             f"its share of its initialisation, Pi tau_k over the optimiser steps (above "
             f"{SHARE_WARNING:g}: not forgotten), and the EMA horizon 1/(1 - tau) at its start"]
    lines += [f"  {key:<{width}}  {m.steps} steps  share {format_share(m.log_share):>8}  "
              + ("horizon never (tau = 1: a fixed target)" if math.isinf(m.horizon) else
                 f"horizon {m.horizon:.4g} steps ({m.horizon / max(m.steps, 1):.3g} x the run)"
                 + ("  NOT FORGOTTEN" if m.share > SHARE_WARNING else ""))
              for key, m in rows]
    return "\n".join(lines)


def config_key(cfg: Config) -> str:
    """A trial's config without its tracking section (experiment and run name differ by grid):
    two trials with the same key train the same thing."""
    return json.dumps({k: v for k, v in to_dict(cfg).items() if k != "tracking"},
                      sort_keys=True, default=str)


def mark_twins(grids: list[list[Trial]]) -> int:
    """Point `twin_of` of every trial whose config and seed an earlier grid already holds at
    that earlier trial (cpu-mini's BYOL and SimCLR at the preset's setting are a Table 5b row,
    a Fig. 3a batch and Fig. 3b's baseline): it runs once. Returns how many were marked."""
    first: dict[str, Trial] = {}
    marked = 0
    for trials in grids:
        for t in trials:
            t.twin_of = first.setdefault(config_key(t.cfg), t)
            if t.twin_of is t:
                t.twin_of = None
            else:
                marked += 1
    return marked
