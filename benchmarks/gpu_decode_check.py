"""The GPU decoder's speed (`data.decoder: gpu`), for benchmarks/gpu_check.sh on a lent GPU.

On a synthetic ImageNet-like folder (synthetic_imagenet.py) it measures, in images/s with
both views of image_size:
  gpu decode     batched nvJPEG decode + the two crops on the GPU, batches already in memory;
  gpu pipeline   the same fed by a DataLoader whose workers only read bytes and draw boxes;
  cpu pipeline   the CPU decoder (PIL, draft mode) in the same number of workers, for
                 comparison; both also per CPU-second of their workers (per busy core).
Each pipeline runs 3 epochs over the folder; the first (worker start, page cache) is untimed.
Runs with plain `python3` where torch and torchvision are installed: it imports only
byol_ray.learn.data's decoding modules (not the package, whose config needs PyYAML), never Ray or
MLflow. Without CUDA it runs a tiny smoke test on the CPU and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
if "byol_ray.learn.data" not in sys.modules:  # these modules, not learn/data/__init__
    shell = types.ModuleType("byol_ray.learn.data")
    shell.__path__ = [str(HERE.parent / "byol_ray" / "learn" / "data")]
    sys.modules["byol_ray.learn.data"] = shell

import synthetic_imagenet  # noqa: E402
from harness import seconds, sync  # noqa: E402
from synthetic_imagenet import loader_rate  # noqa: E402

from byol_ray.learn.data.crops import Box  # noqa: E402
from byol_ray.learn.data.decode import crop_views  # noqa: E402
from byol_ray.learn.data.gpu_decode import decode_crops  # noqa: E402
from byol_ray.learn.data.imagefolder import JpegFolder, TwoViewFolder, collate_jpeg, scan  # noqa: E402

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # [P Table 6]


def gpu_decode(batches: list, size: int, device: torch.device) -> float:
    """Images/s of decode_crops alone, over batches already collated in memory."""
    decode_crops(batches[0][0], size, device)  # warm-up: nvJPEG handles, kernels
    took = seconds(lambda: [decode_crops(batch, size, device) for batch, _ in batches], device)
    return sum(len(labels) for _, labels in batches) / took


def agreement(batch: dict, samples: list, size: int, device: torch.device) -> float:
    """Mean |GPU view - CPU view| in 0..255 levels for the first batch's boxes: the two
    decoders must cut the same crops (they differ only in resampling and IDCT rounding)."""
    views = decode_crops(batch, size, device).cpu() * 255
    total = 0.0
    for i, corners in enumerate(batch["boxes"].tolist()):
        boxes = [Box(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in corners]
        cpu, _, _ = crop_views(samples[i][0], size, lambda w, h, boxes=boxes: boxes)
        total += float((views[i] - torch.stack(cpu).float()).abs().mean())
    return total / len(batch["boxes"])


def main() -> None:
    """Measure and print; write a JSON summary to --out (default $OUT/gpu_decode_check.json)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=min(8, len(os.sched_getaffinity(0))))
    parser.add_argument("--folder", type=Path,
                        default=Path(tempfile.gettempdir()) / "byol-ray-synthetic-imagenet")
    out_default = Path(os.environ["OUT"]) / "gpu_decode_check.json" if "OUT" in os.environ \
        else None
    parser.add_argument("--out", type=Path, default=out_default)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:  # a smoke test of the code path, not a measurement
        args.images, args.batch, args.workers = min(args.images, 16), 8, 0
        print("gpu_decode_check: no CUDA; smoke run on the CPU (libjpeg-turbo), not a timing")
    started = time.perf_counter()
    root = synthetic_imagenet.write_folder(args.folder, args.images)
    samples, _ = scan(root / "train")
    samples = samples[: args.images]
    name = torch.cuda.get_device_name() if cuda else "cpu (smoke run)"
    print(f"gpu_decode_check: {synthetic_imagenet.describe(root)} (written/read in "
          f"{time.perf_counter() - started:.0f} s); {args.workers} loader workers, batch "
          f"{args.batch}, {args.image_size} px, {name}")
    size = args.image_size
    jpeg = JpegFolder(samples, size, SCALE, RATIO)
    batches = list(DataLoader(jpeg, batch_size=args.batch, num_workers=args.workers,
                              collate_fn=collate_jpeg))
    decode_only = gpu_decode(batches, size, device)
    difference = agreement(batches[0][0], samples, size, device)
    gpu_wall, gpu_cpu = loader_rate(jpeg, args.workers, args.batch,
                                    lambda data: decode_crops(data, size, device),
                                    collate=collate_jpeg, sync=partial(sync, device))
    pairs = TwoViewFolder(samples, size, SCALE, RATIO)
    cpu_wall, cpu_cpu = loader_rate(pairs, args.workers, args.batch,
                                    lambda data: data.to(device, non_blocking=True),
                                    sync=partial(sync, device))
    results = {
        "device": name,
        "images": len(samples), "image_size": size, "workers": args.workers,
        "gpu_vs_cpu_decoder_mean_abs_difference": round(difference, 2),
        "gpu_decode_images_per_s": round(decode_only),
        "gpu_pipeline_images_per_s": round(gpu_wall),
        "gpu_pipeline_images_per_cpu_second": round(gpu_cpu),
        "cpu_pipeline_images_per_s": round(cpu_wall),
        "cpu_pipeline_images_per_cpu_second": round(cpu_cpu),
    }
    print(f"  gpu vs cpu decoder, same boxes: mean |difference| {difference:.2f} / 255 "
          f"({'ok' if difference < 3 else 'TOO LARGE'}: resampling only, < 3)")
    print(f"  gpu decode (nvJPEG + 2 crops, in memory)  {decode_only:8.0f} img/s")
    print(f"  gpu pipeline ({args.workers} workers read bytes)     {gpu_wall:8.0f} img/s  "
          f"({gpu_cpu:.0f} per CPU-second)")
    print(f"  cpu pipeline ({args.workers} workers decode, PIL)    {cpu_wall:8.0f} img/s  "
          f"({cpu_cpu:.0f} per CPU-second)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
