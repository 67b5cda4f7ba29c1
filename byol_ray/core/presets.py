"""Named starting points for a run, and the settings a method takes on them. Constants cite
their source:

[P] Grill et al. 2020, arXiv 2006.07733; [DM] google-deepmind/deepmind-research byol/configs;
[SL] vturrisi/solo-learn scripts/pretrain/cifar/byol.yaml; [S] Chen et al. 2020 (SimCLR),
arXiv 2002.05709, and its code google-research/simclr (README's ImageNet command).
"""

from __future__ import annotations

from collections.abc import Callable

from byol_ray.core.config import (
    AugmentConfig,
    Config,
    ConfigError,
    DataConfig,
    DetectConfig,
    EvalConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    ProtocolConfig,
    ScalingConfig,
    SegmentConfig,
    TrainConfig,
    apply_overrides,
)

# [DM configs/byol.py] learning rate, weight decay and tau_base by number of epochs.
_PAPER_BY_EPOCHS: dict[int, tuple[float, float, float]] = {
    # epochs: (base_lr, weight_decay, tau_base)
    300: (0.3, 1e-6, 0.99),  # the ablation setting of [P §5]
    1000: (0.2, 1.5e-6, 0.996),  # the main run of [P §3.3]
}


def cpu_mini() -> Config:
    """Tiny CNN on the bundled sklearn digits: the whole pipeline in minutes on a laptop CPU."""
    return Config(
        preset="cpu-mini",
        # Batch 64 and tau_base 0.97 over 20 epochs (440 steps on digits' 1437 images): the
        # target keeps e^-6.6 of its random start (<= 0.01), and BYOL gains 17-21 points of
        # few-label kNN over random-init on a validation part of train (docs/experiments/
        # miniature.md, "Choosing cpu-mini's schedule"; batch 256 at 100 steps kept 0.61).
        data=DataConfig(dataset="digits", image_size=16, batch_size=64),
        # Digits are 8x8 and not mirror-symmetric (a flipped 2 is no 2): milder crops, no flip.
        augment=AugmentConfig(crop_scale=(0.3, 1.0), flip_p=0.0, blur_p=(0.5, 0.1)),
        model=ModelConfig(
            encoder="small_cnn", width=16, proj_hidden_dim=256, proj_dim=64, pred_hidden_dim=256
        ),
        method=MethodConfig(tau_base=0.97),
        optim=OptimConfig(
            name="lars", base_lr=1.0, weight_decay=1e-5, trust_coefficient=0.02, warmup_epochs=2
        ),
        train=TrainConfig(epochs=20, checkpoint_every=10),
        # Few-label kNN (5 labels per class, 3 draws): on digits the untrained encoder scores
        # 92% with every label but ~50% with five per class, so this is where BYOL's gain shows
        # (docs/experiments/miniature.md: measured on a validation part of train).
        eval=EvalConfig(eval_every=10, knn_k=(20, 200), linear_epochs=50,
                        few_label_per_class=5, few_label_draws=3),
        # The dense protocols [P App. D.4/D.5] in about a minute each on small VOC-layout
        # images: the paper's schedule shapes (steps at 70/90% and 2/3, 4/5) on a few
        # iterations, crops of 64 px, the detector at its input size; higher rates than the
        # paper's so that fresh heads learn something in that time.
        segment=SegmentConfig(iterations=40, batch_size=8, lr=0.05, crop_size=64),
        detect=DetectConfig(iterations=40, batch_size=4, lr=0.02, min_size=(64,), max_size=64,
                            rois_per_image=64),
        # The paper's protocols, scaled so each trains in seconds: 1437 train images, the same
        # milder crops as pretraining, a fifth of train held out to choose the linear lr and a
        # fifth of the label subset to choose fine-tuning's (10%: 3 of 14 images per class; 1%
        # is one image per class, none to hold out: --fraction 0.1, or one rate). The
        # small CNN's features are tiny next to a ResNet-50's: at the paper's rates a linear
        # layer on them learns slowly (20 epochs at lr 0.4: 54% test top-1, 85% with
        # feature_norm, measured on a 2-epoch BYOL encoder), hence the affine-free BN before it.
        protocol=ProtocolConfig(linear_epochs=30, linear_batch_size=256, val_fraction=0.2,
                                crop_scale=(0.3, 1.0), feature_norm=True, finetune_epochs=30,
                                finetune_batch_size=256, finetune_holdout=0.2),
        scaling=ScalingConfig(num_workers=2, use_gpu="auto"),
    )


def cifar10() -> Config:
    """ResNet-18 (CIFAR stem) on CIFAR-10, the widely used recipe [SL]: no blur, solarise 0/0.2."""
    return Config(
        preset="cifar10",
        data=DataConfig(dataset="cifar10", root="data/cifar10", image_size=32, batch_size=256,
                        loader_workers=2),
        augment=AugmentConfig(blur_p=(0.0, 0.0), solarize_p=(0.0, 0.2)),
        model=ModelConfig(encoder="resnet18", cifar_stem=True),
        method=MethodConfig(tau_base=0.99),
        # [SL] optimizer: lars, lr 1.0, wd 1e-5, eta 0.02, clip_lr True, exclude_bias_n_norm.
        # Differs from [SL solo/utils/lars.py] in the ratio's denominator only: ||g + wd w||
        # as DeepMind's optax chain, where solo-learn divides by ||g|| + wd ||w|| (+1e-8).
        optim=OptimConfig(name="lars", base_lr=1.0, weight_decay=1e-5, trust_coefficient=0.02,
                          clip_lr=True, warmup_epochs=10),
        train=TrainConfig(epochs=1000, checkpoint_every=10, amp=True),
        eval=EvalConfig(eval_every=10),
        # The paper's protocols at batch 256 on one GPU; 5000 train images hold out for the lr.
        protocol=ProtocolConfig(linear_batch_size=256, val_fraction=0.1,
                                finetune_batch_size=256),
        scaling=ScalingConfig(num_workers=1, use_gpu="auto", cpus_per_worker=4),
    )


def imagenet_like(preset: str, dataset_root: str, epochs: int) -> Config:
    """ResNet-50 at 224 px with the paper's settings for `epochs` (300 or 1000) [P App. C, DM]."""
    base_lr, weight_decay, tau_base = _PAPER_BY_EPOCHS[epochs]
    return Config(
        preset=preset,
        data=DataConfig(dataset="imagefolder", root=dataset_root, image_size=224,
                        batch_size=4096, loader_workers=8,
                        max_eval_images=100_000),  # kNN monitoring on 100k labelled images
        augment=AugmentConfig(),  # T / T' exactly as [P Table 6]
        model=ModelConfig(encoder="resnet50", proj_hidden_dim=4096, proj_dim=256,
                          pred_hidden_dim=4096),
        method=MethodConfig(tau_base=tau_base, temperature=0.1),
        optim=OptimConfig(name="lars", base_lr=base_lr, weight_decay=weight_decay,
                          momentum=0.9, trust_coefficient=1e-3, exclude_bias_and_bn=True,
                          warmup_epochs=10),
        train=TrainConfig(epochs=epochs, checkpoint_every=5, amp=True, channels_last=True),
        eval=EvalConfig(eval_every=50, knn_k=(20, 200), linear_epochs=80, linear_lr=0.2,
                        linear_batch_size=1024),
        protocol=ProtocolConfig(),  # the paper's protocols as they are [P App. C.1, C.2]
        scaling=ScalingConfig(num_workers=8, use_gpu="auto", cpus_per_worker=8),
    )


PRESETS: dict[str, Callable[[], Config]] = {
    "cpu-mini": cpu_mini,
    "cifar10": cifar10,
    # ImageNet-100 at the 300-epoch ablation setting [P §5].
    "imagenet100": lambda: imagenet_like("imagenet100", "data/imagenet100", 300),
    # Full ImageNet: the 1000-epoch main run [P §3.3] and the 300-epoch ablation setting [P §5].
    "imagenet": lambda: imagenet_like("imagenet", "data/imagenet", 1000),
    "imagenet-300": lambda: imagenet_like("imagenet-300", "data/imagenet", 300),
}

DESCRIPTIONS: dict[str, str] = {
    "cpu-mini": "small CNN, sklearn digits 16px, batch 64, tau 0.97->1, 20 epochs, few-label kNN, "
                "2 CPU workers (~1 min)",
    "cifar10": "ResNet-18 CIFAR stem, 32px, batch 256, LARS, tau 0.99->1, 1000 epochs (1 GPU)",
    "imagenet100": "ResNet-50, 224px, batch 4096, 300-epoch ablation setting (8 GPUs)",
    "imagenet": "ResNet-50, 224px, batch 4096, 1000-epoch main run, tau 0.996 (8 GPUs)",
    "imagenet-300": "ResNet-50, 224px, batch 4096, 300-epoch ablation setting (8 GPUs)",
}


def get_preset(name: str) -> Config:
    """A fresh Config for a named preset; unknown names list the known ones."""
    if name not in PRESETS:
        raise ConfigError("preset", f"{name!r} is not one of: {', '.join(PRESETS)}")
    return PRESETS[name]()


# SimCLR's own settings where its paper states them, applied before any --set when a run or a
# sweep cell uses method=simclr on a GPU preset (`preset_config`):
# - LARS lr 0.3 x B/256 and weight decay 1e-6 [S §2.3 "Default setting"]; at B = 4096 (the
#   ImageNet presets, and Fig. 3a's optimiser batch) the same rate as [S App. B.1]'s square-root
#   rule 0.075 x sqrt(B), which only the linear rule is offered for here. The BYOL paper runs
#   its ablations "as in SimCLR" at these two values [P §5], so on imagenet-300 / imagenet100
#   they change nothing; on imagenet (lr 0.2, wd 1.5e-6) and cifar10 (lr 1.0, wd 1e-5) they do.
# - projection head: a 2-layer MLP to a 128-d output [S §2.3], its hidden layer as wide as
#   ResNet-50's 2048-d representation [S §4.2, Fig. 8].
# - temperature 0.1: the best of [S §5.1, Table 5] at batch 4096, and the ImageNet command of
#   [S]'s README (--temperature=0.1).
# The BYOL paper names no other setting of its SimCLR reimplementation (Fig. 3), so epochs,
# warm-up, the preset's LARS (η, clipping, exclusions), augmentations and batch stay the
# preset's: Fig. 3's BYOL and SimCLR cells differ in the objective and in these settings only.
# Not reproduced: SimCLR's batch-normalised projector output ([P App. A]: "Contrary to SimCLR,
# the output of this MLP is not batch normalized"); our projector is BYOL's MLP on both.
# cpu-mini keeps its tuned settings for every method (docs/experiments/miniature.md).
METHOD_SETTINGS: dict[str, tuple[str, ...]] = {
    "simclr": ("optim.base_lr=0.3", "optim.weight_decay=1e-6", "method.temperature=0.1",
               "model.proj_hidden_dim=2048", "model.proj_dim=128"),
}
TUNED_PRESETS = ("cpu-mini",)  # presets whose own settings every method keeps


def method_settings(preset: str, method: str) -> tuple[str, ...]:
    """The overrides `method` takes on `preset` before any --set (`METHOD_SETTINGS`; none on
    the tuned cpu-mini)."""
    return () if preset in TUNED_PRESETS else METHOD_SETTINGS.get(method, ())


def preset_config(preset: str, overrides: list[str]) -> Config:
    """`preset` with `overrides` (`--set`, a sweep cell's), preceded by the settings of the
    method they select (`method_settings`): an override always wins."""
    cfg = apply_overrides(get_preset(preset), overrides)
    settings = method_settings(preset, cfg.method.name)
    return apply_overrides(get_preset(preset), [*settings, *overrides]) if settings else cfg
