"""The paper's evaluation protocols on a trained encoder, each a Ray Train job of its own."""

RANDOM_INIT_REF = "random-init"  # `--run random-init`: the untrained encoder (1.4% linear top-1)
SUPERVISED_REF = "supervised"  # `--run supervised`: torchvision's ImageNet weights (Table 4)
