"""Ablation grids as Ray Tune sweeps: one Tune trial = one pretraining run.

`plan` (pure, `byol_ray.jobs.sweep.plan`) expands a grid's cells x seeds into validated trial
configs; `run_sweep` opens one MLflow parent run for the sweep and one child run per trial,
skips trials whose child run already FINISHED (that is what `--resume` and `byol-ray
reproduce` rely on), and runs the rest as Tune trials. A trial launches its loop
(`runtime/launch.py`) the cheapest way that keeps its checkpoints: a one-worker trial runs it
in its own process and reports to Tune itself (checkpoints persisted by Tune under the trial's
folder, `trial_dir`, named after its child run); a trial of several workers runs a Ray Train
`TorchTrainer` that reports to Tune through `TuneReportCallback`, under a stable name. Either
way a re-run continues from the trial's last checkpoint in the storage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from byol_ray.core.config import to_dict
from byol_ray.jobs.sweep.plan import (
    Grid,
    SweepOptions,
    Trial,
    experiment_name,
    mark_twins,
    plan,
    sweep_name,
)
from byol_ray.runtime.pause_points import pause_point
from byol_ray.runtime.tracking import store, sweeps
from byol_ray.runtime.tracking.logger import sync_journals
from byol_ray.runtime.tracking.run import Run

TRIAL_DRIVER_MEMORY = 128 * 2**20  # bytes Ray reserves for each Tune trial's driver
# The head's custom resource (cluster/*.yaml): trial drivers stay off nodes that can vanish,
# as Ray advises for Tune over Train (a lost driver would lose its whole trial).
HEAD_RESOURCE = "byol_head"


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

    # Ray only once a sweep runs: the grids and the CLI import this module
    from byol_ray.jobs.pretrain.driver import preflight
    from byol_ray.jobs.protocols.run import check_trial_evals
    from byol_ray.runtime.cluster import check_resources, connect, exit_if_cluster_lost
    from byol_ray.runtime.storage import check_storage

    plans = [(grid, options, plan(grid, options)) for grid, options in jobs]
    for _, options, trials in plans:
        for t in trials:
            preflight(t.cfg)
        settings = {(t.cfg.data.dataset, t.cfg.data.root, repr(t.cfg.protocol)): t.cfg
                    for t in trials}
        for cfg in settings.values():  # each dataset and protocol setting once
            check_trial_evals(cfg, options.evals)
    uris = [store.resolve_tracking_uri(options.tracking_uri) for _, options in jobs]
    for uri in dict.fromkeys(uris):
        store.check_tracking_store(uri)
        sync_journals(tracking_uri=uri)  # what earlier runs could not deliver
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
        parent = _open_parent(grid, options, name, uri)
        _attach_child_runs(trials, parent, grid, options, name)
        todo = [t for t in trials if t.status != "FINISHED" and t.twin_of is None]
        done = sum(t.status == "FINISHED" for t in trials)
        n_shared = len(trials) - done - len(todo)
        shared = f", {n_shared} shared with another grid" if n_shared else ""
        print(f"[sweep {name}] {len(trials)} trials: {done} finished before{shared}, "
              f"{len(todo)} to run; MLflow experiment "
              f"{experiment_name(grid, options.preset)!r}, parent run {parent.run_id}",
              flush=True)
        groups.append((todo, name, parent.run_id, uri))
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
    from byol_ray.runtime.cluster import absolute_storage  # Ray only once a sweep runs

    storage = absolute_storage(options.storage or "~/ray_results")
    return ("its trials stopped. Start a Ray cluster again and rerun the same command with "
            f"--resume: finished trials are kept, the others continue from their checkpoints "
            f"in {storage}")


def _share_twins(plans: list[tuple[Grid, SweepOptions, list[Trial]]], uris: list[str]) -> None:
    """Give each unfinished twin the results of the trial it repeats, once that one ended."""
    for (*_, trials), uri in zip(plans, uris, strict=True):
        for t in trials:
            if t.twin_of is None or t.status == "FINISHED" or t.twin_of.run_id is None:
                continue
            source = Run(uri, t.twin_of.run_id)
            if source.read().status in ("FINISHED", "FAILED"):
                sweeps.share_results(source, t.run_id)


def _open_parent(grid: Grid, options: SweepOptions, name: str, uri: str) -> Run:
    """The sweep's parent run: the newest one of this name when resuming, else a new one."""
    experiment = experiment_name(grid, options.preset)
    if options.resume:
        found = sweeps.newest_sweep_run(uri, experiment, name)
        if found:
            found.set_status("RUNNING")
            return found
        print(f"[sweep {name}] nothing to resume: starting it", flush=True)
    return sweeps.start_sweep_run(
        uri, experiment, name,
        tags={"grid": grid.name, "preset": options.preset, "description": grid.description,
              "seeds": str(options.seeds)},
        params={"overrides": " ".join(options.overrides)},
    )


def _attach_child_runs(trials: list[Trial], parent: Run, grid: Grid, options: SweepOptions,
                       name: str) -> None:
    """Give every trial its child run: the existing one (resume) or a new SCHEDULED one. The
    run is created with its `trial` tag in one call, so a killed driver leaves at most one run
    per trial, which a resume finds and finishes describing."""
    existing = sweeps.child_runs(parent, experiment_name(grid, options.preset))
    colour = {cell: sweeps.cell_colour(i)  # grid order
              for i, cell in enumerate(dict.fromkeys(t.cell for t in trials))}
    for t in trials:
        if t.key in existing:
            record = existing[t.key]
            t.run_id, t.status = record.run_id, record.status
            if t.status != "FINISHED" and not record.describes(t.cfg):
                Run(parent.uri, t.run_id, parent.client).describe(t.cfg)
            continue
        run = Run.start(t.cfg, parent.uri, parent_run_id=parent.run_id, describe=False, tags={
            "role": "trial", "sweep": name, "grid": grid.name, "trial": t.key,
            "seed": str(t.seed), "ablation": t.cell.ablation, "ablation_value": t.cell.value,
            sweeps.RUN_COLOR_TAG: colour[t.cell],
        })
        t.run_id = run.run_id
        pause_point("trials-start")
        run.describe(t.cfg)
        run.set_status("SCHEDULED")
        t.status = "SCHEDULED"


def _end_parent(parent_id: str, uri: str, trials: list[Trial]) -> None:
    """FINISHED once every trial ran; failed trials are counted in a tag."""
    pause_point("parent-closing")
    sweeps.end_sweep_run(Run(uri, parent_id), sum(t.status == "FAILED" for t in trials))


def _refresh_status(trials: list[Trial], uri: str) -> None:
    for t in trials:
        t.status = Run(uri, t.run_id).read().status


def _tune(groups: list[tuple[list[Trial], str, str, str]], options: SweepOptions) -> None:
    """Run every group's trials (trials, sweep name, parent run id, tracking URI) as one Ray
    Tune run; a failed trial is recorded and the others go on."""
    from ray import tune

    from byol_ray.jobs.sweep.progress import ProgressCallback
    from byol_ray.runtime.cluster import absolute_storage, cluster_capacity
    from byol_ray.runtime.storage import join

    storage, capacity = absolute_storage(options.storage or "~/ray_results"), cluster_capacity()
    configs = [{"key": t.key, "cfg": to_dict(t.cfg), "run_id": t.run_id, "tracking_uri": uri,
                "storage": join(storage, f"{name}-{parent_id[:8]}"), "evals": options.evals,
                "eval_overrides": [o for o in options.overrides if o.startswith("protocol.")],
                "root": storage, "trial_dir": f"{t.key}-{t.run_id[:8]}"}
               for trials, name, parent_id, uri in groups for t in trials]
    trials = [t for group in groups for t in group[0]]
    names = [name for trials_of, name, *_ in groups if trials_of]
    label = names[0] if len(names) == 1 else f"{len(names)} grids, {options.preset}"
    run_name = (f"{names[0]}-{groups[0][2][:8]}" if len(groups) == 1
                else f"reproduce-{options.preset}")
    tuner = tune.Tuner(
        tune.with_resources(run_trial, lambda config: _trial_resources(config, capacity)),
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=options.concurrent or _fits(trials, capacity),
            trial_name_creator=lambda trial: trial.config["trial"]["key"],
            trial_dirname_creator=lambda trial: trial.config["trial"]["trial_dir"],
        ),
        run_config=tune.RunConfig(
            name=f"{run_name}-{int(time.time())}", storage_path=storage,
            callbacks=[ProgressCallback(label, total=len(trials))], verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # in-trial checkpoints
        ),
    )
    tuner.fit()


def _trial_resources(config: dict[str, Any], capacity: dict[str, float]):
    """What a trial reserves: the worker's CPUs (and GPU) when it runs its one worker itself;
    else nothing but its driver's memory, as it only drives its Train workers (Ray needs some
    resource). On the head where it has HEAD_RESOURCE, as the workers' nodes may vanish."""
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    from byol_ray.core.config import from_dict
    from byol_ray.runtime.cluster import use_gpu
    from byol_ray.runtime.launch import form_for
    from byol_ray.runtime.ray_launch import trial_resources

    cfg = from_dict(config["trial"]["cfg"])
    own = (trial_resources(cfg, use_gpu(cfg)) if form_for(cfg, in_trial=True) == "trial"
           else {"CPU": 0})
    return resource_dict_to_pg_factory(own | {"memory": TRIAL_DRIVER_MEMORY} | (
        {HEAD_RESOURCE: 0.001} if capacity.get(HEAD_RESOURCE) else {}))


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
    """Tune trainable: launch the trial's pretraining loop (in this process for one worker,
    else a Ray Train run reporting to Tune), its protocols, and end its MLflow child run."""
    from byol_ray.core.config import from_dict
    from byol_ray.jobs.pretrain.driver import launch_pretraining
    from byol_ray.jobs.protocols.run import evaluate_trial
    from byol_ray.runtime.launch import form_for
    from byol_ray.runtime.lifecycle import tracked_run

    trial = config["trial"]
    cfg, uri, run_id = from_dict(trial["cfg"]), trial["tracking_uri"], trial["run_id"]
    started = time.perf_counter()
    form = form_for(cfg, in_trial=True)
    if form == "trial":  # Tune persists the checkpoints; a resume looks for them under root
        where = {"root": trial["root"], "trial_dir": trial["trial_dir"]}
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        where = {"storage": trial["storage"], "callbacks": [TuneReportCallback()]}
    with tracked_run(cfg, uri, run_id=run_id, journal=True) as run:  # workers log via journal
        launch_pretraining(cfg, run_id, uri, form=form, name=trial["key"], **where)
        if trial["evals"]:  # the paper's protocols, as part of the trial
            evaluate_trial(trial["evals"], run_id, uri, trial["storage"],
                           trial["eval_overrides"])
        run.log_metrics({"time/trial_s": time.perf_counter() - started}, step=cfg.train.epochs)
