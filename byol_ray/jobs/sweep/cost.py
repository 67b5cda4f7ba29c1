"""What a sweep costs before it runs: GPU-hours and wall clock of its pretraining, pure.

Each trial trains `epochs` x (images of its pretraining split) images; one GPU trains them at the
images/s `benchmarks/gpu_check.sh` measured for our BYOL step as the presets ship it, and a trial
on W workers takes 1/W of that wall time. SimCLR's step (no target forward) is cheaper, so its
trials are over-estimated; the evaluation protocols are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from byol_ray.core.config import Config
from byol_ray.core.methods import method_info

# Images/s of one GPU: (encoder, image size) -> (rate, settings). NVIDIA H200, torch 2.11,
# 2026-11-26 (benchmarks/results/gpu_check_h200_2026-11-26.json, "ours" at the preset's batch).
MEASURED_ON = "NVIDIA H200 (benchmarks/gpu_check.sh, 2026-11-26)"
STEP_IMAGES_PER_S: dict[tuple[str, int], tuple[float, str]] = {
    ("resnet18", 32): (5838.0, "cifar10 preset, bf16"),
    ("resnet50", 224): (1286.0, "imagenet preset, bf16 + channels_last"),
}
# Images of each dataset's pretraining split; ImageFolder by preset: ImageNet-1k's train split
# (1,281,167) and ImageNet-100's (CMC's 100 classes, 126,689).
DATASET_IMAGES = {"digits": 1437, "colour_digits": 1437, "mnistm_digits": 1437,
                  "cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000}
IMAGEFOLDER_IMAGES = {"imagenet": 1_281_167, "imagenet-300": 1_281_167, "imagenet100": 126_689}


@dataclass(frozen=True)
class Cost:
    """GPU-hours and the hours one trial of them takes; `unknown` says why there is no estimate."""

    gpu_hours: float = 0.0
    longest_trial_hours: float = 0.0
    workers: int = 0  # GPUs the widest trial asks for
    unknown: str = ""


def trial_cost(cfg: Config) -> Cost:
    """One trial's pretraining: GPU-hours and wall-clock hours on its workers."""
    if not method_info(cfg.method.name).trains or cfg.scaling.use_gpu == "false":
        return Cost()
    images = (IMAGEFOLDER_IMAGES.get(cfg.preset) if cfg.data.dataset == "imagefolder"
              else DATASET_IMAGES.get(cfg.data.dataset))
    rate = STEP_IMAGES_PER_S.get((cfg.model.encoder, cfg.data.image_size))
    if images is None or rate is None:
        what = (f"the step of {cfg.model.encoder} at {cfg.data.image_size} px was never measured "
                "on a GPU" if rate is None else f"the size of {cfg.data.dataset} at "
                f"{cfg.data.root or '(no root)'} is not known")
        return Cost(unknown=what)
    gpu_hours = cfg.train.epochs * images / rate[0] / 3600
    workers = cfg.scaling.num_workers
    return Cost(gpu_hours, gpu_hours / workers, workers)


def total_cost(configs: list[Config]) -> Cost:
    """The sum over trials (the first unknown one makes the whole unknown)."""
    costs = [trial_cost(cfg) for cfg in configs]
    if unknown := next((c.unknown for c in costs if c.unknown), ""):
        return Cost(unknown=unknown)
    return Cost(sum(c.gpu_hours for c in costs), max(c.longest_trial_hours for c in costs),
                max(c.workers for c in costs))


def _duration(hours: float) -> str:
    return f"{hours:,.1f} hours" if hours < 48 else f"{hours / 24:,.1f} days"


def describe_cost(cost: Cost, trials: int, gpus: int | None) -> str:
    """One line: trials, GPU-hours and the wall clock on `gpus` GPUs (default: the fewest that
    run its widest trial, one trial at a time)."""
    if cost.unknown:
        return f"{trials} trials; cost not estimated: {cost.unknown} (benchmarks/gpu_check.sh)"
    if not cost.gpu_hours:
        return f"{trials} trials; no GPU time (CPU or untrained runs only)"
    gpus = gpus or cost.workers
    if gpus < cost.workers:
        return f"{trials} trials; a trial needs {cost.workers} GPUs, more than --gpus {gpus}"
    usable = max(gpus // cost.workers, 1) * cost.workers  # whole trials side by side
    wall = max(cost.gpu_hours / usable, cost.longest_trial_hours)
    where = "GPUs" if gpus != cost.workers else "GPUs, one trial at a time (--gpus N for yours)"
    return (f"{trials} trials, {math.ceil(cost.gpu_hours):,} GPU-hours of pretraining, about "
            f"{_duration(wall)} on {gpus} {where}; step speed measured on {MEASURED_ON}")
