"""Typed configuration of one pretraining run: dataclasses, dotted overrides, validation.

Everything a run needs is one `Config`; presets (`byol_ray.core.presets`) fill it in, users adjust
it with dotted overrides (`method.tau_base=0.99`), and `validate` rejects bad values before
any Ray worker starts. This module knows nothing of Ray, MLflow or torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Built from data scikit-learn ships: no data.root, no download (learn/data/digit_variants.py).
BUNDLED_DATASETS = ("digits", "colour_digits", "mnistm_digits")
DATASETS = (*BUNDLED_DATASETS, "cifar10", "cifar100", "stl10", "imagefolder")
DECODERS = ("cpu", "gpu")
ENCODERS = ("small_cnn", "resnet18", "resnet50")
METHODS = ("byol", "simclr", "random_init")
TAU_SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("lars", "sgd", "adamw")
VOC_YEARS = tuple(str(year) for year in range(2007, 2013))  # what torchvision's VOC reads
# The named augmentation variants of the paper's Fig. 3b.
AUGMENT_RECIPES = (
    "baseline",
    "remove_flip",
    "remove_blur",
    "remove_colour",
    "remove_colour_jitter",
    "remove_grey",
    "crop_only",
    "crop_flip",
    "crop_colour",
)


class ConfigError(ValueError):
    """A config value that is not allowed; `field` is its dotted name."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field, self.message = field_name, message


@dataclass
class DataConfig:
    """Which images to learn from and how many per step."""

    dataset: str = "digits"
    root: str = ""  # folder holding the dataset's files (unused for digits)
    download: bool = False  # let torchvision download CIFAR/STL-10 into `root`
    image_size: int = 32  # side of the square crops fed to the encoder
    batch_size: int = 256  # global batch, summed over all Ray workers
    # Rows that share BN statistics and contrastive negatives: Fig. 3a's batch B, the optimiser
    # step keeping batch_size [P §5 "Batch size"]. 0 = the whole global batch.
    group_size: int = 0
    loader_workers: int = 0  # DataLoader processes per Ray worker
    max_eval_images: int = 0  # cap on labelled images used by evaluation (0 = all)
    decoder: str = "cpu"  # ImageFolder JPEG decoding: "cpu" (loader workers) or "gpu" (nvJPEG)


@dataclass
class AugmentConfig:
    """The paper's view distributions T (index 0) and T' (index 1) [P Table 6]."""

    recipe: str = "baseline"  # one of AUGMENT_RECIPES (Fig. 3b removals)
    strength: float = 1.0  # scales the colour-jitter magnitudes
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grey_p: float = 0.2
    blur_p: tuple[float, float] = (1.0, 0.1)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: tuple[float, float] = (0.0, 0.2)


@dataclass
class ModelConfig:
    """Encoder and the MLP heads (projector, predictor)."""

    encoder: str = "resnet50"
    cifar_stem: bool = False  # 3x3 stride-1 first conv, no max-pool (small images)
    width: int = 32  # small_cnn: channels of its first block (D = 4 * width)
    proj_hidden_dim: int = 4096
    proj_dim: int = 256
    pred_hidden_dim: int = 4096
    # The `--run supervised` baseline of the dense protocols: a torchvision ImageNet state_dict
    # on disk ("" = torchvision's file name in torch's hub cache; never downloaded).
    supervised_weights: str = ""


@dataclass
class MethodConfig:
    """The objective and the target rule: BYOL and its Table 5 variants, or SimCLR."""

    name: str = "byol"
    tau_base: float = 0.996  # EMA decay of the target at step 0
    tau_schedule: str = "cosine"  # cosine: ramp tau to 1; constant: keep tau_base
    predictor: bool = True
    target_network: bool = True  # False: the target side is the online network itself
    beta: float = 0.0  # weight of the contrastive term (Table 5b)
    temperature: float = 0.1  # of the contrastive term and of SimCLR's NT-Xent


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (linear warm-up, then cosine decay)."""

    name: str = "lars"
    base_lr: float = 0.2  # lr = base_lr * batch_size / 256
    weight_decay: float = 1.5e-6
    momentum: float = 0.9
    trust_coefficient: float = 1e-3  # LARS eta
    clip_lr: bool = False  # LARS only: LARC clipping, per-parameter rate <= lr (solo-learn)
    exclude_bias_and_bn: bool = True  # no weight decay / LARS adaptation on them
    warmup_epochs: float = 10.0

    def lr(self, batch_size: int) -> float:
        """Peak learning rate for a global batch, by the linear scaling rule."""
        return self.base_lr * batch_size / 256


@dataclass
class TrainConfig:
    """Length of the run, checkpoints and numerics."""

    epochs: int = 1000
    seed: int = 0
    checkpoint_every: int = 10  # epochs between checkpoints (0 = only at the end)
    amp: bool = False  # bfloat16 autocast, on GPU only
    # NHWC convolutions: x1.56 on the imagenet step in bf16 on an H100/H200 at equal loss,
    # nothing on cifar10's host-bound step (README "The GPU check").
    channels_last: bool = False
    # torch.compile the training forward (inductor): x1.12 per paired repetition on cifar10's
    # step on an H200 (one run, spreads up to 49%), so off by default (README "The GPU check").
    compile: bool = False
    accumulate_steps: int = 1  # batches per optimiser step and target update [P Fig. 3a]
    log_every: int = 1  # epochs between console progress lines


@dataclass
class EvalConfig:
    """Online monitoring (kNN, collapse) and the final linear probe."""

    eval_every: int = 10  # epochs between kNN/collapse evaluations (0 = only at the end)
    knn_k: tuple[int, ...] = (20, 200)
    knn_temperature: float = 0.07
    linear_epochs: int = 100
    linear_lr: float = 0.1
    linear_batch_size: int = 256
    collapse_threshold: float = 0.02  # embedding std * sqrt(d) below this = collapsed
    # Few-label kNN (eval/few_label_knn_top1): a memory bank of this many labelled train images
    # per class (0 = off), averaged over `few_label_draws` fixed seeded draws.
    few_label_per_class: int = 0
    few_label_draws: int = 3


@dataclass
class SegmentConfig:
    """`byol-ray eval segment`: an FCN head fine-tuned with the encoder on PASCAL VOC
    segmentation [P App. D.4]. Defaults are the paper's where it gives them."""

    root: str = ""  # folder holding VOCdevkit/VOC<year> (where the VOC tars were extracted)
    year: str = "2012"
    train_split: str = "train"  # ImageSets/Segmentation/<name>.txt (the paper: train_aug)
    eval_split: str = "val"
    iterations: int = 30000  # [P App. D.4]
    batch_size: int = 16  # global [P App. D.4]
    lr: float = 0.01  # the middle of the paper's grid of 5 rates in [1e-3, 1e-1]; not swept
    lr_milestones: tuple[float, ...] = (0.7, 0.9)  # lr x 0.1 at these fractions [P App. D.4]
    weight_decay: float = 1e-4  # [P App. D.4]
    momentum: float = 0.9
    freeze_encoder: bool = False  # the paper fine-tunes the whole FCN
    crop_size: int = 513  # training crop and central inference crop [P App. D.4]
    scale_range: tuple[float, float] = (0.5, 2.0)  # random rescaling [P App. D.4]
    eval_every: int = 0  # iterations between validations (0 = only at the end)


@dataclass
class DetectConfig:
    """`byol-ray eval detect`: Faster R-CNN with FPN on the encoder, on PASCAL VOC detection
    [P §4 "Transfer to other vision tasks", App. D.5]."""

    root: str = ""  # folder holding VOCdevkit/VOC<year>
    year: str = "2007"  # fine-tune on trainval2007, report on test2007 [P §4]
    train_split: str = "trainval"  # ImageSets/Main/<name>.txt
    eval_split: str = "test"
    iterations: int = 1_500_000  # [P App. D.5] (asynchronous SGD there, synchronous DDP here)
    batch_size: int = 8  # global; the paper does not give it (one image per GPU on 8 GPUs)
    lr: float = 1e-3  # [P App. D.5]
    lr_milestones: tuple[float, ...] = (2 / 3, 0.8)  # 1e-4 at 1M, 1e-5 at 1.2M [P App. D.5]
    weight_decay: float = 1e-4  # not given by the paper; torchvision's detection reference
    momentum: float = 0.9
    freeze_encoder: bool = True  # "a frozen representation" [P App. D.5]
    min_size: tuple[int, ...] = (360, 416, 480, 544, 608, 672, 736, 768)  # shorter side, drawn
    max_size: int = 1024  # per image: a 4:3 VOC image's longer side in [480, 1024] [P D.5]
    rois_per_image: int = 512  # proposals the box head trains on (torchvision's default)
    eval_every: int = 0  # iterations between evaluations (0 = only at the end)


@dataclass
class ProtocolConfig:
    """The paper's evaluation protocols on a trained encoder (`byol-ray eval`).

    Defaults are the paper's ImageNet settings; presets scale them.
    """

    # Linear evaluation [P App. C.1]: frozen encoder (BN in eval mode), random resized crop +
    # flip on the training images, SGD Nesterov momentum 0.9, no weight decay, batch 1024,
    # 80 epochs, lr chosen from {0.4, 0.3, 0.2, 0.1, 0.05} on a held-out part of train.
    linear_epochs: int = 80
    linear_batch_size: int = 1024  # global, summed over the workers
    linear_lrs: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1, 0.05)
    val_fraction: float = 0.01  # the held-out part of the train split (per class)
    crop_scale: tuple[float, float] = (0.08, 1.0)  # training crops of linear and finetune
    # Linear: a BatchNorm without affine parameters on the frozen features before the linear
    # layer (MAE's linear probe, He et al. 2021, App. A); still a linear classifier at test
    # time. Off in the paper's protocol; on where features are far from a ResNet-50's scale.
    feature_norm: bool = False
    # Semi-supervised fine-tuning [P §3.3, Table 2; App. C.2]: the whole network on a
    # class-balanced 1% or 10% of the train labels, SGD Nesterov momentum 0.9, batch 1024.
    finetune_epochs: int = 30
    finetune_batch_size: int = 1024  # global; capped at the subset's size
    finetune_lr: float = 0.02
    finetune_weight_decay: float = 0.0
    fraction: float = 0.01  # labelled share of the train split (1% or 10% in the paper)
    subset_seed: int = 0  # seed of the held-out part and of the label subsets


@dataclass
class ScalingConfig:
    """How many Ray Train workers, and on what."""

    num_workers: int = 1
    use_gpu: str = "auto"  # auto: use GPUs when the cluster has them; "true" / "false"
    cpus_per_worker: float = 1.0  # Ray CPUs reserved per worker (and torch threads on CPU)
    max_failures: int = 0  # worker-group restarts from the last checkpoint


@dataclass
class TrackingConfig:
    """Where the MLflow run goes."""

    tracking_uri: str = ""  # "" = MLflow's default (sqlite:///mlflow.db here)
    experiment: str = "byol-ray"
    run_name: str = ""


@dataclass
class Config:
    """One pretraining run, fully resolved."""

    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# --------------------------------------------------------------------------- (de)serialising


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), for JSON/YAML and for Ray workers."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(cfg))


def flatten(cfg: Config) -> dict[str, Any]:
    """Dotted name -> value, e.g. {"method.tau_base": 0.996}: MLflow params and overrides."""
    out: dict[str, Any] = {}
    for key, value in to_dict(cfg).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def from_dict(data: dict[str, Any]) -> Config:
    """Build a Config from a nested dict, checking every key and type."""
    cfg = Config()
    for dotted, value in _dotted_items(data):
        set_value(cfg, dotted, value)
    return cfg


def _dotted_items(data: dict[str, Any], prefix: str = ""):
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _dotted_items(value, name + ".")
        else:
            yield name, value


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    """Set one dotted field, converting and type-checking the value."""
    parts = dotted.split(".")
    target: Any = cfg
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(target)]
        if part not in names:
            where = ".".join(parts[:i]) or "config"
            raise ConfigError(dotted, f"unknown key; {where} has: {', '.join(names)}")
        is_last = i == len(parts) - 1
        if not is_last:
            target = getattr(target, part)
            if not dataclasses.is_dataclass(target):
                raise ConfigError(dotted, f"{'.'.join(parts[: i + 1])} is not a section")
            continue
        if dataclasses.is_dataclass(getattr(target, part)):
            raise ConfigError(dotted, "is a section; set one of its keys instead")
        hint = typing.get_type_hints(type(target))[part]
        setattr(target, part, _coerce(dotted, value, hint))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `key=value` strings (values parsed as YAML: 0.99, true, [0.1, 2.0])."""
    cfg = from_dict(to_dict(cfg))  # a deep copy: callers keep their preset untouched
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "an override must look like section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError, RecursionError) as err:  # ValueError: 2001-02-30
            raise ConfigError(key.strip(), f"cannot parse value {raw!r}: {err}") from None
        set_value(cfg, key.strip(), value)
    return cfg


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a parsed value to the annotated type, or raise a ConfigError."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(name, f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(name, v, args[0]) for v in value)
        if len(value) != len(args):
            raise ConfigError(name, f"expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(name, v, a) for v, a in zip(value, args, strict=True))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(name, "union types are not supported in configs")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(name, f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if hint is float:
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
                return float(value)
        except (ValueError, OverflowError):  # not a number; an integer beyond float's range
            pass
        raise ConfigError(name, f"expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML reads `true`; use_gpu accepts it as text
            return str(value).lower()
        if isinstance(value, int | float):
            return str(value)
        raise ConfigError(name, f"expected text, got {value!r}")
    raise ConfigError(name, f"unsupported type {hint}")


# --------------------------------------------------------------------------- validation


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of: {', '.join(allowed)}")


def _range(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not (low <= value <= high):
        bound = f"[{low}, {high}]" if high != math.inf else f">= {low}"
        raise ConfigError(name, f"{value} is out of range; allowed: {bound}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(name, f"{value}: must be > 0")


def _finite_numbers(cfg: Config) -> None:
    """NaN and infinity pass comparisons that ranges rely on (nan <= x is False, x <= inf is
    True): no config value may be either."""
    for name, value in flatten(cfg).items():
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, float) and not math.isfinite(number):
                raise ConfigError(name, f"{value}: must be a finite number")


def _probability_pair(name: str, pair: tuple[float, float]) -> None:
    for v in pair:
        _range(name, v, 0.0, 1.0)


def validate(cfg: Config, check_paths: bool = True) -> Config:
    """Reject values no run could use, naming the field and what is allowed."""
    d, a, m, me, o, t, e, s = (
        cfg.data, cfg.augment, cfg.model, cfg.method, cfg.optim, cfg.train, cfg.eval, cfg.scaling
    )
    _finite_numbers(cfg)
    _range("scaling.num_workers", s.num_workers, 1, 4096)  # before batch_size % num_workers
    _choice("data.dataset", d.dataset, DATASETS)
    _range("data.image_size", d.image_size, 8, 1024)
    _range("data.batch_size", d.batch_size, 2)
    _range("data.loader_workers", d.loader_workers, 0, 64)
    _range("data.max_eval_images", d.max_eval_images, 0)
    _choice("data.decoder", d.decoder, DECODERS)
    if d.decoder == "gpu" and d.dataset != "imagefolder":
        raise ConfigError("data.decoder", f"gpu decodes ImageFolder JPEGs; {d.dataset!r} is "
                          "held in memory and needs no decoder: use cpu")
    if d.decoder == "gpu" and s.use_gpu == "false":
        raise ConfigError("data.decoder", "gpu needs CUDA workers, but scaling.use_gpu=false; "
                          "use data.decoder=cpu")
    if d.batch_size % s.num_workers:
        raise ConfigError(
            "data.batch_size",
            f"{d.batch_size} is not divisible by scaling.num_workers={s.num_workers}; "
            "the global batch is split evenly over the workers",
        )
    per_worker, g = d.batch_size // s.num_workers, d.group_size
    _range("data.group_size", g, 0, d.batch_size)
    if g and (d.batch_size % g or (per_worker % g if g < per_worker else g % per_worker)):
        raise ConfigError("data.group_size", f"{g}: must divide the {per_worker} rows per worker"
                          f", or be a multiple of {per_worker} (whole workers) that divides "
                          f"data.batch_size={d.batch_size}")
    if d.dataset not in BUNDLED_DATASETS and check_paths:
        if not d.root:
            raise ConfigError("data.root", f"required for dataset {d.dataset!r}: the folder "
                              "holding its files")
        root = Path(d.root).expanduser()
        if not d.download and not root.is_dir():
            raise ConfigError("data.root", f"{d.root!r} is not a folder; point it at the "
                              "dataset or set data.download=true")
        if d.dataset == "imagefolder" and d.download:
            raise ConfigError("data.download", "ImageFolder datasets cannot be downloaded")

    _choice("augment.recipe", a.recipe, AUGMENT_RECIPES)
    _range("augment.strength", a.strength, 0.0, 10.0)
    lo, hi = a.crop_scale
    if not (0 < lo <= hi <= 1):
        raise ConfigError("augment.crop_scale", f"{list(a.crop_scale)}: need 0 < min <= max <= 1")
    if not (0 < a.crop_ratio[0] <= a.crop_ratio[1]):
        raise ConfigError("augment.crop_ratio", f"{list(a.crop_ratio)}: need 0 < min <= max")
    for name in ("flip_p", "jitter_p", "grey_p"):
        _range(f"augment.{name}", getattr(a, name), 0.0, 1.0)
    for name in ("brightness", "contrast", "saturation"):
        _range(f"augment.{name}", getattr(a, name), 0.0, 10.0)
    _range("augment.hue", a.hue, 0.0, 0.5)
    _probability_pair("augment.blur_p", a.blur_p)
    _probability_pair("augment.solarize_p", a.solarize_p)
    if not (0 < a.blur_sigma[0] <= a.blur_sigma[1]):
        raise ConfigError("augment.blur_sigma", f"{list(a.blur_sigma)}: need 0 < min <= max")

    _choice("model.encoder", m.encoder, ENCODERS)
    for name in ("width", "proj_hidden_dim", "proj_dim", "pred_hidden_dim"):
        _range(f"model.{name}", getattr(m, name), 1)

    _choice("method.name", me.name, METHODS)
    _range("method.tau_base", me.tau_base, 0.0, 1.0)
    _choice("method.tau_schedule", me.tau_schedule, TAU_SCHEDULES)
    _range("method.beta", me.beta, 0.0)
    _positive("method.temperature", me.temperature)

    _choice("optim.name", o.name, OPTIMIZERS)
    _range("optim.base_lr", o.base_lr, 0.0)
    _range("optim.weight_decay", o.weight_decay, 0.0)
    _range("optim.momentum", o.momentum, 0.0, 1.0)
    _range("optim.trust_coefficient", o.trust_coefficient, 0.0)
    if o.clip_lr and o.name != "lars":
        raise ConfigError("optim.clip_lr", f"clips LARS's trust ratio; optim.name is {o.name!r}")
    _range("optim.warmup_epochs", o.warmup_epochs, 0.0)

    _range("train.epochs", t.epochs, 0)
    _range("train.checkpoint_every", t.checkpoint_every, 0)
    _range("train.log_every", t.log_every, 1)
    _range("train.accumulate_steps", t.accumulate_steps, 1, 1024)

    _range("eval.eval_every", e.eval_every, 0)
    if not e.knn_k or any(k < 1 for k in e.knn_k):
        raise ConfigError("eval.knn_k", f"{list(e.knn_k)}: need one or more k >= 1")
    _positive("eval.knn_temperature", e.knn_temperature)
    _range("eval.linear_epochs", e.linear_epochs, 0)
    _range("eval.linear_lr", e.linear_lr, 0.0)
    _range("eval.linear_batch_size", e.linear_batch_size, 1)
    _range("eval.collapse_threshold", e.collapse_threshold, 0.0)
    _range("eval.few_label_per_class", e.few_label_per_class, 0)
    _range("eval.few_label_draws", e.few_label_draws, 1)

    _validate_transfer("segment", cfg.segment)
    _validate_transfer("detect", cfg.detect)
    _validate_protocol(cfg.protocol, s.num_workers)

    _choice("scaling.use_gpu", s.use_gpu, ("auto", "true", "false"))
    _range("scaling.cpus_per_worker", s.cpus_per_worker, 0)
    _range("scaling.max_failures", s.max_failures, -1)
    return cfg


def _validate_transfer(name: str, t: SegmentConfig | DetectConfig) -> None:
    """The settings of a dense protocol (paths are checked when the protocol starts)."""
    _choice(f"{name}.year", t.year, VOC_YEARS)
    for split in ("train_split", "eval_split"):
        allowed = ("train", "trainval", "val") + (("test",) if t.year == "2007" else ())
        _choice(f"{name}.{split}", getattr(t, split), allowed)
    _range(f"{name}.iterations", t.iterations, 1)
    _range(f"{name}.batch_size", t.batch_size, 1)
    _range(f"{name}.lr", t.lr, 0.0)
    if any(not 0 < m < 1 for m in t.lr_milestones):
        raise ConfigError(f"{name}.lr_milestones", f"{list(t.lr_milestones)}: fractions of "
                          "the iterations, each in (0, 1)")
    _range(f"{name}.weight_decay", t.weight_decay, 0.0)
    _range(f"{name}.momentum", t.momentum, 0.0, 1.0)
    _range(f"{name}.eval_every", t.eval_every, 0)
    if isinstance(t, SegmentConfig):
        _range(f"{name}.crop_size", t.crop_size, 16, 4096)
        if not 0 < t.scale_range[0] <= t.scale_range[1]:
            raise ConfigError(f"{name}.scale_range", f"{list(t.scale_range)}: need "
                              "0 < min <= max")
    else:
        if not t.min_size or any(size < 16 for size in t.min_size):
            raise ConfigError(f"{name}.min_size", f"{list(t.min_size)}: one or more sides "
                              ">= 16 pixels")
        _range(f"{name}.max_size", t.max_size, max(t.min_size))
        _range(f"{name}.rois_per_image", t.rois_per_image, 1)


def _validate_protocol(p: ProtocolConfig, num_workers: int) -> None:
    """The evaluation protocols' settings (`protocol.*`)."""
    for name in ("linear_epochs", "finetune_epochs"):
        _range(f"protocol.{name}", getattr(p, name), 1)
    for name in ("linear_batch_size", "finetune_batch_size"):
        _range(f"protocol.{name}", getattr(p, name), 1)
        if getattr(p, name) % num_workers:
            raise ConfigError(f"protocol.{name}", f"{getattr(p, name)} is not divisible by "
                              f"scaling.num_workers={num_workers}")
    if not p.linear_lrs or any(lr <= 0 for lr in p.linear_lrs):
        raise ConfigError("protocol.linear_lrs", f"{list(p.linear_lrs)}: need one or more "
                          "learning rates > 0")
    _range("protocol.val_fraction", p.val_fraction, 1e-6, 0.5)
    lo, hi = p.crop_scale
    if not (0 < lo <= hi <= 1):
        raise ConfigError("protocol.crop_scale", f"{list(p.crop_scale)}: need 0 < min <= max <= 1")
    _range("protocol.finetune_lr", p.finetune_lr, 0.0)
    _range("protocol.finetune_weight_decay", p.finetune_weight_decay, 0.0)
    _range("protocol.fraction", p.fraction, 1e-6, 1.0)
    _range("protocol.subset_seed", p.subset_seed, 0)
