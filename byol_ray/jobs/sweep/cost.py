"""What a sweep costs before it runs: GPU-hours of its pretraining, its monitor evaluations and
the protocols every trial runs (`--eval`), and the wall clock; pure.

Speeds (one GPU, `STEP_IMAGES_PER_S` and `DECODE_IMAGES_PER_S`, measured by
`benchmarks/gpu_check.sh` on one card and day, `MEASURED_ON`):

- pretraining: `epochs` x (images of the pretraining split) at the images/s of our BYOL step as
  the presets ship it (bf16, channels_last on ResNet-50). SimCLR's step (no target forward) is
  cheaper: its trials are over-estimated.
- evaluation, never timed on a GPU, derived from the measured step: a step costs each image
  two views x (online forward + backward, about 3 forwards, + the target's forward) = 8
  forwards [FLOPs: backward about 2 forwards], so a frozen encoder's forward runs at about 8x
  the step's images/s in the protocols' fp32, and fine-tuning (one view, forward + backward)
  at 8/3x; on ImageFolder data both are capped by the CPU decoder's images/s. The estimate
  assumes the forward runs as efficiently as the step and the decoder is never slower than
  measured (8 loader workers per GPU), so every evaluation figure is a **lower bound**.
- monitor: the kNN evaluation embeds train + test every `eval.eval_every` epochs (and the
  untrained encoder once), plus `eval.collapse_images` test images per collapse reading.
- `linear` [P App. C.1]: one pass (every rate's heads on one encoder forward,
  `jobs.protocols.linear_pass`) of `linear_epochs` x train, then the held-out part and test
  scored once. `finetune` [P App. C.2]: one job per rate on the held-out choice (fit part of
  the label subset) and one refit, each `finetune_epochs` x its images. Other protocols
  (transfer, segment, detect) are not priced: the line says so.

A collapsed trial that the collapse monitor ends early (`eval.collapse_stop`) costs less than
this: the dry run cannot know which will collapse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from byol_ray.core.config import Config
from byol_ray.core.methods import method_info

# Images/s of one GPU: (encoder, image size) -> (as shipped, fp32, settings). NVIDIA H200,
# torch 2.11, 2026-11-26 (benchmarks/results/gpu_check_h200_2026-11-26.json, "ours" at the
# preset's batch; docs/results/gpu.md).
MEASURED_ON = "NVIDIA H200 (benchmarks/gpu_check.sh, 2026-11-26)"
STEP_IMAGES_PER_S: dict[tuple[str, int], tuple[float, float, str]] = {
    ("resnet18", 32): (5838.0, 5509.0, "cifar10 preset, bf16"),
    ("resnet50", 224): (1286.0, 729.0, "imagenet preset, bf16 + channels_last"),
}
# ImageNet JPEGs decoded and cropped by 8 CPU loader workers on that H200's host (16 vCPUs):
# benchmarks/results/gpu_decode_check_h200_2026-11-26.json, cpu_pipeline_images_per_s.
DECODE_IMAGES_PER_S = 1865.0
FORWARDS_PER_STEP_IMAGE = 8  # 2 views x (online forward + backward ~ 3 forwards, target 1)
FORWARDS_PER_FINETUNE_IMAGE = 3  # 1 view, forward + backward
# Images of each dataset's (pretraining = train, test) splits; ImageFolder by preset:
# ImageNet-1k's train and val (1,281,167 / 50,000), ImageNet-100's (CMC's 100 classes).
DATASET_IMAGES = {"digits": (1437, 360), "colour_digits": (1437, 360),
                  "mnistm_digits": (1437, 360), "cifar10": (50_000, 10_000),
                  "cifar100": (50_000, 10_000), "stl10": (105_000, 8_000)}
IMAGEFOLDER_IMAGES = {"imagenet": (1_281_167, 50_000), "imagenet-300": (1_281_167, 50_000),
                      "imagenet100": (126_689, 5_000)}
PRICED_PROTOCOLS = ("linear", "finetune")


@dataclass(frozen=True)
class Cost:
    """GPU-hours by kind and the hours one trial takes; `unknown` says why there is no
    estimate, `unpriced` names protocols left out, `lower_bound` whether the figure is one."""

    pretrain_hours: float = 0.0
    monitor_hours: float = 0.0
    protocol_hours: float = 0.0
    longest_trial_hours: float = 0.0
    workers: int = 0  # GPUs the widest trial asks for
    unknown: str = ""
    unpriced: tuple[str, ...] = field(default_factory=tuple)
    lower_bound: bool = False

    @property
    def gpu_hours(self) -> float:
        return self.pretrain_hours + self.monitor_hours + self.protocol_hours

    def scaled(self, factor: float) -> Cost:
        """The cost `factor` times over (e.g. more seeds)."""
        return Cost(self.pretrain_hours * factor, self.monitor_hours * factor,
                    self.protocol_hours * factor, self.longest_trial_hours, self.workers,
                    self.unknown, self.unpriced, self.lower_bound)


def _sizes(cfg: Config) -> tuple[int, int] | None:
    if cfg.data.dataset == "imagefolder":
        return IMAGEFOLDER_IMAGES.get(cfg.preset)
    return DATASET_IMAGES.get(cfg.data.dataset)


def _capped(n: int, cap: int) -> int:
    return min(n, cap) if cap > 0 else n


def trial_cost(cfg: Config, protocols: tuple[str, ...] | list[str] = ()) -> Cost:
    """One trial: pretraining, its monitor evaluations and `protocols`, in GPU-hours; and the
    wall-clock hours on its workers."""
    if cfg.scaling.use_gpu == "false":
        return Cost()
    sizes = _sizes(cfg)
    rate = STEP_IMAGES_PER_S.get((cfg.model.encoder, cfg.data.image_size))
    if sizes is None or rate is None:
        what = (f"the step of {cfg.model.encoder} at {cfg.data.image_size} px was never measured "
                "on a GPU" if rate is None else f"the size of {cfg.data.dataset} at "
                f"{cfg.data.root or '(no root)'} is not known")
        return Cost(unknown=what)
    (train, test), (step_rate, fp32_rate, _) = sizes, rate
    decoded = cfg.data.dataset == "imagefolder"  # JPEGs: the CPU decoder caps evaluation
    forward = fp32_rate * FORWARDS_PER_STEP_IMAGE
    finetune = fp32_rate * FORWARDS_PER_STEP_IMAGE / FORWARDS_PER_FINETUNE_IMAGE
    if decoded:
        forward, finetune = min(forward, DECODE_IMAGES_PER_S), min(finetune, DECODE_IMAGES_PER_S)
    trained = method_info(cfg.method.name).trains and cfg.train.epochs > 0
    pretrain = cfg.train.epochs * train / step_rate if trained else 0.0
    e, d = cfg.eval, cfg.data
    evaluations = (1 + (cfg.train.epochs // e.eval_every if e.eval_every else 0)
                   + (trained and (not e.eval_every or cfg.train.epochs % e.eval_every != 0)))
    embedded = evaluations * (_capped(train, d.max_eval_images) + _capped(test, d.max_eval_images))
    if trained and e.collapse_stop and e.collapse_every:
        embedded += cfg.train.epochs // e.collapse_every * min(e.collapse_images, test)
    protocol_s = 0.0
    p = cfg.protocol
    if "linear" in protocols:  # one pass over train; the held-out part and test scored once
        protocol_s += (p.linear_epochs * train + train * p.val_fraction + test) / forward
    if "finetune" in protocols:
        subset = train * p.fraction
        jobs = 1 if len(p.finetune_lrs) == 1 else len(p.finetune_lrs) + 1
        fit = subset * (1 - p.finetune_holdout) * (jobs - 1) + subset
        protocol_s += p.finetune_epochs * fit / finetune + jobs * test / forward
    hours = Cost(pretrain / 3600, embedded / forward / 3600, protocol_s / 3600,
                 workers=cfg.scaling.num_workers,
                 unpriced=tuple(x for x in protocols if x not in PRICED_PROTOCOLS),
                 lower_bound=bool(embedded or protocol_s))
    return Cost(hours.pretrain_hours, hours.monitor_hours, hours.protocol_hours,
                hours.gpu_hours / hours.workers, hours.workers, "", hours.unpriced,
                hours.lower_bound)


def total_cost(configs: list[Config], protocols: tuple[str, ...] | list[str] = ()) -> Cost:
    """The sum over trials (the first unknown one makes the whole unknown)."""
    costs = [trial_cost(cfg, protocols) for cfg in configs]
    if unknown := next((c.unknown for c in costs if c.unknown), ""):
        return Cost(unknown=unknown)
    return Cost(sum(c.pretrain_hours for c in costs), sum(c.monitor_hours for c in costs),
                sum(c.protocol_hours for c in costs),
                max((c.longest_trial_hours for c in costs), default=0.0),
                max((c.workers for c in costs), default=0),
                unpriced=tuple(sorted({x for c in costs for x in c.unpriced})),
                lower_bound=any(c.lower_bound for c in costs))


def _duration(hours: float) -> str:
    return f"{hours:,.1f} hours" if hours < 48 else f"{hours / 24:,.1f} days"


def _hours(hours: float) -> str:
    return f"{math.ceil(hours):,}" if hours >= 10 else f"{hours:.1f}"


def describe_cost(cost: Cost, trials: int, gpus: int | None, three_seeds: Cost | None = None,
                  per_trial: Cost | None = None) -> str:
    """One line: trials, GPU-hours (pretraining, monitor, protocols; one trial's beside them),
    the 3-seed total and the wall clock on `gpus` GPUs (default: the fewest that run its
    widest trial, one trial at a time)."""
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
    at_least = "at least " if cost.lower_bound else ""
    parts = [f"{_hours(cost.pretrain_hours)} of pretraining",
             f"{_hours(cost.monitor_hours)} of monitor evaluations",
             f"{_hours(cost.protocol_hours)} of protocols"]
    text = (f"{trials} trials, {at_least}{_hours(cost.gpu_hours)} GPU-hours "
            f"({', '.join(parts)})")
    if per_trial is not None:
        text += (f"; a trial {_hours(per_trial.pretrain_hours)} + "
                 f"{_hours(per_trial.monitor_hours)} + {_hours(per_trial.protocol_hours)}")
    if three_seeds is not None:
        text += f"; with 3 seeds {at_least}{_hours(three_seeds.gpu_hours)} GPU-hours"
    text += f"; about {_duration(wall)} on {gpus} {where}"
    if cost.unpriced:
        text += f"; not priced: {', '.join(cost.unpriced)}"
    lower = (" (evaluation speeds derived from the step, capped by the CPU decoder: lower "
             "bounds)" if cost.lower_bound else "")
    return f"{text}; step speed measured on {MEASURED_ON}{lower}"
