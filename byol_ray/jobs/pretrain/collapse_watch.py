"""Ending a collapsed pretraining run, inside the worker group: the pure rule of
`byol_ray.learn.collapse_stop` fed by the collapse monitor after each epoch.

A reading is the evaluation's `eval/embedding_std` where an evaluation ran, else (every
`eval.collapse_every` epochs) the same metric on the online projections of the first
`eval.collapse_images` test images, measured by rank 0 alone (no collective: the encoder and
projector are used without their DDP wrapper). Rank 0 decides and every worker hears its
decision, so all leave the epoch loop together. A run restarted from a checkpoint after a
failure starts a new streak (the rule's state is not in the checkpoint).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.distributed as dist

from byol_ray.core.config import Config
from byol_ray.learn.collapse_stop import CollapseStop, stopped_text
from byol_ray.learn.data import DatasetSplits, eval_transform
from byol_ray.learn.methods import Method
from byol_ray.learn.metrics import embedding_std, extract_features, is_collapsed

STOPPED_METRIC = "train/collapse_stopped_epoch"  # logged (and reported) at the stop's epoch
STOPPED_TAG = "collapse_stop"  # the MLflow tag: "collapsed at epoch E, stopped"


class CollapseWatch:
    """After each epoch: whether the run stops (see the module docstring)."""

    def __init__(self, cfg: Config, method: Method, splits: DatasetSplits,
                 device: torch.device, rank: int, world: int):
        self.cfg, self.method, self.splits = cfg, method, splits
        self.device, self.rank, self.world = device, rank, world
        e = cfg.eval
        self.rule = CollapseStop(e.collapse_threshold, e.collapse_patience)
        self.on = e.collapse_stop and cfg.train.epochs > 0

    def after_epoch(self, epoch: int, metrics: dict[str, float], evaluated: bool) -> bool:
        """Feed the epoch's reading (from `metrics` when `evaluated`, else measured here when
        a check is due) to the rule; True when the run stops after `epoch`. A measured
        reading is added to `metrics` (rank 0)."""
        every = self.cfg.eval.collapse_every
        if not self.on or not (evaluated or (every and epoch % every == 0)):
            return False
        stop = torch.zeros(1, device=self.device)
        if self.rank == 0:
            if not evaluated:
                std = self._projection_std()
                metrics |= {"eval/embedding_std": std, "eval/collapsed": float(
                    is_collapsed(std, self.cfg.eval.collapse_threshold))}
            stop[0] = float(self.rule.observe(epoch, metrics["eval/embedding_std"]))
        if self.world > 1 and dist.is_initialized():
            on = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
            stop = stop.to(on)
            dist.broadcast(stop, src=0)
        return bool(stop.item())

    def marks(self, epoch: int) -> dict[str, float]:
        """The stopped run's metrics at its last epoch: the stop's epoch, and collapsed (the
        rule's readings said so, whatever the final evaluation's single reading)."""
        return {STOPPED_METRIC: float(epoch), "eval/collapsed": 1.0}

    @staticmethod
    def tags(epoch: int) -> dict[str, str]:
        """The MLflow tags of a stopped run."""
        return {STOPPED_TAG: stopped_text(epoch)}

    @torch.no_grad()
    def _projection_std(self) -> float:
        """embedding_std of the online projections of the first collapse_images test images."""
        test = self.splits.test
        transform = partial(eval_transform, image_size=self.cfg.data.image_size,
                            mean=self.splits.mean, std=self.splits.std)
        projector = getattr(self.method, "projector", None)
        module = self.method.encoder if projector is None else torch.nn.Sequential(
            self.method.encoder, torch.nn.Flatten(1), projector)
        # The reading must not change the run: its DataLoader draws a seed from the global
        # generator, which the training augmentations draw from too; restored after.
        with torch.random.fork_rng(devices=[]):
            features, _ = extract_features(  # eval mode; each module's mode restored after
                module, test, transform, batch_size=self.cfg.eval.linear_batch_size,
                device=self.device, indices=range(min(self.cfg.eval.collapse_images, len(test))),
                num_workers=self.cfg.data.loader_workers)
        return embedding_std(features)
