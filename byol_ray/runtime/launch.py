"""`launch(loop, config, cfg, ...)`: run a loop (`runtime/session.py`) the cheapest way that
keeps its guarantees, in one of three forms:

- `"train"`: a Ray Train `TorchTrainer`, one worker process per `scaling.num_workers` (DDP over
  them), retried from its last checkpoint; what runs of more than one worker, on a cluster, or
  from `byol-ray train` use. Checkpoints and the resume state live in the run's storage;
- `"trial"`: inside the Ray Tune trial's own process, for one-worker trials: no Train
  controller or worker group. Metrics and checkpoints go through Tune's own `tune.report`,
  persisted to the run's storage, and a resumed sweep continues the trial from its newest
  checkpoint there;
- `"plain"`: this process, without Ray (`byol-ray train --no-ray`; a protocol's fits inside a
  trial). Checkpoints are kept in a local folder.

The Ray forms live in `runtime/ray_launch.py`, imported only when one runs: the plain form
imports no Ray at all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from byol_ray.core.config import Config, ConfigError
from byol_ray.runtime.console import say
from byol_ray.runtime.session import Launched, LocalSession, Loop, device_for

FORMS = ("train", "trial", "plain")
DEFAULT_PLAIN_STORAGE = "~/byol_results"  # checkpoints of `--no-ray` runs without --storage


def form_for(cfg: Config, *, ray: bool = True, in_trial: bool = False) -> str:
    """Which form runs `cfg`: plain without Ray; in the trial's own process for a one-worker
    run inside a Tune trial (that reserved the worker's resources); else Ray Train."""
    if not ray:
        return "plain"
    return "trial" if in_trial and cfg.scaling.num_workers == 1 else "train"


def launch(loop: Loop, config: dict[str, Any], cfg: Config, *, form: str, name: str,
           storage: str | None = None, keep_checkpoints: bool = True,
           **ray_options: Any) -> Launched:
    """Run `loop(session, config)` in `form` (see the module's docstring). `name` and
    `storage`: where its checkpoints go (a run of the same name and storage resumes from its
    newest); `keep_checkpoints=False`: the plain form keeps none (a protocol's fit, whose
    result is its metrics); `ray_options` go to the Ray form (`runtime/ray_launch.py`)."""
    if form not in FORMS:
        raise ValueError(f"form {form!r} is not one of: {', '.join(FORMS)}")
    if form == "plain":
        return run_plain(loop, config, cfg, name, storage, keep_checkpoints)
    from byol_ray.runtime import ray_launch  # Ray only for its own forms

    if form == "train":
        return ray_launch.run_train(loop, config, cfg, name, storage, **ray_options)
    return ray_launch.run_in_trial(loop, config, cfg, **ray_options)


def plain_checkpoints(storage: str | None, name: str) -> Path:
    """The local folder of a plain run's checkpoints; ConfigError for a storage URI."""
    where = storage or DEFAULT_PLAIN_STORAGE
    if "://" in where:
        raise ConfigError("--storage", f"{where!r}: a run without Ray keeps its checkpoints in "
                                       "a local folder; give a folder")
    return Path(where).expanduser().resolve() / name


def run_plain(loop: Loop, config: dict[str, Any], cfg: Config, name: str,
              storage: str | None, checkpoints: bool = True) -> Launched:
    """The loop in this process as the one worker; object-store refs in `config` resolved
    when Ray is already imported (a protocol's fits inside a trial)."""
    if "ray" in sys.modules:
        import ray

        config = {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v
                  for k, v in config.items()}
    session = LocalSession(device_for(cfg.scaling.use_gpu),
                           plain_checkpoints(storage, name) if checkpoints else None)
    if checkpoints:
        say(f"[byol-ray] checkpoints of this run without Ray: {session.checkpoints}")
    if cfg.scaling.num_workers > 1:
        say(f"[byol-ray] scaling.num_workers={cfg.scaling.num_workers}: without Ray one process "
            "runs the whole batch (its BatchNorm statistics span all of it)")
    threads = torch.get_num_threads()
    try:
        loop(session, config)
    finally:
        torch.set_num_threads(threads)  # a loop sets its worker's threads; this process goes on
    return Launched(session.last, session.last_checkpoint)
