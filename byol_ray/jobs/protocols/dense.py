"""Dense transfer protocols (`segment`, `detect`) as launched loops: one worker per GPU (DDP),
a fixed number of SGD iterations with step decays, then the task's metrics in an MLflow run
linked to the pretraining run (tag `pretrain_run_id`).

`byol-ray eval segment|detect` resolves the encoder (`protocols.run`); the driver here checks
the config and the VOC files before Ray starts and hands the encoder to the workers through
Ray's object store (resolved by the launch: the loop gets the module and imports no Ray). A
task (`segment.py`, `detect.py`) says how to build its model and datasets, its loss and its
evaluation; this module owns the loop they share.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from byol_ray.core.config import Config, ConfigError, SegmentConfig, from_dict, to_dict, validate
from byol_ray.jobs.protocols import RANDOM_INIT_REF, SUPERVISED_REF, detect, segment
from byol_ray.learn.data.voc import check_voc
from byol_ray.learn.parallel import mean_over_workers, with_sync_batchnorm
from byol_ray.runtime.console import say
from byol_ray.runtime.launch import launch
from byol_ray.runtime.lifecycle import tracked_run
from byol_ray.runtime.session import Session
from byol_ray.runtime.tracking.run import Run

TASKS: dict[str, ModuleType] = {segment.NAME: segment, detect.NAME: detect}


@dataclass
class DenseResult:
    """A finished dense-protocol run: its MLflow id, final metrics and what the command
    prints."""

    run_id: str
    metrics: dict[str, float]
    report: str


def run_dense(cfg: Config, task: str, encoder: nn.Module, ref: str,
              pretrain_run_id: str | None, uri: str,
              storage_path: str | None = None, address: str | None = None) -> DenseResult:
    """Fine-tune and score `task` on `encoder` (named `ref`: a pretraining run's weights,
    `random-init` or `supervised`) in its own MLflow run at `uri` (resolved, checked, where the
    command started): in the pretraining run's experiment, nested under it, tags `role=eval`,
    `protocol`, `pretrain_run_id`, `weights_ref`. Through Ray Train (the launch's "train"
    form), as a cluster's GPUs run it."""
    preflight(cfg, task)
    cfg.tracking.run_name = f"eval-{task}"
    tags = {"role": "eval", "protocol": task, "pretrain_run_id": pretrain_run_id or ref,
            "weights_ref": ref}
    if ref in (RANDOM_INIT_REF, SUPERVISED_REF):  # the encoder's origin, as Table 4 names it
        tags["method"] = ref.replace("-", "_")
    with tracked_run(cfg, uri, address, tags=tags, parent_run_id=pretrain_run_id) as run:
        import ray  # started by tracked_run

        from byol_ray.runtime.cluster import absolute_storage

        launch(dense_worker, {"cfg": to_dict(cfg), "task": task, "run_id": run.run_id,
                              "tracking_uri": uri, "encoder": ray.put(encoder)},
               cfg, form="train", name=f"eval-{task}-{run.run_id[:8]}",
               storage=absolute_storage(storage_path) if storage_path else None)
    metrics = {k: v for k, v in run.read().metrics.items() if k.startswith(f"eval_{task}/")}
    return DenseResult(run.run_id, metrics, _report(cfg, task, ref, pretrain_run_id,
                                                    run.run_id, metrics, uri))


def _report(cfg: Config, task: str, ref: str, pretrain_run_id: str | None, run_id: str,
            metrics: dict[str, float], uri: str) -> str:
    settings = getattr(cfg, task)
    source = f"run {pretrain_run_id}" if pretrain_run_id else ref
    head = [k for k in metrics if k.endswith(("_miou", "_ap50", "_ap"))]
    scores = "   ".join(f"{k.split('/')[-1]} {metrics[k]:.2f} %" for k in head)
    return "\n".join([
        f"{task} transfer of {source} ({cfg.model.encoder}) to VOC{settings.year} "
        f"{settings.train_split} -> {settings.eval_split}, {settings.iterations} iterations:",
        f"  {scores}",
        f"  MLflow run {run_id} in experiment {cfg.tracking.experiment!r} ({uri}), tag "
        f"pretrain_run_id={pretrain_run_id or ref}",
    ])


def preflight(cfg: Config, task: str) -> None:
    """Every check that needs no worker: the task, config values, batch split, VOC files."""
    if task not in TASKS:
        raise ConfigError("PROTOCOL", f"{task!r} is not one of: {', '.join(TASKS)}")
    validate(cfg, check_paths=False)
    settings = getattr(cfg, task)
    if settings.batch_size % cfg.scaling.num_workers:
        raise ConfigError(f"{task}.batch_size", f"{settings.batch_size} is not divisible by "
                          f"scaling.num_workers={cfg.scaling.num_workers}")
    check_voc(task, settings.root, settings.year, (settings.train_split, settings.eval_split))


# --------------------------------------------------------------------------- worker side


def dense_worker(session: Session, loop_config: dict[str, Any]) -> None:
    """Fine-tune `task` for its iterations as worker `session.rank`, evaluate, log to MLflow."""
    cfg = from_dict(loop_config["cfg"])
    task: ModuleType = TASKS[loop_config["task"]]
    settings: Any = getattr(cfg, task.NAME)
    rank, world, device = session.rank, session.world, session.device
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    torch.manual_seed(cfg.train.seed)  # identical new heads on every worker
    model = task.build_model(loop_config["encoder"], settings)
    model = with_sync_batchnorm(model, device, world)
    ddp = session.prepare(model)  # DDP when world > 1
    seed = cfg.train.seed * 1000 + rank + 1  # each worker its own crops and scales
    torch.manual_seed(seed)
    random.seed(seed)

    train_set, eval_set = task.datasets(settings)
    per_worker = settings.batch_size // world
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.train.seed, drop_last=len(train_set) >= world)
    loader = DataLoader(train_set, batch_size=per_worker, sampler=sampler, drop_last=False,
                        num_workers=cfg.data.loader_workers, collate_fn=task.collate,
                        pin_memory=device.type == "cuda")
    eval_loader = DataLoader(Subset(eval_set, range(rank, len(eval_set), world)),
                             batch_size=per_worker, num_workers=cfg.data.loader_workers,
                             collate_fn=task.collate)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    milestones = sorted({round(m * settings.iterations) for m in settings.lr_milestones})
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)

    log = _Log(task.NAME, settings, loop_config["run_id"], loop_config["tracking_uri"], rank)
    log_every = max(1, settings.iterations // 10)
    loss_sum, window, started = torch.zeros((), device=device), 0, time.perf_counter()
    for step, batch in enumerate(_forever(loader, sampler), start=1):
        ddp.train()
        loss = task.loss(ddp, batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr = schedule.get_last_lr()[0]
        schedule.step()
        loss_sum, window = loss_sum + loss.detach(), window + 1
        done = step == settings.iterations
        if step % log_every == 0 or done:
            mean_loss = mean_over_workers(loss_sum / window, world)  # sync
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"{task.NAME} loss is {mean_loss} at iteration "
                                         f"{step}; lower {task.NAME}.lr")
            log.metrics(step, {"train/loss": mean_loss, "train/lr": lr,
                               "time/train_s": time.perf_counter() - started})
            loss_sum, window = torch.zeros_like(loss_sum), 0
        if done or (settings.eval_every and step % settings.eval_every == 0):
            model.eval()
            scores = task.evaluate(model, eval_loader, device)
            log.metrics(step, log.scored(scores))
        if done:
            session.report(log.scored(scores))  # sync
            return


def _forever(loader: DataLoader, sampler: DistributedSampler):
    """Batches of `loader` epoch after epoch, reshuffled each epoch."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


class _Log:
    """Rank 0's voice: MLflow metrics (step = iteration) and one console line per log."""

    def __init__(self, task: str, settings: SegmentConfig, run_id: str, uri: str, rank: int):
        self.task, self.settings = task, settings
        self.run = Run(uri, run_id) if rank == 0 else None

    def scored(self, scores: dict[str, float]) -> dict[str, float]:
        """Metric names by protocol and split: `eval_segment/val_miou`, `eval_detect/test_ap50`."""
        return {f"eval_{self.task}/{self.settings.eval_split}_{k}": v for k, v in scores.items()}

    def metrics(self, step: int, metrics: dict[str, float]) -> None:
        if self.run is None:
            return
        self.run.log_metrics(metrics, step=step)
        shown = {k.rsplit("/", 1)[-1]: v for k, v in metrics.items()
                 if k in ("train/loss", "train/lr") or k.endswith(("_miou", "_ap50", "_ap"))}
        parts = [f"[byol-ray] {self.task} {step}/{self.settings.iterations}"]
        parts += [f"{k} {v:.4g}" for k, v in shown.items()]
        say(" | ".join(parts))
