"""Ablation grids as Ray Tune sweeps: one Tune trial = one Ray Train pretraining run.

A `Grid` is data (see `sweeps/*.py`): per preset, the cells of one ablation. `plan` expands
cells x seeds (plus one random-init baseline) into validated trial configs; `run_sweep` opens
one MLflow parent run for the sweep and one child run per trial, skips trials whose child run
already FINISHED (that is what `--resume` and `byol-ray reproduce` rely on), and runs the rest
as Tune trials whose `TorchTrainer` reports to Tune through `TuneReportCallback`. A trial's
Train run has a stable name, so a re-run continues from its last checkpoint.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from byol_ray.core.config import Config, ConfigError, apply_overrides, to_dict, validate
from byol_ray.core.presets import get_preset
from byol_ray.runtime.pause_points import pause_point

# Sweep-wide settings per preset, before the user's --set. On cpu-mini a trial is one Ray Train
# worker on half a core: a short trial spends most of its time starting processes and waiting
# on Ray's controller, so four side by side keep the 2 cores of a laptop busy.
PRESET_SWEEP_OVERRIDES: dict[str, tuple[str, ...]] = {
    "cpu-mini": ("scaling.num_workers=1", "scaling.cpus_per_worker=0.5", "train.epochs=20",
                 "eval.eval_every=0", "train.checkpoint_every=5"),
}
RANDOM_INIT = "random_init"
TRIAL_DRIVER_MEMORY = 128 * 2**20  # bytes Ray reserves for each Tune trial's driver
# The head's custom resource (cluster/*.yaml): trial drivers stay off nodes that can vanish,
# as Ray advises for Tune over Train (a lost driver would lose its whole trial).
HEAD_RESOURCE = "byol_head"


@dataclass(frozen=True)
class Cell:
    """One point of a grid: the method, the axis value tables show, the config overrides."""

    method: str  # byol | simclr | random_init
    ablation: str  # the axis: batch_size, recipe, strength, tau_base, target_network, ...
    value: str  # the axis value as tables show it, e.g. "0.99" or "remove_flip"
    overrides: tuple[str, ...] = ()

    def key(self, seed: int) -> str:
        """Stable trial name: the same cell and seed always map to the same MLflow run."""
        if self.method == RANDOM_INIT:
            return "random-init"
        return f"{self.method}-{self.ablation}={self.value}-s{seed}"


@dataclass(frozen=True)
class Grid:
    """An ablation grid: a name and, per preset, its cells."""

    name: str
    description: str
    cells: Callable[[str], list[Cell]]  # preset -> cells (GPU presets: the paper's values)


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
    evals: list[str] = field(default_factory=list)  # protocols run on each finished trial
    random_init: bool = True  # also record the untrained encoder (`reproduce`: first grid only)


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
    base = get_preset(options.preset)
    cells = grid.cells(options.preset)
    if options.random_init:
        cells = [*cells, Cell(RANDOM_INIT, RANDOM_INIT, RANDOM_INIT)]
    trials = []
    for cell in cells:
        for seed in range(1 if cell.method == RANDOM_INIT else options.seeds):
            key = cell.key(seed)
            if options.only and not any(fnmatch.fnmatch(key, p) for p in options.only):
                continue
            overrides = [*PRESET_SWEEP_OVERRIDES.get(options.preset, ()), *options.overrides,
                         *cell.overrides, f"method.name={cell.method}", f"train.seed={seed}",
                         f"tracking.experiment={experiment_name(grid, options.preset)}",
                         f"tracking.run_name={key}"]
            cfg = apply_overrides(base, overrides)
            try:
                validate(cfg, check_paths=check_paths)
            except ConfigError as error:
                raise ConfigError(error.field, f"{error.message} (in trial {key})") from None
            trials.append(Trial(key, cell, seed, cfg))
    if not trials:
        raise ConfigError("--only", f"{options.only} matches no trial of grid {grid.name!r}")
    return trials


def trial_table(trials: list[Trial]) -> str:
    """The trials and the resources each asks for, as a fixed-width table (for --dry-run)."""
    rows = [("trial", "method", "axis", "value", "workers", "per worker", "epochs")]
    for t in trials:
        s = t.cfg.scaling
        gpu = "" if s.use_gpu == "false" else " (+1 GPU if present)"
        rows.append((t.key, t.cell.method, t.cell.ablation, t.cell.value, str(s.num_workers),
                     f"{s.cpus_per_worker:g} CPU{gpu}", str(t.cfg.train.epochs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    workers = sum(t.cfg.scaling.num_workers for t in trials)
    lines.append(f"{len(trials)} trials, {workers} Ray Train workers in all")
    return "\n".join(lines)


# --------------------------------------------------------------------------- running


@dataclass
class SweepResult:
    """Where a sweep's runs are and how its trials ended."""

    name: str
    experiment: str
    parent_run_id: str
    tracking_uri: str
    trials: list[Trial]
    seconds: dict[str, float]


def run_sweep(grid: Grid, options: SweepOptions) -> SweepResult:
    """Run (or resume) a grid as Tune trials tracked under one MLflow parent run."""
    return run_sweeps([(grid, options)])[0]


def run_sweeps(jobs: list[tuple[Grid, SweepOptions]]) -> list[SweepResult]:
    """Run (or resume) several grids as one Tune run, each under its own MLflow parent run:
    their trials share the cluster's slots, so none idles while a grid's last trials finish.
    Every config and the tracking store are checked before Ray starts."""
    import ray

    from byol_ray.jobs.pretrain.driver import check_resources, connect, preflight
    from byol_ray.runtime import tracking
    from byol_ray.runtime.cluster_watch import exit_if_cluster_lost
    from byol_ray.runtime.storage import check_storage

    plans = [(grid, options, plan(grid, options)) for grid, options in jobs]
    for *_, trials in plans:
        for t in trials:
            preflight(t.cfg)
    uris = [tracking.resolve_tracking_uri(options.tracking_uri) for _, options in jobs]
    for uri in dict.fromkeys(uris):
        tracking.check_tracking_store(uri)
        tracking.sync_journals(tracking_uri=uri)  # what earlier runs could not deliver
    started = time.perf_counter()
    connect(jobs[0][1].address)
    ray_start = time.perf_counter() - started
    for *_, trials in plans:
        for t in trials:
            check_resources(t.cfg)
    for storage in dict.fromkeys(options.storage for _, options in jobs):
        check_storage(storage, ray.nodes())

    groups = []
    twins = mark_twins([trials for *_, trials in plans])
    if twins:
        print(f"[sweep] {twins} trials repeat another grid's config and seed: each runs once "
              "and its twins get its results (tag same_as)", flush=True)
    for (grid, options, trials), uri in zip(plans, uris, strict=True):
        name = sweep_name(grid, options)
        parent_id = _open_parent(grid, options, name, uri)
        _attach_child_runs(trials, parent_id, uri, grid, options, name)
        todo = [t for t in trials if t.status != "FINISHED" and t.twin_of is None]
        done = sum(t.status == "FINISHED" for t in trials)
        n_shared = len(trials) - done - len(todo)
        shared = f", {n_shared} shared with another grid" if n_shared else ""
        print(f"[sweep {name}] {len(trials)} trials: {done} finished before{shared}, "
              f"{len(todo)} to run; MLflow experiment "
              f"{experiment_name(grid, options.preset)!r}, parent run {parent_id}", flush=True)
        groups.append((todo, name, parent_id, uri))
    started = time.perf_counter()
    if any(todo for todo, *_ in groups):
        with exit_if_cluster_lost(_after_cluster_lost(jobs[0][1]), label="sweep"):
            _tune(groups, jobs[0][1])
    trials_s = time.perf_counter() - started
    _share_twins(plans, uris)
    results = []
    for (grid, options, trials), (_, name, parent_id, uri) in zip(plans, groups, strict=True):
        _refresh_status(trials, uri)
        _end_parent(parent_id, uri, trials)
        seconds = {"ray_start": ray_start, "trials": trials_s} if not results else {}
        results.append(SweepResult(name, experiment_name(grid, options.preset), parent_id, uri,
                                   trials, seconds))
    return results


def _after_cluster_lost(options: SweepOptions) -> str:
    """What to do when the sweep's Ray cluster is lost mid-sweep (`exit_if_cluster_lost`)."""
    from byol_ray.jobs.pretrain.driver import absolute_storage

    storage = absolute_storage(options.storage or "~/ray_results")
    return ("its trials stopped. Start a Ray cluster again and rerun the same command with "
            f"--resume: finished trials are kept, the others continue from their checkpoints "
            f"in {storage}")


def _config_key(cfg: Config) -> str:
    """A trial's config without its tracking section (experiment and run name differ by grid)."""
    import json

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
            t.twin_of = first.setdefault(_config_key(t.cfg), t)
            if t.twin_of is t:
                t.twin_of = None
            else:
                marked += 1
    return marked


def _share_twins(plans: list[tuple[Grid, SweepOptions, list[Trial]]], uris: list[str]) -> None:
    """Give each unfinished twin the results of the trial it repeats, once that one ended."""
    from byol_ray.runtime import tracking

    for (*_, trials), uri in zip(plans, uris, strict=True):
        for t in trials:
            source = t.twin_of
            if source is None or t.status == "FINISHED" or source.run_id is None:
                continue
            if tracking.read_run(uri, source.run_id).status in ("FINISHED", "FAILED"):
                tracking.share_results(uri, source.run_id, t.run_id)


def _open_parent(grid: Grid, options: SweepOptions, name: str, uri: str) -> str:
    """The sweep's parent run: the newest one of this name when resuming, else a new one."""
    from byol_ray.runtime import tracking

    experiment = experiment_name(grid, options.preset)
    if options.resume:
        found = tracking.newest_sweep_run(uri, experiment, name)
        if found:
            tracking.set_status(uri, found, "RUNNING")
            return found
        print(f"[sweep {name}] nothing to resume: starting it", flush=True)
    return tracking.start_sweep_run(
        uri, experiment, name,
        tags={"grid": grid.name, "preset": options.preset, "description": grid.description,
              "seeds": str(options.seeds)},
        params={"overrides": " ".join(options.overrides)},
    )


def _attach_child_runs(trials: list[Trial], parent_id: str, uri: str, grid: Grid,
                       options: SweepOptions, name: str) -> None:
    """Give every trial its child run: the existing one (resume) or a new SCHEDULED one. The
    run is created with its `trial` tag in one call, so a killed driver leaves at most one run
    per trial, which a resume finds and finishes describing."""
    from byol_ray.runtime import tracking

    existing = tracking.child_runs(uri, experiment_name(grid, options.preset), parent_id)
    for t in trials:
        if t.key in existing:
            run = existing[t.key]
            t.run_id, t.status = run.run_id, run.status
            if t.status != "FINISHED" and not tracking.is_described(run, t.cfg):
                tracking.describe_run(uri, t.run_id, t.cfg)
            continue
        t.run_id = tracking.start_run(t.cfg, uri, parent_run_id=parent_id, describe=False, tags={
            "role": "trial", "sweep": name, "grid": grid.name, "trial": t.key,
            "seed": str(t.seed), "ablation": t.cell.ablation, "ablation_value": t.cell.value,
        })
        pause_point("trials-start")
        tracking.describe_run(uri, t.run_id, t.cfg)
        tracking.set_status(uri, t.run_id, "SCHEDULED")
        t.status = "SCHEDULED"


def _end_parent(parent_id: str, uri: str, trials: list[Trial]) -> None:
    """FINISHED once every trial ran; failed trials are counted in a tag."""
    from byol_ray.runtime import tracking

    pause_point("parent-closing")
    tracking.end_sweep_run(uri, parent_id, sum(t.status == "FAILED" for t in trials))


def _refresh_status(trials: list[Trial], uri: str) -> None:
    from byol_ray.runtime import tracking

    for t in trials:
        t.status = tracking.read_run(uri, t.run_id).status


def _tune(groups: list[tuple[list[Trial], str, str, str]], options: SweepOptions) -> None:
    """Run every group's trials (trials, sweep name, parent run id, tracking URI) as one Ray
    Tune run; a failed trial is recorded and the others go on."""
    from ray import tune

    from byol_ray.jobs.pretrain.driver import absolute_storage, cluster_capacity
    from byol_ray.jobs.sweep.progress import ProgressCallback
    from byol_ray.runtime.storage import join

    storage, capacity = absolute_storage(options.storage or "~/ray_results"), cluster_capacity()
    configs = [{"key": t.key, "cfg": to_dict(t.cfg), "run_id": t.run_id, "tracking_uri": uri,
                "storage": join(storage, f"{name}-{parent_id[:8]}"), "evals": options.evals,
                "eval_overrides": [o for o in options.overrides if o.startswith("protocol.")]}
               for trials, name, parent_id, uri in groups for t in trials]
    trials = [t for group in groups for t in group[0]]
    names = [name for trials_of, name, *_ in groups if trials_of]
    label = names[0] if len(names) == 1 else f"{len(names)} grids, {options.preset}"
    run_name = (f"{names[0]}-{groups[0][2][:8]}" if len(groups) == 1
                else f"reproduce-{options.preset}")
    tuner = tune.Tuner(
        # A trial only drives its Train workers: no CPU of its own (Ray needs some resource);
        # on the head where it has HEAD_RESOURCE, as the workers' nodes may vanish.
        tune.with_resources(run_trial, {"CPU": 0, "memory": TRIAL_DRIVER_MEMORY} | (
            {HEAD_RESOURCE: 0.001} if capacity.get(HEAD_RESOURCE) else {})),
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=options.concurrent or _fits(trials, capacity),
            trial_name_creator=lambda trial: trial.config["trial"]["key"],
            trial_dirname_creator=lambda trial: trial.config["trial"]["key"],
        ),
        run_config=tune.RunConfig(
            name=f"{run_name}-{int(time.time())}", storage_path=storage,
            callbacks=[ProgressCallback(label, total=len(trials))], verbose=0,
        ),
    )
    tuner.fit()


def _fits(trials: list[Trial], resources: dict[str, float]) -> int:
    """How many of the largest trial fit on the cluster at once (at least 1)."""
    fits = [len(trials)]
    cpus = max(t.cfg.scaling.num_workers * t.cfg.scaling.cpus_per_worker for t in trials)
    if cpus > 0:
        fits.append(int(resources.get("CPU", 0) // cpus))
    if resources.get("GPU", 0) > 0:  # GPU workers take one GPU each (use_gpu auto or true)
        gpus = max(t.cfg.scaling.num_workers for t in trials if t.cfg.scaling.use_gpu != "false")
        fits.append(int(resources["GPU"] // gpus))
    return max(1, min(fits))


def run_trial(config: dict[str, Any]) -> None:
    """Tune trainable: fit one TorchTrainer and end its MLflow child run."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from byol_ray.core.config import from_dict
    from byol_ray.jobs.pretrain.driver import build_trainer, root_cause
    from byol_ray.runtime import tracking

    trial = config["trial"]
    cfg, uri, run_id = from_dict(trial["cfg"]), trial["tracking_uri"], trial["run_id"]
    tracking.set_status(uri, run_id, "RUNNING")
    started = time.perf_counter()
    trainer = build_trainer(cfg, run_id, uri, storage_path=trial["storage"], name=trial["key"],
                            callbacks=[TuneReportCallback()])
    try:
        trainer.fit()
        if trial["evals"]:  # the paper's protocols, as part of the trial
            from byol_ray.jobs.protocols.run import evaluate_trial

            evaluate_trial(trial["evals"], run_id, uri, trial["storage"],
                           trial["eval_overrides"])
    except BaseException as error:
        tracking.finish_run(uri, run_id, root_cause(error))
        raise
    tracking.log_metrics(uri, run_id, {"time/trial_s": time.perf_counter() - started},
                         step=cfg.train.epochs)
    tracking.finish_run(uri, run_id)
