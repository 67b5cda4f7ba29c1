"""Batched T/T' augmentation vs torchvision's per-image pipeline: images per second and ratio.

Run with `make bench`. They take turns (`harness.time_steps`); the ratio is the median of
per-repetition ratios. Both draw the paper's T (crop, flip, jitter p=0.8, grey 0.2, blur 1.0)
on uint8 images; the batched version is `byol_ray.learn.data.BatchAugment`, the reference applies
`torchvision.transforms.v2` to one image at a time, as a DataLoader worker would.
"""

from __future__ import annotations

import argparse

import torch
from harness import paired_ratio, time_steps
from torchvision.transforms import v2

from byol_ray.core.config import AugmentConfig
from byol_ray.learn.data import BatchAugment, view_params


def per_image_pipeline(size: int) -> v2.Compose:
    """The same T, one image at a time (torchvision v2 on tensors)."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.GaussianBlur(kernel_size=2 * max(1, size // 20) + 1, sigma=(0.1, 2.0)),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize((0.5,) * 3, (0.25,) * 3),
    ])


def main() -> None:
    """Print throughput of both pipelines at a few image sizes, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    view_t, _ = view_params(AugmentConfig())
    print(f"device {device}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    for size in args.sizes:
        images = torch.randint(0, 256, (args.batch, 3, size + size // 7, size + size // 7),
                               dtype=torch.uint8, device=device)
        batched = BatchAugment(view_t, size, (0.5,) * 3, (0.25,) * 3).to(device)
        pipeline = per_image_pipeline(size)
        contenders = {"batched": lambda x=images, f=batched: f(x),
                      "per-image": lambda x=images, p=pipeline: torch.stack([p(i) for i in x])}
        rates = time_steps(contenders, args.batch, device, warmup=1, reps=args.repeats,
                           steps_per_rep=1)
        ratio = paired_ratio(rates["batched"], rates["per-image"])
        print(f"{size:>4} px  batched {rates['batched'].median:10.0f} img/s  per-image "
              f"{rates['per-image'].median:10.0f} img/s  ratio {ratio['median']:5.1f}x "
              f"(per repetition {ratio['min']:.1f} to {ratio['max']:.1f})")


if __name__ == "__main__":
    main()
