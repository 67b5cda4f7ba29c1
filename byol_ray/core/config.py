"""Typed configuration of one pretraining run: pydantic sections, dotted overrides, validation.

Everything a run needs is one `Config`; presets (`byol_ray.core.presets`) fill it in, users adjust
it with dotted overrides (`method.tau_base=0.99`). Pydantic checks keys and types as a config is
built (strictly: a bool is no number, 2.5 no integer); `validate` checks each field's `Allowed`
values and the rules across fields before any Ray worker starts. No Ray, MLflow or torch here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from byol_ray.core.masking import mask
from byol_ray.core.methods import is_outside, method_names

# Built from data scikit-learn ships: no data.root, no download (learn/data/digit_variants.py).
BUNDLED_DATASETS = ("digits", "colour_digits", "mnistm_digits")
DATASETS = (*BUNDLED_DATASETS, "cifar10", "cifar100", "stl10", "imagefolder")
# Datasets whose pretraining images are their labelled train split, held in memory: the ones a
# validation part can be held out of (`data.eval_on=validation`).
VALIDATION_DATASETS = (*BUNDLED_DATASETS, "cifar10", "cifar100")
EVAL_ON = ("test", "validation")
VALIDATION_FRACTION, VALIDATION_SEED = 0.2, 1  # data.eval_on=validation: 20 % of train, seed 1


def validation_size(train_images: int) -> int:
    """How many of `train_images` data.eval_on=validation holds out (a fifth, rounded up): one
    count for the split that loads them and for the dry run's step count that cannot."""
    return math.ceil(VALIDATION_FRACTION * train_images)
DECODERS = ("cpu", "gpu")
ENCODERS = ("small_cnn", "resnet18", "resnet50")
TAU_SCHEDULES = ("cosine", "constant")
TARGET_INITS = ("independent", "copy")
OPTIMIZERS = ("lars", "sgd", "adamw")
VOC_YEARS = tuple(str(year) for year in range(2007, 2013))  # what torchvision's VOC reads
VOC_SPLITS = ("train", "trainval", "val", "test")  # test: VOC2007 only
# The named augmentation variants of the paper's Fig. 3b.
AUGMENT_RECIPES = ("baseline", "remove_flip", "remove_blur", "remove_colour",
                   "remove_colour_jitter", "remove_grey", "crop_only", "crop_flip", "crop_colour")
COLOUR_OPS = ("reference", "torchvision")  # DeepMind's augmentations.py [P Table 6]; ColorJitter
# Does BYOL need batch statistics? (learn/models/norms.py; Richemond et al. 2020, arXiv 2010.10241)
HEAD_NORMS = ("batch", "layer", "group", "none")
ENCODER_NORMS = ("batch", "group_ws", "none", "affine_init")


class ConfigError(ValueError):
    """A config value that is not allowed; `field` is its dotted name."""

    def __init__(self, field_name: str, message: str):
        message = mask(message)  # a URI in the message may carry a password or token
        super().__init__(f"{field_name}: {message}")
        self.field, self.message = field_name, message


# --------------------------------------------------------------------------- value types


def _integer(value: Any) -> int:
    if isinstance(value, float) and value.is_integer() or type(value) is int:
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _number(value: Any) -> float:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError, OverflowError):  # an int beyond float's range
            return float(value)  # text too: YAML 1.1 reads 1e-4 (no dot) as text
    raise ValueError(f"expected a number, got {value!r}")


def _truth(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r}")


def _text(value: Any) -> str:
    if isinstance(value, str | int | float):  # YAML reads `true`; use_gpu takes it as text
        return str(value).lower() if isinstance(value, bool) else str(value)
    raise ValueError(f"expected text, got {value!r}")


def _listed(length: int = 0) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list, got {value!r}")
        if length and len(value) != length:
            raise ValueError(f"expected {length} values, got {len(value)}")
        return value

    return check


# What YAML overrides and stored configs may hold; pydantic's own lax rules would also take
# "yes" for true, a set for a list or true for 1.
Int = Annotated[int, BeforeValidator(_integer)]
Float = Annotated[float, BeforeValidator(_number)]
Bool = Annotated[bool, BeforeValidator(_truth)]
Text = Annotated[str, BeforeValidator(_text)]
Pair = Annotated[tuple[Float, Float], BeforeValidator(_listed(2))]
Ints = Annotated[tuple[Int, ...], BeforeValidator(_listed())]
Floats = Annotated[tuple[Float, ...], BeforeValidator(_listed())]


@dataclass(frozen=True)
class Allowed:
    """The values a field allows: `validate` checks them, `--explain` prints `text`; as
    pydantic's json_schema_extra it also lands in the JSON schema."""

    text: str
    ok: Callable[[Any], bool]
    refusal: str = "{value} is out of range; allowed: {text}"

    def __call__(self, schema: dict[str, Any]) -> None:
        schema["allowed"] = self.text


def one_of(*names: str) -> Allowed:
    """One of a fixed set of names."""
    return Allowed(", ".join(names), lambda v: v in names, "{value!r} is not one of: {text}")


def between(low: float, high: float = math.inf) -> Allowed:
    """A number in [low, high]."""
    text = f"[{low}, {high}]" if high != math.inf else f">= {low}"
    return Allowed(text, lambda v: low <= v <= high)


def need(text: str, ok: Callable[[Any], bool]) -> Allowed:
    """A rule on a whole list (pairs, non-empty lists)."""
    return Allowed(text, ok, "{value}: need {text}")


POSITIVE = Allowed("> 0", lambda v: v > 0, "{value}: must be {text}")
PROBABILITY = between(0.0, 1.0)
COUNT, AT_LEAST_1, NON_NEGATIVE, JITTER = between(0), between(1), between(0.0), between(0.0, 10.0)
PROBABILITIES = need("each in [0.0, 1.0]", lambda v: all(0 <= x <= 1 for x in v))
FRACTIONS = need("0 < min <= max <= 1", lambda v: 0 < v[0] <= v[1] <= 1)
INTERVAL = need("0 < min <= max", lambda v: 0 < v[0] <= v[1])
MILESTONES = need("fractions of the iterations, each in (0, 1)",
                  lambda v: all(0 < x < 1 for x in v))


def _field(default: Any, description: str, allowed: Allowed | None = None) -> Any:
    return Field(default, description=description, json_schema_extra=allowed)


def _section(cls: type[BaseModel]) -> Any:
    return Field(default_factory=cls, description=" ".join((cls.__doc__ or "").split()))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- sections


class DataConfig(_Section):
    """Which images to learn from and how many per step."""

    dataset: Text = _field("digits", "the bundled scikit-learn digit sets (no download), a "
                           "torchvision dataset, or an ImageFolder tree", one_of(*DATASETS))
    root: Text = _field("", "folder holding the dataset's files (unused for the bundled digits)")
    download: Bool = _field(False, "let torchvision download CIFAR/STL-10 into `root`")
    image_size: Int = _field(32, "side of the square crops fed to the encoder", between(8, 1024))
    batch_size: Int = _field(256, "global batch, summed over all Ray workers; splits evenly over "
                             "scaling.num_workers (4096 in the paper [P §3.3])", between(2))
    group_size: Int = _field(0, "rows that share BN statistics and contrastive negatives: Fig. "
                             "3a's batch B inside the optimiser batch [P §5 'Batch size']; "
                             "0 = the whole global batch", COUNT)
    loader_workers: Int = _field(0, "DataLoader processes per Ray worker", between(0, 64))
    max_eval_images: Int = _field(0, "cap on labelled images used by evaluation (0 = all)", COUNT)
    decoder: Text = _field("cpu", "ImageFolder JPEG decoding: cpu (loader workers) or gpu "
                           "(nvJPEG; imagefolder only, needs CUDA workers)", one_of(*DECODERS))
    eval_on: Text = _field("test", "what evaluation scores: the test split, or a validation "
                           "part held out of train (stratified 20 %, seed 1) that pretraining "
                           "and the labelled splits then leave out: choose settings on it, "
                           "never on test", one_of(*EVAL_ON))


class AugmentConfig(_Section):
    """The paper's view distributions T (index 0) and T' (index 1) [P Table 6]."""

    recipe: Text = _field("baseline", "the paper's view distributions or one of its removals "
                          "[P Fig. 3b]", one_of(*AUGMENT_RECIPES))
    strength: Float = _field(1.0, "scales the colour-jitter magnitudes", JITTER)
    colour_ops: Text = _field("reference", "how the jitter's four ops compute: as the paper's "
                              "reference (additive brightness, HSV saturation and hue) [P Table "
                              "6], or as torchvision's ColorJitter", one_of(*COLOUR_OPS))
    crop_scale: Pair = _field((0.08, 1.0), "area range of the random resized crop, as a "
                              "fraction of the image [P Table 6]", FRACTIONS)
    crop_ratio: Pair = _field((3 / 4, 4 / 3), "aspect-ratio range of the random resized crop, "
                              "drawn log-uniformly [P Table 6]", INTERVAL)
    flip_p: Float = _field(0.5, "probability of a horizontal flip [P Table 6]", PROBABILITY)
    jitter_p: Float = _field(0.8, "probability of the colour jitter [P Table 6]", PROBABILITY)
    brightness: Float = _field(0.4, "colour jitter: brightness magnitude [P Table 6]", JITTER)
    contrast: Float = _field(0.4, "colour jitter: contrast magnitude [P Table 6]", JITTER)
    saturation: Float = _field(0.2, "colour jitter: saturation magnitude [P Table 6]", JITTER)
    hue: Float = _field(0.1, "colour jitter: hue shift magnitude [P Table 6]", between(0.0, 0.5))
    grey_p: Float = _field(0.2, "probability of greyscale conversion [P Table 6]", PROBABILITY)
    blur_p: Pair = _field((1.0, 0.1), "probability of Gaussian blur in T and in T' [P Table 6]",
                          PROBABILITIES)
    blur_sigma: Pair = _field((0.1, 2.0), "range of the blur's sigma, drawn uniformly "
                              "[P Table 6]", INTERVAL)
    solarize_p: Pair = _field((0.0, 0.2), "probability of solarisation in T and in T' "
                              "[P Table 6]", PROBABILITIES)


class ModelConfig(_Section):
    """Encoder and the MLP heads (projector, predictor)."""

    encoder: Text = _field("resnet50", "the encoder f: a small CNN for CPUs or a ResNet "
                           "(ResNet-50 in the paper [P §3.3])", one_of(*ENCODERS))
    cifar_stem: Bool = _field(False, "3x3 stride-1 first conv, no max-pool (small images)")
    width: Int = _field(32, "small_cnn: channels of its first block (D = 4 * width)", AT_LEAST_1)
    proj_hidden_dim: Int = _field(4096, "hidden width of the projector g [P §3.3]", AT_LEAST_1)
    proj_dim: Int = _field(256, "output width of projector g and predictor q [P §3.3]", AT_LEAST_1)
    pred_hidden_dim: Int = _field(4096, "hidden width of the predictor q [P §3.3]", AT_LEAST_1)
    encoder_norm: Text = _field("batch", "the encoder's normalisation: batch norm [P §3.3], "
                                "group norm + weight standardisation (no batch statistics; "
                                "Richemond et al. 2020, arXiv 2010.10241), none (BN removed), "
                                "or affine_init (BN replaced by a per-channel affine set from "
                                "its first batch: Richemond et al.'s BN-free network)",
                                one_of(*ENCODER_NORMS))
    projector_norm: Text = _field("batch", "normalisation after the projector's hidden layer: "
                                  "batch in the paper [P §3.3]; none: Fetterman & Albrecht "
                                  "2020's BYOL without BN in its heads", one_of(*HEAD_NORMS))
    predictor_norm: Text = _field("batch", "normalisation after the predictor's hidden layer "
                                  "(as projector_norm)", one_of(*HEAD_NORMS))
    supervised_weights: Text = _field("", "the `--run supervised` baseline of the dense "
                                      "protocols: a torchvision ImageNet state_dict on disk (\"\" "
                                      "= torchvision's file name in torch's hub cache; never "
                                      "downloaded)")


class MethodConfig(_Section):
    """The objective and the target rule: BYOL and its Table 5 variants, or SimCLR."""

    name: Text = _field("byol", "the objective: BYOL, SimCLR's NT-Xent, random_init (an "
                        "untrained encoder, no pretraining), or your own Method subclass as "
                        "package.module:Class (docs/using/own-method.md)", Allowed(
                            f"{', '.join(method_names())}, package.module:Class",
                            lambda v: v in method_names() or is_outside(v),
                            "{value!r} is not one of: {text}"))
    tau_base: Float = _field(0.996, "target EMA decay at step 0 [P §3, Table 5a]", PROBABILITY)
    tau_schedule: Text = _field("cosine", "cosine: ramp tau from tau_base to 1 [P §3]; "
                                "constant: keep tau_base", one_of(*TAU_SCHEDULES))
    predictor: Bool = _field(True, "the predictor q on the online side [P Table 5b]")
    target_network: Bool = _field(True, "False: the target side is the online network itself "
                                  "[P Table 5b]")
    target_init: Text = _field("independent", "the target's initial weights: independent = a "
                               "second random draw of encoder + projector, as DeepMind's "
                               "reference (byol_experiment.py _make_initial_state: rng_online, "
                               "rng_target; tau = 1 is then a random network of its own "
                               "[P Table 5a]); copy = a copy of the online network",
                               one_of(*TARGET_INITS))
    beta: Float = _field(0.0, "weight of the contrastive term [P Table 5b]", NON_NEGATIVE)
    temperature: Float = _field(0.1, "of the contrastive term and of SimCLR's NT-Xent "
                                "[P Table 5b]", POSITIVE)


class OptimConfig(_Section):
    """Optimiser and learning-rate schedule (linear warm-up, then cosine decay)."""

    name: Text = _field("lars", "LARS as in the paper [P §3.3], or SGD, AdamW", one_of(*OPTIMIZERS))
    base_lr: Float = _field(0.2, "lr = base_lr * batch_size / 256 [P §3.3]", NON_NEGATIVE)
    weight_decay: Float = _field(1.5e-6, "weight decay [P §3.3]", NON_NEGATIVE)
    momentum: Float = _field(0.9, "momentum of LARS / SGD [P §3.3]", between(0.0, 1.0))
    trust_coefficient: Float = _field(1e-3, "LARS eta [P §3.3]", NON_NEGATIVE)
    clip_lr: Bool = _field(False, "LARS only: LARC clipping, per-parameter rate <= lr "
                           "(solo-learn)")
    exclude_bias_and_bn: Bool = _field(True, "no weight decay / LARS adaptation on biases and "
                                       "BN parameters [P §3.3]")
    warmup_epochs: Float = _field(10.0, "epochs of linear lr warm-up before the cosine decay "
                                  "[P §3.3]", NON_NEGATIVE)

    def lr(self, batch_size: int) -> float:
        """Peak learning rate for a global batch, by the linear scaling rule."""
        return self.base_lr * batch_size / 256


class TrainConfig(_Section):
    """Length of the run, checkpoints and numerics."""

    epochs: Int = _field(1000, "pretraining epochs (1000: the main run [P §3.3]; 300: the "
                         "ablations [P §5])", COUNT)
    seed: Int = _field(0, "seed of the weights, the views and the data order")
    checkpoint_every: Int = _field(10, "epochs between checkpoints (0 = only at the end)", COUNT)
    amp: Bool = _field(False, "bfloat16 autocast, on GPU only")
    channels_last: Bool = _field(False, "NHWC convolutions: x1.56 on the imagenet step in bf16 "
                                 "on an H100/H200 at equal loss, nothing on cifar10's host-bound "
                                 "step (docs/results/gpu.md)")
    compile: Bool = _field(False, "torch.compile the training forward (inductor): x1.12 per "
                           "paired repetition on cifar10's step on an H200 (one run, spreads up "
                           "to 49%), so off by default (docs/results/gpu.md)")
    accumulate_steps: Int = _field(1, "batches per optimiser step and target update "
                                   "[P Fig. 3a, §5]", between(1, 1024))
    log_every: Int = _field(1, "epochs between console progress lines", AT_LEAST_1)


class EvalConfig(_Section):
    """Online monitoring (kNN, collapse) and the final linear probe."""

    eval_every: Int = _field(10, "epochs between kNN/collapse checks (0 = only at the end)", COUNT)
    knn_k: Ints = _field((20, 200), "neighbours of the kNN monitor, one accuracy per k",
                         need("one or more k >= 1", lambda v: bool(v) and min(v) >= 1))
    knn_temperature: Float = _field(0.07, "softmax temperature of the kNN vote", POSITIVE)
    linear_epochs: Int = _field(100, "epochs of the end-of-run linear probe", COUNT)
    linear_lr: Float = _field(0.1, "learning rate of the end-of-run linear probe", NON_NEGATIVE)
    linear_batch_size: Int = _field(256, "batch of the end-of-run linear probe", AT_LEAST_1)
    collapse_threshold: Float = _field(0.02, "embedding std * sqrt(d) below this = collapsed",
                                       NON_NEGATIVE)
    # Ending a collapsed run (byol_ray.learn.collapse_stop). On cpu-mini's sweep trials the
    # monitor read (benchmarks/results/collapse_sequences_cpu-mini_2026-12-07.json): BYOL and
    # tau = 0 >= 0.049 (the untrained encoder) and >= 0.12 after epoch 1; (no predictor,
    # target, beta = 0), not collapsed, 0.026 to 0.074; (predictor, no target, beta = 0),
    # collapsing, 0.019 at epoch 4, <= 0.013 from epoch 5 and <= 0.004 from epoch 8.
    collapse_stop: Bool = _field(True, "end the run once the monitor read a collapse at "
                                 "collapse_patience consecutive readings (collapsed, a run "
                                 "stayed so: cpu-mini's read <= 0.004 from epoch 8 to 20); its "
                                 "protocols still run on its final weights, and it counts as "
                                 "collapsed")
    collapse_patience: Int = _field(3, "consecutive collapsed readings that end the run: the "
                                    "lowest healthy reading (0.026) is 1.3x the threshold, so "
                                    "one low reading is not yet a collapse; a collapsing cpu-mini "
                                    "cell stops at epoch 6 of 20", AT_LEAST_1)
    collapse_every: Int = _field(1, "epochs between collapse readings besides the evaluations "
                                 "(0: at evaluations only): embedding std of the online "
                                 "projections of collapse_images test images", COUNT)
    collapse_images: Int = _field(512, "test images a collapse reading projects (the std over "
                                  "512 has a relative error of about 3%)", AT_LEAST_1)
    few_label_per_class: Int = _field(0, "few-label kNN (eval/few_label_knn_top1): a memory "
                                      "bank of this many labelled train images per class "
                                      "(0 = off)", COUNT)
    few_label_draws: Int = _field(3, "few-label kNN: averaged over this many fixed seeded draws",
                                  AT_LEAST_1)


class SegmentConfig(_Section):
    """`byol-ray eval segment`: an FCN head fine-tuned with the encoder on PASCAL VOC
    segmentation [P App. D.4]. Defaults are the paper's where it gives them."""

    root: Text = _field("", "folder holding VOCdevkit/VOC<year> (where the VOC tars were "
                        "extracted)")
    year: Text = _field("2012", "the VOC release", one_of(*VOC_YEARS))
    train_split: Text = _field("train", "ImageSets/Segmentation/<name>.txt (the paper: "
                               "train_aug)", one_of(*VOC_SPLITS))
    eval_split: Text = _field("val", "the split to report on", one_of(*VOC_SPLITS))
    iterations: Int = _field(30000, "optimiser steps [P App. D.4]", AT_LEAST_1)
    batch_size: Int = _field(16, "global batch [P App. D.4]", AT_LEAST_1)
    lr: Float = _field(0.01, "the middle of the paper's grid of 5 rates in [1e-3, 1e-1]; not "
                       "swept", NON_NEGATIVE)
    lr_milestones: Floats = _field((0.7, 0.9), "lr x 0.1 at these fractions of the iterations "
                                   "[P App. D.4]", MILESTONES)
    weight_decay: Float = _field(1e-4, "weight decay [P App. D.4]", NON_NEGATIVE)
    momentum: Float = _field(0.9, "SGD momentum", between(0.0, 1.0))
    freeze_encoder: Bool = _field(False, "the paper fine-tunes the whole FCN")
    crop_size: Int = _field(513, "training crop and central inference crop [P App. D.4]",
                            between(16, 4096))
    scale_range: Pair = _field((0.5, 2.0), "random rescaling [P App. D.4]", INTERVAL)
    eval_every: Int = _field(0, "iterations between validations (0 = only at the end)", COUNT)


class DetectConfig(_Section):
    """`byol-ray eval detect`: Faster R-CNN with FPN on the encoder, on PASCAL VOC detection
    [P §4 "Transfer to other vision tasks", App. D.5]."""

    root: Text = _field("", "folder holding VOCdevkit/VOC<year>")
    year: Text = _field("2007", "fine-tune on trainval2007, report on test2007 [P §4]",
                        one_of(*VOC_YEARS))
    train_split: Text = _field("trainval", "ImageSets/Main/<name>.txt (test: VOC2007 only)",
                               one_of(*VOC_SPLITS))
    eval_split: Text = _field("test", "the split to report on (test: VOC2007 only)",
                              one_of(*VOC_SPLITS))
    iterations: Int = _field(1_500_000, "[P App. D.5] (asynchronous SGD there, synchronous DDP "
                             "here)", AT_LEAST_1)
    batch_size: Int = _field(8, "global; the paper does not give it (one image per GPU on 8 "
                             "GPUs)", AT_LEAST_1)
    lr: Float = _field(1e-3, "learning rate [P App. D.5]", NON_NEGATIVE)
    lr_milestones: Floats = _field((2 / 3, 0.8), "lr x 0.1 at these fractions: 1e-4 at 1M, 1e-5 "
                                   "at 1.2M [P App. D.5]", MILESTONES)
    weight_decay: Float = _field(1e-4, "not given by the paper; torchvision's detection "
                                 "reference", NON_NEGATIVE)
    momentum: Float = _field(0.9, "SGD momentum", between(0.0, 1.0))
    freeze_encoder: Bool = _field(True, "\"a frozen representation\" [P App. D.5]")
    min_size: Ints = _field((360, 416, 480, 544, 608, 672, 736, 768), "shorter side, drawn per "
                            "image", need("one or more sides >= 16 pixels",
                                          lambda v: bool(v) and min(v) >= 16))
    max_size: Int = _field(1024, "longer side at most (>= the largest min_size): a 4:3 VOC "
                           "image's in [480, 1024] [P App. D.5]", between(16))
    rois_per_image: Int = _field(512, "proposals the box head trains on (torchvision's default)",
                                 AT_LEAST_1)
    eval_every: Int = _field(0, "iterations between evaluations (0 = only at the end)", COUNT)


class ProtocolConfig(_Section):
    """The paper's evaluation protocols on a trained encoder (`byol-ray eval`).

    Defaults are the paper's ImageNet settings; presets scale them.
    """

    linear_epochs: Int = _field(80, "linear evaluation: a frozen encoder (BN in eval mode), "
                                "SGD Nesterov momentum 0.9, no weight decay [P App. C.1]",
                                AT_LEAST_1)
    linear_batch_size: Int = _field(1024, "global batch [P App. C.1]", AT_LEAST_1)
    linear_lrs: Floats = _field((0.4, 0.3, 0.2, 0.1, 0.05), "the linear layer's lr is chosen "
                                "from these on a held-out part of train [P App. C.1]",
                                need("one or more learning rates > 0",
                                     lambda v: bool(v) and min(v) > 0))
    val_fraction: Float = _field(0.01, "the held-out part of the train split (per class)",
                                 between(1e-6, 0.5))
    crop_scale: Pair = _field((0.08, 1.0), "random resized crops (and flips) of linear and "
                              "finetune training [P App. C.1]", FRACTIONS)
    feature_norm: Bool = _field(False, "linear: a BatchNorm without affine parameters on the "
                                "frozen features (MAE's linear probe, He et al. 2021, App. A); "
                                "off in the paper's protocol, on where features are far from a "
                                "ResNet-50's scale")
    finetune_epochs: Int = _field(30, "semi-supervised fine-tuning of the whole network on a "
                                  "class-balanced label subset, SGD Nesterov momentum 0.9 "
                                  "[P §3.3, Table 2; App. C.2]", AT_LEAST_1)
    finetune_batch_size: Int = _field(1024, "global; capped at the subset's size [P App. C.2]",
                                      AT_LEAST_1)
    finetune_lrs: Floats = _field((0.01, 0.02, 0.05, 0.1, 0.005), "fine-tuning's lr is chosen "
                                  "from these on a held-out part of the label subset, then "
                                  "refit on all of it; one rate: no choice, no held-out part "
                                  "[P App. C.2]", need("one or more learning rates > 0",
                                                       lambda v: bool(v) and min(v) > 0))
    finetune_holdout: Float = _field(0.2, "the held-out part of the label subset (per class, "
                                     "at least one image) that scores each of finetune_lrs; "
                                     "its size is not given by the paper", between(1e-6, 0.5))
    finetune_weight_decay: Float = _field(0.0, "weight decay of fine-tuning", NON_NEGATIVE)
    fraction: Float = _field(0.01, "labelled share of the train split (1% or 10% in the paper "
                             "[P Table 2])", between(1e-6, 1.0))
    subset_seed: Int = _field(0, "seed of the held-out part and of the label subsets", COUNT)

    @model_validator(mode="before")
    @classmethod
    def _one_rate(cls, data: Any) -> Any:
        """Configs saved before the lr grid (older runs' weights) name one rate, finetune_lr."""
        if isinstance(data, dict) and "finetune_lr" in data:
            data = {**data, "finetune_lrs": [data["finetune_lr"]]}
            del data["finetune_lr"]
        return data


class ScalingConfig(_Section):
    """How many Ray Train workers, and on what."""

    num_workers: Int = _field(1, "Ray Train workers (one process each)", between(1, 4096))
    use_gpu: Text = _field("auto", "auto: use GPUs when the cluster has them; true / false",
                           one_of("auto", "true", "false"))
    cpus_per_worker: Float = _field(1.0, "Ray CPUs reserved per worker (and torch threads on "
                                    "CPU)", COUNT)
    max_failures: Int = _field(0, "worker-group restarts from the last checkpoint (-1 = no "
                               "limit)", between(-1))


class TrackingConfig(_Section):
    """Where the MLflow run goes."""

    tracking_uri: Text = _field("", "\"\" = MLflow's default (sqlite:///mlflow.db here)")
    experiment: Text = _field("byol-ray", "MLflow experiment of the run")
    run_name: Text = _field("", "MLflow run name (\"\" = one MLflow makes up)")


class Config(_Section):
    """One pretraining run, fully resolved."""

    preset: Text = _field("custom", "the preset this config started from")
    data: DataConfig = _section(DataConfig)
    augment: AugmentConfig = _section(AugmentConfig)
    model: ModelConfig = _section(ModelConfig)
    method: MethodConfig = _section(MethodConfig)
    optim: OptimConfig = _section(OptimConfig)
    train: TrainConfig = _section(TrainConfig)
    eval: EvalConfig = _section(EvalConfig)
    segment: SegmentConfig = _section(SegmentConfig)
    detect: DetectConfig = _section(DetectConfig)
    protocol: ProtocolConfig = _section(ProtocolConfig)
    scaling: ScalingConfig = _section(ScalingConfig)
    tracking: TrackingConfig = _section(TrackingConfig)


# --------------------------------------------------------------------------- (de)serialising


def leaves(cfg: Config) -> Iterator[tuple[str, Any, FieldInfo]]:
    """Every field below the sections: dotted name, value, pydantic field (description, rule)."""
    for key, info in Config.model_fields.items():
        value = getattr(cfg, key)
        if isinstance(value, BaseModel):
            for name, leaf in type(value).model_fields.items():
                yield f"{key}.{name}", getattr(value, name), leaf
        else:
            yield key, value, info


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), for JSON/YAML and for Ray workers."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg.model_dump())


def flatten(cfg: Config) -> dict[str, Any]:
    """Dotted name -> value, e.g. {"method.tau_base": 0.996}: MLflow params and overrides."""
    return {name: list(v) if isinstance(v, tuple) else v for name, v, _ in leaves(cfg)}


def from_dict(data: dict[str, Any]) -> Config:
    """Build a Config from a nested dict, checking every key and type."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        path = [str(part) for part in first["loc"] if isinstance(part, str)]
        name = ".".join(path) or "config"
        if first["type"] == "extra_forbidden":
            section: Any = Config.model_fields[path[0]].annotation if len(path) > 1 else Config
            where = ".".join(path[:-1]) or "config"
            message = f"unknown key; {where} has: {', '.join(section.model_fields)}"
        elif first["type"] == "model_type":
            message = f"is a section: expected its keys, got {first['input']!r}"
        else:
            message = str(first.get("ctx", {}).get("error") or first["msg"])
        raise ConfigError(name, message) from None


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `key=value` strings (values parsed as YAML: 0.99, true, [0.1, 2.0])."""
    data = to_dict(cfg)
    cfg = from_dict(data)  # a copy: callers keep their preset untouched
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(item, "an override must look like section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError, RecursionError) as err:  # ValueError: 2001-02-30
            raise ConfigError(key, f"cannot parse value {raw!r}: {err}") from None
        *path, leaf = key.split(".")
        node = data
        for depth, part in enumerate(path):
            node = node.setdefault(part, {})  # an unknown section: pydantic names the known
            if not isinstance(node, dict):
                raise ConfigError(key, f"{'.'.join(path[: depth + 1])} is not a section")
        if isinstance(node.get(leaf), dict):
            raise ConfigError(key, "is a section; set one of its keys instead")
        node[leaf] = value
        try:
            cfg = from_dict(data)
        except ConfigError as error:  # only this override can be wrong: name it as written
            raise ConfigError(key, error.message) from None
    return cfg


# --------------------------------------------------------------------------- validation


def validate(cfg: Config, check_paths: bool = True) -> Config:
    """Reject values no run could use, naming the field and what is allowed: each field's
    `Allowed` values, then the rules that tie fields together."""
    for name, value, info in leaves(cfg):
        shown = list(value) if isinstance(value, tuple) else value
        # NaN and infinity pass the comparisons that ranges rely on: no value may be either.
        numbers = shown if isinstance(shown, list) else [shown]
        if any(isinstance(x, float) and not math.isfinite(x) for x in numbers):
            raise ConfigError(name, f"{shown}: must be a finite number")
        rule = info.json_schema_extra
        if isinstance(rule, Allowed) and not rule.ok(value):
            raise ConfigError(name, rule.refusal.format(value=shown, text=rule.text))
    d, s = cfg.data, cfg.scaling
    if d.decoder == "gpu" and d.dataset != "imagefolder":
        raise ConfigError("data.decoder", f"gpu decodes ImageFolder JPEGs; {d.dataset!r} is "
                          "held in memory and needs no decoder: use cpu")
    if d.decoder == "gpu" and s.use_gpu == "false":
        raise ConfigError("data.decoder", "gpu needs CUDA workers, but scaling.use_gpu=false; "
                          "use data.decoder=cpu")
    for name in ("data.batch_size", "protocol.linear_batch_size", "protocol.finetune_batch_size"):
        if (batch := flatten(cfg)[name]) % s.num_workers:
            raise ConfigError(name, f"{batch} is not divisible by scaling.num_workers="
                              f"{s.num_workers}; the global batch is split evenly over the "
                              "workers")
    per_worker, g = d.batch_size // s.num_workers, d.group_size
    if not 0 <= g <= d.batch_size:
        raise ConfigError("data.group_size", f"{g}: need [0, {d.batch_size}] (data.batch_size)")
    if g and (d.batch_size % g or (per_worker % g if g < per_worker else g % per_worker)):
        raise ConfigError("data.group_size", f"{g}: must divide the {per_worker} rows per worker"
                          f", or be a multiple of {per_worker} (whole workers) that divides "
                          f"data.batch_size={d.batch_size}")
    if d.eval_on == "validation" and d.dataset not in VALIDATION_DATASETS:
        raise ConfigError("data.eval_on", f"validation is held out of the train split of "
                          f"{', '.join(VALIDATION_DATASETS)}; {d.dataset!r} has none here")
    if d.dataset not in BUNDLED_DATASETS and check_paths:
        if not d.root:
            raise ConfigError("data.root", f"required for dataset {d.dataset!r}: the folder "
                              "holding its files")
        if not d.download and not Path(d.root).expanduser().is_dir():
            raise ConfigError("data.root", f"{d.root!r} is not a folder; point it at the "
                              "dataset or set data.download=true")
        if d.dataset == "imagefolder" and d.download:
            raise ConfigError("data.download", "ImageFolder datasets cannot be downloaded")
    if cfg.optim.clip_lr and cfg.optim.name != "lars":
        raise ConfigError("optim.clip_lr", f"clips LARS's trust ratio; optim.name is "
                          f"{cfg.optim.name!r}")
    for task in ("segment", "detect"):
        t = getattr(cfg, task)
        for split in ("train_split", "eval_split"):
            if getattr(t, split) == "test" and t.year != "2007":
                raise ConfigError(f"{task}.{split}", f"'test' is not one of: train, trainval, "
                                  f"val (VOC{t.year} has no test split; VOC2007 has)")
    if cfg.detect.max_size < max(cfg.detect.min_size):
        raise ConfigError("detect.max_size", f"{cfg.detect.max_size} is out of range; allowed: "
                          f">= {max(cfg.detect.min_size)} (the largest detect.min_size)")
    return cfg
