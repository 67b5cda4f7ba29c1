"""What a training loop may ask of the process that runs it, and nothing more.

A loop (`jobs/pretrain/worker.py`, `jobs/protocols/loop.py`, `jobs/protocols/dense.py`) is a
function `loop(session, config)`. The session says which worker this is (`rank`, `world`),
on which `device`, wraps the model for data parallelism (`prepare`: DDP when world > 1),
takes the loop's reports (`report`: metrics, and a checkpoint folder when one is due) and
hands over the checkpoint to resume from (`restored`). Which process runs the loop is
`runtime.launch`'s choice: a Ray Train worker, a Ray Tune trial's own process, or a plain
Python process. This module imports no Ray: `LocalSession` (one worker, this process) is the
plain process's session, and the in-trial session extends it (`runtime/ray_launch.py`).

A checkpoint folder carries `CHECKPOINT_MANIFEST` (when it was reported, the metrics, and the
size of each file): a folder killed half-copied is told apart from a complete one, so a resume
never starts from it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

CHECKPOINT_MANIFEST = "byol_checkpoint.json"
KEEP_CHECKPOINTS = 2  # as the Ray Train launch's CheckpointConfig(num_to_keep=2)


@dataclass
class Launched:
    """What a launched loop left: its last reported metrics, its last checkpoint (a path in
    the run's storage, or None)."""

    metrics: dict[str, float]
    checkpoint: str | None


@dataclass
class Resume:
    """A checkpoint to resume from: its files in a local `folder`, `shown_as` where it is kept
    (what an error about it names)."""

    folder: Path
    shown_as: str


class Session(Protocol):
    """The one interface a loop uses; see the module's docstring."""

    rank: int
    world: int
    device: torch.device

    def prepare(self, model: nn.Module) -> nn.Module:
        """`model` on the device, wrapped for data parallelism when world > 1."""
        ...

    def report(self, metrics: dict[str, float], checkpoint: Path | None = None) -> None:
        """Report `metrics` (every worker calls it: a barrier); rank 0 may attach the local
        `checkpoint` folder, which the session keeps (copies) before returning."""
        ...

    def restored(self) -> contextlib.AbstractContextManager[Resume | None]:
        """The checkpoint to resume from while the block runs, None on a fresh start."""
        ...


Loop = Callable[[Session, dict[str, Any]], None]


def seal(folder: Path, metrics: dict[str, float]) -> None:
    """Write the folder's manifest: report time, metrics, each file's size."""
    files = {p.relative_to(folder).as_posix(): p.stat().st_size
             for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / CHECKPOINT_MANIFEST).write_text(json.dumps(
        {"time": time.time(), "metrics": metrics, "files": files}))


def manifest_if_complete(manifest_text: str, sizes: dict[str, int]) -> dict | None:
    """The manifest when every file it lists has its size in `sizes` (path -> bytes, what is
    in storage), else None: a checkpoint whose copy was cut short."""
    try:
        manifest = json.loads(manifest_text)
        complete = all(sizes.get(name) == size for name, size in manifest["files"].items())
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return manifest if complete else None


def report_result(session: Session, metrics: dict[str, float]) -> None:
    """A loop's final metrics, reported from every worker (sync); rank 0 attaches them as a
    checkpoint, which is what a Ray Train run hands back to its driver (Train V2 keeps
    checkpointed metrics), so every launch form returns them in `Launched.metrics`."""
    if session.rank != 0:
        session.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "metrics.json").write_text(json.dumps(metrics))
        session.report(metrics, checkpoint=Path(folder))


def device_for(cfg_use_gpu: str) -> torch.device:
    """One process's device: its GPU when there is one and `scaling.use_gpu` allows."""
    if cfg_use_gpu != "false" and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


@dataclass
class LocalSession:
    """One worker in this process: the plain launch's session. Checkpoints are copied into
    `checkpoints` (a local folder; the newest `KEEP_CHECKPOINTS` kept) and the newest complete
    one there is where a run of the same folder resumes."""

    device: torch.device
    checkpoints: Path | None = None
    rank: int = 0
    world: int = 1
    last: dict[str, float] = field(default_factory=dict)  # the last metrics reported
    last_checkpoint: str | None = None

    def prepare(self, model: nn.Module) -> nn.Module:
        """On the device; one worker needs no DDP wrapper."""
        return model.to(self.device)

    def report(self, metrics: dict[str, float], checkpoint: Path | None = None) -> None:
        """Keep the metrics; copy the checkpoint folder into `checkpoints`."""
        self.last = dict(metrics)
        if checkpoint is None or self.checkpoints is None:
            return
        seal(checkpoint, metrics)
        index = 1 + max((int(p.name.removeprefix("checkpoint_")) for p in self._kept()),
                        default=-1)
        target = self.checkpoints / f"checkpoint_{index:06d}"
        shutil.copytree(checkpoint, target)
        self.last_checkpoint = str(target)
        for old in self._kept()[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)

    def _kept(self) -> list[Path]:
        if self.checkpoints is None or not self.checkpoints.is_dir():
            return []
        return sorted(self.checkpoints.glob("checkpoint_[0-9]*"))

    @contextlib.contextmanager
    def restored(self) -> Iterator[Resume | None]:
        """The newest complete checkpoint in `checkpoints`, if any."""
        newest: tuple[float, Path] | None = None
        for folder in self._kept():
            manifest_file = folder / CHECKPOINT_MANIFEST
            if not manifest_file.is_file():
                continue
            sizes = {p.relative_to(folder).as_posix(): p.stat().st_size
                     for p in folder.rglob("*") if p.is_file()}
            manifest = manifest_if_complete(manifest_file.read_text(), sizes)
            if manifest and (newest is None or manifest["time"] > newest[0]):
                newest = (manifest["time"], folder)
        yield None if newest is None else Resume(newest[1], str(newest[1]))
