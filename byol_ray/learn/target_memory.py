"""How much of its random initialisation BYOL's target still holds when a run ends, from the
config alone (no image is loaded): what `show-config`, `train --dry-run` and the sweeps'
`--dry-run` print for every run that has a target (issue 30).

The run's optimiser steps are counted as the pretraining loop counts them
(`jobs.pretrain.worker`): each worker's `DistributedSampler(drop_last=True)` holds
floor(N / workers) images, its loader `drop_last` batches of batch / workers, and a step every
`train.accumulate_steps` batches.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

from byol_ray.core.config import BUNDLED_DATASETS, Config, validation_size

SHARE_WARNING = 0.01  # the target should have forgotten its start by the end (issue 30)


def init_share(total_steps: int, tau_base: float, schedule: str = "cosine",
               steps: int | None = None) -> float:
    """Pi_k tau_k over k = 1..steps (default: the run's `total_steps`, K), with the tau_k that
    `BYOL.after_step` applies: the share of its initial weights xi_0 the target still holds,
    since xi_K = (Pi_k tau_k) xi_0 + sum_k (1 - tau_k)(Pi_{j>k} tau_j) theta_k [P §3.2]. Under
    the cosine schedule it is ~exp(-(1 - tau_base) K / 2): 100 steps at 0.99 keep ~0.61."""
    return math.exp(log_init_share(total_steps, tau_base, schedule, steps))


@functools.cache
def log_init_share(total_steps: int, tau_base: float, schedule: str = "cosine",
                   steps: int | None = None) -> float:
    """log of `init_share` (-inf where a tau is 0), which stays finite where the share
    underflows a float (e^-1000 after a long run)."""
    steps = total_steps if steps is None else steps
    taus = [tau_at(k, total_steps, tau_base, schedule) for k in range(1, steps + 1)]
    if min(taus, default=1.0) <= 0.0:
        return -math.inf
    return math.fsum(math.log(tau) for tau in taus)


def ema_horizon(tau_base: float) -> float:
    """1 / (1 - tau_base): the steps over which the EMA averages at the start (inf at 1)."""
    return math.inf if tau_base >= 1.0 else 1.0 / (1.0 - tau_base)


def share_warning(logged: dict[str, float]) -> str | None:
    """What a run prints when it ends with its target holding more than SHARE_WARNING of its
    initialisation, from the last `after_step` values; None below it, without a target, and
    for tau = 1's target that is by design its initialisation (share exactly 1)."""
    share = logged.get("target_init_share", 0.0)
    if not SHARE_WARNING < share < 1.0:
        return None
    return (f"warning: the target ends holding {share:.3g} of its random initialisation "
            f"(Pi tau over the run's steps; above {SHARE_WARNING:g}): part of the run trained "
            "against a random network, as tau = 1 does; more optimiser steps or a lower "
            "method.tau_base let the target forget its start")


def tau_at(step: float, total_steps: float, tau_base: float, schedule: str = "cosine") -> float:
    """EMA decay of the target: tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 [P §3.2].

    Ramps from exactly `tau_base` at k = 0 to exactly 1.0 at k = K (and stays there), so the
    target freezes at the end of training; `schedule="constant"` keeps `tau_base`.
    """
    if schedule == "constant":
        return tau_base
    if schedule != "cosine":
        raise ValueError(f"unknown tau schedule {schedule!r}; expected cosine or constant")
    if total_steps <= 0:
        return tau_base
    if step >= total_steps:
        return 1.0
    # Written as tau_base + ... so that k = 0 returns tau_base bit for bit.
    return tau_base + (1.0 - tau_base) * (1.0 - math.cos(math.pi * step / total_steps)) / 2.0


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
        images = PRETRAIN_IMAGES[d.dataset]
        if d.eval_on == "validation":  # less the held-out part, counted as the split counts it
            return images - validation_size(images), f"{d.dataset}'s train split less validation"
        return images, f"{d.dataset}'s pretraining split"
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
