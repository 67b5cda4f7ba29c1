"""How much of its random initialisation BYOL's target still holds when a run ends, from the
config alone (no image is loaded): what `show-config`, `train --dry-run` and the sweeps'
`--dry-run` print for every run that has a target (issue 30).

The run's optimiser steps are counted as the pretraining loop counts them
(`jobs.pretrain.worker`): each worker's `DistributedSampler(drop_last=True)` holds
floor(N / workers) images, its loader `drop_last` batches of batch / workers, and a step every
`train.accumulate_steps` batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from byol_ray.core.config import BUNDLED_DATASETS, Config
from byol_ray.learn.methods.byol import SHARE_WARNING, ema_horizon, log_init_share

# Pretraining images per dataset (pretrain = train, STL-10: train + unlabeled): sklearn's 1,797
# digits less the 360 (ceil(0.2 x 1,797)) of the stratified 80/20 test split, which the
# variants share (`digit_variants`); CIFAR's 50,000 train images; STL-10's 5,000 + 100,000.
PRETRAIN_IMAGES = {**dict.fromkeys(BUNDLED_DATASETS, 1437), "cifar10": 50_000,
                   "cifar100": 50_000, "stl10": 105_000}
# An ImageFolder tree absent here (a dry run on a laptop): the size of the set the preset names.
PRESET_IMAGES = {"imagenet": 1_281_167, "imagenet-300": 1_281_167}  # ILSVRC-2012 train


def pretrain_images(cfg: Config) -> tuple[int, str] | None:
    """The pretraining split's image count and where it comes from, without loading images:
    a fixed size for the bundled and torchvision sets, the files of `data.root`/train for an
    ImageFolder (or ILSVRC-2012's count on the imagenet presets when it is absent); None where
    it cannot be known."""
    d = cfg.data
    if d.dataset in PRETRAIN_IMAGES:
        return PRETRAIN_IMAGES[d.dataset], f"{d.dataset}'s pretraining split"
    train = Path(d.root).expanduser() / "train"
    if d.root and train.is_dir():
        from byol_ray.learn.data.imagefolder import scan  # lists files, opens none

        return len(scan(train)[0]), f"the images in {train}"
    if cfg.preset in PRESET_IMAGES:
        return PRESET_IMAGES[cfg.preset], f"ILSVRC-2012 train ({d.root or 'data.root'} absent)"
    return None


def optimiser_steps(cfg: Config, images: int) -> int:
    """K: the run's optimiser steps (and target updates) on `images` pretraining images, as
    the pretraining loop takes them (drop_last per worker; accumulated batches)."""
    workers = cfg.scaling.num_workers
    per_epoch = (images // workers) // (cfg.data.batch_size // workers)
    return cfg.train.epochs * per_epoch // cfg.train.accumulate_steps


@dataclass(frozen=True)
class TargetMemory:
    """A run's target at its end: K steps, Pi tau_k (its share of xi_0), the EMA horizon."""

    steps: int
    log_share: float  # log Pi tau_k (the share itself underflows a float on long runs)
    horizon: float  # 1 / (1 - tau_base), in optimiser steps
    images: int
    source: str

    @classmethod
    def of(cls, cfg: Config) -> TargetMemory | None:
        """For a run with a target network (BYOL's); None without one or where the
        pretraining split's size is unknown."""
        m = cfg.method
        if m.name != "byol" or not m.target_network or cfg.train.epochs <= 0:
            return None
        counted = pretrain_images(cfg)
        if counted is None:
            return None
        steps = optimiser_steps(cfg, counted[0])
        return cls(steps, log_init_share(steps, m.tau_base, m.tau_schedule),
                   ema_horizon(m.tau_base), *counted)

    @property
    def share(self) -> float:
        """Pi tau_k: the share of its initialisation the target holds at the end."""
        return math.exp(self.log_share)

    def line(self) -> str:
        """One line: the share, the horizon against the run's length, and a warning above 1 %."""
        horizon = ("never (tau = 1)" if math.isinf(self.horizon) else
                   f"{self.horizon:.4g} steps = {self.horizon / max(self.steps, 1):.3g} x the run")
        verdict = ("a fixed random target by design (tau = 1)" if self.log_share == 0.0
                   else f"above {SHARE_WARNING:g}: the target has not forgotten its random start"
                   if self.share > SHARE_WARNING else "forgotten")
        return (f"target: {self.steps} optimiser steps ({self.images} images: {self.source}); "
                f"share of its initialisation left at the end {format_share(self.log_share)} "
                f"({verdict}); EMA horizon 1/(1 - tau_base) {horizon}")


def format_share(log_share: float) -> str:
    """The share exp(log_share) as 0.61 or 3.2e-05, or as e^-468.0 below 1e-12, or 0."""
    if log_share == -math.inf:
        return "0"
    if log_share < math.log(1e-12):
        return f"e^{log_share:.1f}"
    return f"{math.exp(log_share):.3g}"
