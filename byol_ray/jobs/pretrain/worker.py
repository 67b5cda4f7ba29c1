"""The pretraining loop, as every worker runs it: `train_worker(session, loop_config)`.

Read top to bottom: set up data, augmentations, method and optimiser; resume from the last
checkpoint if the session hands one over; then per epoch: train, evaluate when due, report to
the session (with a checkpoint when due), log to MLflow from rank 0, print one progress line.
The session (`runtime/session.py`) is all this loop knows of the process running it: a Ray
Train worker, a Tune trial's own process, or a plain process (`runtime/launch.py`); the loop
imports no Ray. Points where the workers wait for each other are marked `# sync:`.

Run it as a plain process (no Ray): `python -m byol_ray.jobs.pretrain --preset cpu-mini
[--set KEY=VALUE ...]` (`__main__.py`), or `byol-ray train --no-ray`.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from byol_ray.core.config import Config, from_dict
from byol_ray.core.methods import method_info
from byol_ray.jobs.pretrain.collapse_watch import CollapseWatch
from byol_ray.jobs.pretrain.evaluation import evaluate
from byol_ray.jobs.pretrain.step import (
    average_pending_gradients,
    restore_gradients,
    train_micro_batch,
)
from byol_ray.learn.data import ViewPair, load_splits, view_params
from byol_ray.learn.methods import Method, build_method
from byol_ray.learn.models.batch_groups import within_groups
from byol_ray.learn.optim import build_optimizer, lr_at
from byol_ray.learn.parallel import mean_over_workers, with_sync_batchnorm
from byol_ray.learn.target_memory import share_warning
from byol_ray.runtime.console import say
from byol_ray.runtime.pause_points import pause_point
from byol_ray.runtime.session import Session
from byol_ray.runtime.tracking.logger import RunLogger
from byol_ray.runtime.weights import write_weights

CHECKPOINT_FILE = "state.pt"


def train_worker(session: Session, loop_config: dict[str, Any]) -> None:
    """Pretrain `loop_config["cfg"]` as worker `session.rank`, logging to MLflow run `run_id`."""
    cfg = from_dict(loop_config["cfg"])
    run_id: str = loop_config["run_id"]
    tracking_uri: str = loop_config["tracking_uri"]
    rank, world, device = session.rank, session.world, session.device
    if device.type == "cpu":  # as many threads as the CPUs reserved for this worker
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every worker

    splits = load_splits(cfg.data, cfg.augment)
    layout = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    method = build_method(cfg).to(device, memory_format=layout)
    method = (within_groups(method, cfg.data.group_size, cfg.data.batch_size // world, device)
              if cfg.data.group_size else with_sync_batchnorm(method, device, world))
    is_training = method_info(cfg.method.name).trains and cfg.train.epochs > 0
    model = session.prepare(method) if is_training else method  # DDP when world > 1
    if is_training and cfg.train.compile:  # the forward only; checkpoints keep `method`'s names
        model = torch.compile(model)
    torch.manual_seed(cfg.train.seed * 1000 + rank + 1)  # each worker its own augmentations

    sampler = DistributedSampler(
        splits.pretrain, num_replicas=world, rank=rank, shuffle=True, seed=cfg.train.seed,
        drop_last=True,
    )
    loader = DataLoader(
        splits.pretrain, batch_size=cfg.data.batch_size // world, sampler=sampler,
        drop_last=True, num_workers=cfg.data.loader_workers, pin_memory=device.type == "cuda",
        persistent_workers=cfg.data.loader_workers > 0, collate_fn=splits.collate,
    )
    steps_per_epoch = len(loader)
    if is_training and steps_per_epoch == 0:
        raise ValueError(
            f"data.batch_size: {cfg.data.batch_size} is larger than the pretraining split "
            f"({len(splits.pretrain)} images); no full batch per epoch"
        )
    # An optimiser step (and a target update) every `accumulate` batches [P Fig. 3a]; the
    # groups run across epochs, and a last incomplete group (its lr would be 0) is not run.
    accumulate = cfg.train.accumulate_steps
    total_steps = cfg.train.epochs * steps_per_epoch // accumulate
    left_over = cfg.train.epochs * steps_per_epoch - total_steps * accumulate
    if is_training and left_over >= steps_per_epoch:
        raise ValueError(
            f"train.accumulate_steps: {accumulate} batches per optimiser step leave the last "
            f"{left_over} of the run's {cfg.train.epochs} x {steps_per_epoch} batches without a "
            f"step; at most {steps_per_epoch - 1} (less than an epoch) may be left"
        )
    if is_training and left_over and rank == 0:
        say(f"[byol-ray] train.accumulate_steps={accumulate}: the run's last {left_over} "
            "batches complete no optimiser step (their lr would be 0) and are not run")
    warmup_steps = round(cfg.optim.warmup_epochs * steps_per_epoch / accumulate)
    peak_lr = cfg.optim.lr(cfg.data.batch_size * accumulate)
    # Loader batch -> T and T' on the device (ImageFolder batches arrive already cropped).
    views = ViewPair(view_params(cfg.augment), cfg.data.image_size, splits.mean, splits.std)
    views = views.to(device)
    optimizer = build_optimizer(method, cfg.optim, peak_lr)
    amp = cfg.train.amp and device.type == "cuda"

    log = _Logger(cfg, run_id, tracking_uri, rank, loop_config.get("journal", ""))
    clock = _Stopwatch()
    if not is_training:  # a method that does not train: one evaluation is the whole run
        with clock("eval"):
            final = evaluate(method, splits, cfg, device, rank, world, linear=True)
        log.epoch(0, final | clock.totals())
        _log_weights(method, cfg, log)
        _report(session, final | {"epoch": 0}, method, optimizer, 0, checkpoint=False)
        log.close()
        return
    start_epoch = _restore(session, method, optimizer)
    if start_epoch == 0:  # the untrained encoder: where the curves start, and the baseline
        with clock("eval"):
            baseline = evaluate(method, splits, cfg, device, rank, world, linear=True)
        log.epoch(0, baseline | {f"baseline/{k.removeprefix('eval/')}": v
                                 for k, v in baseline.items()})

    lr, extras = 0.0, {}
    watch = CollapseWatch(cfg, method, splits, device, rank, world)
    for epoch in range(start_epoch, cfg.train.epochs):
        sampler.set_epoch(epoch)
        model.train()
        started, loss_sum, batches = time.perf_counter(), torch.zeros((), device=device), 0
        for i, (batch, _) in enumerate(loader):
            batch_index = epoch * steps_per_epoch + i
            if batch_index >= total_steps * accumulate:
                break
            outputs, step = train_micro_batch(  # sync: DDP's all-reduce ends each group
                model, optimizer, in_layout(views(batch), layout), batch_index, accumulate,
                lambda k: lr_at(k, total_steps, warmup_steps, peak_lr), amp,
            )
            if step is not None:
                lr = optimizer.param_groups[0]["lr"]
                extras = method.after_step(step + 1, total_steps)
            loss_sum += outputs["loss"].detach()
            batches += 1
        seconds = time.perf_counter() - started
        clock.add("train", seconds)
        loss = mean_over_workers(loss_sum / batches, world)  # sync
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at epoch {epoch + 1}; the run diverged")
        metrics = {
            "train/loss": loss,
            "train/lr": lr,
            "train/images_per_s": batches * cfg.data.batch_size / seconds,
            **{f"train/{k}": v for k, v in extras.items()},
        }
        done = epoch + 1
        eval_due = _due(done, cfg.eval.eval_every, cfg.train.epochs)
        if eval_due:
            with clock("eval"):  # sync: every worker embeds a shard, rank 0 scores
                metrics |= evaluate(method, splits, cfg, device, rank, world,
                                    linear=done == cfg.train.epochs)
        # A collapsed run ends here, evaluated (and checkpointed) as at its last epoch.
        if stopped := watch.after_epoch(done, metrics, eval_due):
            with clock("eval"):
                metrics |= evaluate(method, splits, cfg, device, rank, world, linear=True)
            metrics |= watch.marks(done)
            log.stopped(watch.tags(done))
        log.epoch(done, metrics | clock.totals())
        if rank == 0:
            pause_point("epoch-end")  # a test kills this worker here (Ray loses a worker)
        # The session hears of evaluations and checkpoints only: under Ray Train each report
        # waits for its controller (sync).
        checkpoint_due = _due(done, cfg.train.checkpoint_every, cfg.train.epochs) or stopped
        if done == cfg.train.epochs or stopped:  # before the last checkpoint: a resume finds
            _log_weights(method, cfg, log)  # them saved
        if eval_due or checkpoint_due:
            # A group cut by the epoch's end: its gradients so far go into the checkpoint.
            pending = (done * steps_per_epoch % accumulate and done < cfg.train.epochs
                       and checkpoint_due)
            grads = average_pending_gradients(method) if pending else None
            _report(session, metrics | {"epoch": done}, method, optimizer, done, checkpoint_due,
                    grads)
        if stopped:
            break
    if rank == 0 and (note := share_warning(extras)):  # issue 30: more than 1 % of xi_0 left
        say(f"[byol-ray] {note}")
    log.close()


def _log_weights(method: Method, cfg: Config, log: _Logger) -> None:
    """Rank 0 saves the final encoder, projector and target to the run (`weights/`)."""
    if log.run is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        log.run.log_weights(write_weights(method, cfg, Path(folder)))


class _Stopwatch:
    """Seconds spent per phase (train, eval), logged as `time/<phase>_s` running totals."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def __call__(self, phase: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - started)

    def totals(self) -> dict[str, float]:
        return {f"time/{phase}_s": value for phase, value in self.seconds.items()}


def in_layout(views: tuple[torch.Tensor, ...], layout: torch.memory_format
              ) -> tuple[torch.Tensor, ...]:
    """The views in the model's memory layout (`train.channels_last`); unchanged otherwise."""
    if layout == torch.preserve_format:
        return views
    return tuple(v.contiguous(memory_format=layout) for v in views)


def _due(epoch: int, every: int, last: int) -> bool:
    """Whether a periodic action (eval, checkpoint) runs after `epoch`; always after the last."""
    return epoch == last or (every > 0 and epoch % every == 0)


def _restore(session: Session, method: Method, optimizer: torch.optim.Optimizer) -> int:
    """Load the checkpoint the session hands over (after a failure or a resume); next epoch."""
    with session.restored() as resume:
        if resume is None:
            return 0
        state = load_state(resume.folder / CHECKPOINT_FILE,
                           shown_as=f"{resume.shown_as}/{CHECKPOINT_FILE}")
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("pending_grads") is not None:
        restore_gradients(method, state["pending_grads"])
    say(f"[byol-ray] resumed from checkpoint after epoch {state['epoch']}")
    return int(state["epoch"])


class CorruptCheckpointError(RuntimeError):
    """A checkpoint handed over cannot be read: the run stops instead of starting over."""


def load_state(path: Path, shown_as: str) -> dict[str, Any]:
    """The training state in a checkpoint's `state.pt`, or CorruptCheckpointError naming the
    file (`shown_as`: where it lives in storage) when it is missing, truncated or damaged:
    never a silent restart from epoch 0."""
    advice = ("delete that checkpoint folder to resume from the one before it, or start a new "
              "run under another name")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CorruptCheckpointError(f"checkpoint file {shown_as} is missing; {advice}") from None
    except Exception as error:  # torch: "PytorchStreamReader failed reading zip archive", ...
        say(f"[byol-ray] reading {shown_as}: {type(error).__name__}: {error}")
        raise CorruptCheckpointError(f"checkpoint file {shown_as} cannot be read, it is truncated "
                                     f"or damaged; {advice}") from None
    missing = {"method", "optimizer", "epoch"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise CorruptCheckpointError(f"checkpoint file {shown_as} lacks {sorted(missing)}; "
                                     f"{advice}")
    return state


def _report(
    session: Session,
    metrics: dict[str, float],
    method: Method,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    checkpoint: bool,
    pending_grads: list[torch.Tensor | None] | None = None,
) -> None:
    """Report from every worker (sync: a barrier under Ray Train); rank 0 attaches the
    checkpoint. `pending_grads`: the gradients of an accumulation group the epoch's end cut."""
    if not (checkpoint and session.rank == 0):
        session.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        state = {"method": method.state_dict(), "optimizer": optimizer.state_dict(),
                 "epoch": epoch, "pending_grads": pending_grads}
        torch.save(state, Path(folder) / CHECKPOINT_FILE)
        session.report(metrics, checkpoint=Path(folder))


class _Logger:
    """Rank 0's voice: MLflow metrics and one console line per logged epoch.

    Metrics go through `RunLogger`: training never waits on the tracking server, and
    the epochs a restarted worker trains again (between its checkpoint and the failure) are
    not logged twice.
    """

    def __init__(self, cfg: Config, run_id: str, tracking_uri: str, rank: int, journal: str):
        self.cfg = cfg
        self.run = RunLogger(tracking_uri, run_id, journal) if rank == 0 else None
        self.started = time.perf_counter()
        self.first_epoch: int | None = None

    def stopped(self, tags: dict[str, str]) -> None:
        """The run ends early (a collapse): its tags, and a console line."""
        if self.run is not None:
            self.run.set_tags(tags)
            say(f"[byol-ray] {'; '.join(tags.values())}")

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.run is None:
            return
        self.run.log_epoch(metrics, epoch)
        if self.first_epoch is None:
            self.first_epoch, self.started = epoch, time.perf_counter()
        if epoch % self.cfg.train.log_every and epoch != self.cfg.train.epochs:
            return
        say(self._line(epoch, metrics))

    def _line(self, epoch: int, metrics: dict[str, float]) -> str:
        parts = [f"[byol-ray] epoch {epoch}/{self.cfg.train.epochs}"]
        names = {"train/loss": "loss {:.4f}", "train/lr": "lr {:.3g}", "train/tau": "tau {:.4f}",
                 "train/images_per_s": "{:.0f} img/s"}
        parts += [fmt.format(metrics[k]) for k, fmt in names.items() if k in metrics]
        epochs_done = epoch - (self.first_epoch or 0)
        if epochs_done > 0:
            per_epoch = (time.perf_counter() - self.started) / epochs_done
            parts.append(f"eta {_clock(per_epoch * (self.cfg.train.epochs - epoch))}")
        parts += [f"{k.removeprefix('eval/')} {v:.2f}" for k, v in metrics.items()
                  if k.startswith("eval/")]
        return " | ".join(parts)

    def close(self) -> None:
        """Wait (bounded) until the buffered metrics reached the server; else say where they
        are kept."""
        if self.run is not None:
            self.run.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"

