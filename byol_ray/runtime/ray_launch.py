"""The launch's two Ray forms (`runtime/launch.py`): a Ray Train run, and a loop inside the Ray
Tune trial's own process. Imported only when one of them runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from torch import nn

from byol_ray.core.config import Config
from byol_ray.runtime.console import say
from byol_ray.runtime.session import (
    CHECKPOINT_MANIFEST,
    Launched,
    LocalSession,
    Loop,
    Resume,
    manifest_if_complete,
    seal,
)
from byol_ray.runtime.trainer import torch_trainer

LOOP_KEY = "__loop__"  # the loop function, in a Train run's loop config


def resolved(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with its object-store refs (an encoder's weights, one copy for every worker
    and trial) replaced by their values: loops never see a Ray object."""
    return {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in config.items()
            if k != LOOP_KEY}


# --------------------------------------------------------------------------- Ray Train


class TrainSession:
    """A Ray Train worker's session: its rank among the run's workers, the device Train gave
    it, DDP through `prepare_model`, reports and checkpoints through `ray.train.report`."""

    def __init__(self):
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare(self, model: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(model)

    def report(self, metrics: dict[str, float], checkpoint: Path | None = None) -> None:
        if checkpoint is None:
            ray.train.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint))

    @contextlib.contextmanager
    def restored(self) -> Iterator[Resume | None]:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Resume(Path(folder), checkpoint.path.rstrip("/"))


def _train_entry(config: dict[str, Any]) -> None:
    """What every Train worker runs: the loop named in its config, with a `TrainSession`."""
    config[LOOP_KEY](TrainSession(), resolved(config))


def train_trainer(loop: Loop, config: dict[str, Any], cfg: Config, name: str,
                  storage: str | None, callbacks: list | None = None,
                  keep: int | None = None):
    """The `TorchTrainer` of the Train form: `loop` on `scaling.num_workers` workers; a run
    with the same `name` and `storage` resumes from its newest checkpoint (Train V2 restores
    its checkpoint manager from storage); `keep` checkpoints kept (None: all)."""
    return torch_trainer(
        _train_entry, config | {LOOP_KEY: loop}, cfg, name=name, storage_path=storage,
        callbacks=callbacks,
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep) if keep else None)


def run_train(loop: Loop, config: dict[str, Any], cfg: Config, name: str,
              storage: str | None, callbacks: list | None = None,
              keep: int | None = None) -> Launched:
    """The Train form: fit the trainer; its last checkpointed metrics and checkpoint."""
    result = train_trainer(loop, config, cfg, name, storage, callbacks, keep).fit()
    return Launched(dict(result.metrics or {}),
                    result.checkpoint.path if result.checkpoint else None)


# --------------------------------------------------------------------------- in the trial


class TrialSession(LocalSession):
    """The one worker inside a Tune trial's process: reports and checkpoints go through
    `tune.report` (Tune persists the checkpoint to the trial's folder in the run's storage);
    it resumes from the checkpoint Tune hands over (a trial Tune restarted), else from the
    newest complete one this trial (`trial_dir`) left in any earlier Tune run under `root` (a
    resumed sweep: a new Tune run, the same trial)."""

    def __init__(self, device: torch.device, root: str, trial_dir: str):
        super().__init__(device)
        self.root, self.trial_dir = root, trial_dir

    def report(self, metrics: dict[str, float], checkpoint: Path | None = None) -> None:
        self.last = dict(metrics)
        if checkpoint is None:
            tune.report(metrics)
            return
        seal(checkpoint, metrics)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint))

    @contextlib.contextmanager
    def restored(self) -> Iterator[Resume | None]:
        checkpoint = tune.get_checkpoint() or self._newest_in_storage()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Resume(Path(folder), checkpoint.path.rstrip("/"))

    def _newest_in_storage(self) -> tune.Checkpoint | None:
        """The newest complete checkpoint of `trial_dir` in `root/*/trial_dir/checkpoint_*`."""
        fs, root = pyarrow.fs.FileSystem.from_uri(self.root)
        newest: tuple[float, str] | None = None
        runs = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
        for run in (r for r in runs if r.type == pyarrow.fs.FileType.Directory):
            trial = f"{run.path}/{self.trial_dir}"
            for folder in fs.get_file_info(pyarrow.fs.FileSelector(trial, allow_not_found=True)):
                if not folder.base_name.startswith("checkpoint_"):
                    continue
                files = fs.get_file_info(pyarrow.fs.FileSelector(folder.path, recursive=True))
                sizes = {f.path.removeprefix(folder.path + "/"): f.size for f in files
                         if f.type == pyarrow.fs.FileType.File}
                if CHECKPOINT_MANIFEST not in sizes:
                    continue
                with fs.open_input_stream(f"{folder.path}/{CHECKPOINT_MANIFEST}") as stream:
                    manifest = manifest_if_complete(stream.read().decode(), sizes)
                if manifest and (newest is None or manifest["time"] > newest[0]):
                    newest = (manifest["time"], folder.path)
        return None if newest is None else tune.Checkpoint(newest[1], filesystem=fs)


def trial_resources(cfg: Config, gpu: bool) -> dict[str, float]:
    """What a trial that runs its one worker itself reserves: the worker's CPUs and GPU."""
    return {"CPU": cfg.scaling.cpus_per_worker} | ({"GPU": 1} if gpu else {})


def run_in_trial(loop: Loop, config: dict[str, Any], cfg: Config, *, root: str,
                 trial_dir: str) -> Launched:
    """The in-trial form: the loop in this Tune trial's process, restarted from its newest
    checkpoint up to `scaling.max_failures` times (-1: no limit) when it raises, as the Train
    form restarts its worker group."""
    device = torch.device("cuda", 0) if ray.get_gpu_ids() else torch.device("cpu")
    config, failures = resolved(config), 0
    threads = torch.get_num_threads()
    while True:
        session = TrialSession(device, root, trial_dir)
        try:
            loop(session, config)
            return Launched(session.last, None)
        except Exception as error:
            limit = cfg.scaling.max_failures
            if limit != -1 and failures >= limit:
                raise
            failures += 1
            say(f"[byol-ray] the trial's loop failed ({type(error).__name__}: {error}); "
                f"restart {failures} from its last checkpoint")
        finally:
            torch.set_num_threads(threads)



