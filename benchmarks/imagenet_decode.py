"""ImageNet input pipeline, CPU decoder: images/s per CPU core delivered with both views.

Run with `make bench`. On a synthetic ImageNet-like folder it writes (synthetic_imagenet.py),
measures the path a training run takes (`byol_ray.learn.data.imagefolder.TwoViewFolder`: one decode
per image, JPEG draft reduction where both crops allow, two random-resized crops from the
full image, bicubic to image_size):
  1 core     one process, no loader workers: images/s per core with nothing else in the way;
  loader     a DataLoader with --workers processes, batches moved to the device and, on a GPU,
             the rest of T / T' applied there (`ViewPair`): images/s delivered, and per
             CPU-second of the workers (= per core kept busy decoding);
  eval       the evaluation's centre view (shorter side to 8/7 x image_size, centre crop).
and prints them beside what one GPU consumes and the target (>= 200 images/s per core).
Numbers depend on the CPU and on its load: say which machine, and how busy, when quoting them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import synthetic_imagenet  # noqa: E402
from harness import sync  # noqa: E402

from byol_ray.core.config import AugmentConfig  # noqa: E402
from byol_ray.learn.data import ViewPair, view_params  # noqa: E402
from byol_ray.learn.data.datasets import IMAGENET_STATS  # noqa: E402
from byol_ray.learn.data.imagefolder import CentreViewFolder, TwoViewFolder, scan  # noqa: E402

# What one GPU consumes: NVIDIA's ResNet-50 v1.5 PyTorch training runs at 2,470 img/s on one
# A100 80GB in mixed precision (DeepLearningExamples, PyTorch/Classification/ConvNets/
# resnet50v1.5/README.md, "Training performance: NVIDIA DGX A100"). One supervised image costs
# a forward and a backward (~3 forward passes); one BYOL image costs, for each of its 2 views,
# an online forward + backward (~3) and a target forward (1): 8. So ~2470 * 3 / 8 ~ 930,
# about 1,000 images/s per A100 in bf16; an H100 about twice that.
GPU_IMAGES_PER_S = 1000
GPUS_PER_NODE, VCPUS_PER_NODE = 8, 96  # an 8 x A100 node (e.g. AWS p4d.24xlarge)
TARGET_PER_CORE = 200  # = 2 x 8 x 1000 / 96, rounded up: the node's CPUs feed its GPUs twice over


@dataclass
class Rate:
    """Images per second of wall clock, and per CPU-second (robust to a busy machine)."""

    wall: float
    cpu: float


def one_core(dataset, count: int) -> Rate:
    """Decode `count` items in this process, on one thread."""
    dataset[0]  # warm-up (file cache, imports)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        dataset[i % len(dataset)]
    return Rate(count / (time.perf_counter() - wall), count / (time.process_time() - cpu))


def through_loader(dataset, workers: int, batch: int, device: torch.device,
                   views: ViewPair | None) -> Rate:
    """Images a DataLoader with `workers` processes delivers onto `device` (and, on a GPU,
    through T / T'): per second, and per CPU-second of the decoding workers."""
    def step(pairs: torch.Tensor) -> None:
        if views is not None:
            views(pairs)
        else:
            pairs.to(device, non_blocking=True)

    wall, cpu = synthetic_imagenet.loader_rate(dataset, workers, batch, step,
                                               sync=lambda: sync(device))
    return Rate(wall, cpu)


def main() -> None:
    """Write (or reuse) the folder, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="synthetic train images")
    parser.add_argument("--folder", type=Path,
                        default=Path(tempfile.gettempdir()) / "byol-ray-synthetic-imagenet")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--single", type=int, default=400, help="images timed on one core")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per process: per-core numbers mean what they say
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = synthetic_imagenet.write_folder(args.folder, args.images)
    samples, _ = scan(root / "train")
    aug = AugmentConfig()
    pairs = TwoViewFolder(samples, args.image_size, aug.crop_scale, aug.crop_ratio)
    centre = CentreViewFolder(samples, args.image_size)
    on_gpu = device.type == "cuda"
    views = ViewPair(view_params(aug), args.image_size, *IMAGENET_STATS).to(device) if on_gpu \
        else None

    print(f"ImageNet input pipeline, CPU decoder, {args.image_size} px, two views per image")
    print(f"  data: {synthetic_imagenet.describe(root)}")
    print(f"  machine: {os.cpu_count()} CPUs visible, {len(os.sched_getaffinity(0))} usable, "
          f"load average {os.getloadavg()[0]:.1f}; device {device}")
    single = one_core(pairs, args.single)
    delivered = through_loader(pairs, args.workers, args.batch, device, views)
    evaluation = one_core(centre, args.single)
    done = "then T/T' on the GPU" if on_gpu else "uint8 crops; the rest of T/T' runs on the GPU"
    print("                             img/s (wall)   img/s per CPU-second (= per busy core)")
    print(f"  1 process, both views      {single.wall:8.0f}       {single.cpu:8.0f}")
    print(f"  loader, {args.workers:2d} workers          {delivered.wall:8.0f}       "
          f"{delivered.cpu:8.0f}   ({done})")
    print(f"  eval centre view, 1 proc   {evaluation.wall:8.0f}       {evaluation.cpu:8.0f}")
    met = "met" if delivered.cpu >= TARGET_PER_CORE else "NOT met"
    print(f"  target per core                             {TARGET_PER_CORE:8d}   ({met}: "
          f"{GPUS_PER_NODE} x {GPU_IMAGES_PER_S} img/s x 2 / {VCPUS_PER_NODE} vCPUs)")
    print(f"  a GPU consumes {GPU_IMAGES_PER_S} img/s (A100, bf16, ResNet-50 BYOL; NVIDIA's 2,470 "
          f"supervised img/s x 3/8): {GPU_IMAGES_PER_S / delivered.cpu:.1f} busy cores per GPU, "
          f"{GPUS_PER_NODE * GPU_IMAGES_PER_S / delivered.cpu:.0f} of {VCPUS_PER_NODE} for "
          f"{GPUS_PER_NODE} A100s")

if __name__ == "__main__":
    main()
