"""Peak memory of each preset's training step on the CPU (peak RSS), per image, printed as
"largest batch per worker that fits N GiB" so users can size batches. (On a GPU,
gpu_check.py's memory_<preset> sections measure peak allocated memory the same way.)

Each (preset, batch) runs in a fresh process (peak RSS only grows), two batch sizes per
preset; a straight line through the two peaks gives bytes per image and the fixed part (the
interpreter, torch, weights, optimiser state). Run by `make bench`; not a test.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

import torch
from contenders import Ours, StepOptions, Views, preset_config, random_images
from harness import memory_fit, memory_text, merge_into

BATCHES = {"cpu-mini": (128, 256), "cifar10": (32, 64), "imagenet": (2, 4)}
FITS_GIB = (8, 16, 32, 64)


def child(preset: str, batch: int) -> None:
    """Two training steps of `preset` at `batch`; print the process's peak RSS in bytes."""
    cfg = preset_config(preset, batch)
    cpu = torch.device("cpu")
    ours, views = Ours(cfg, cpu, StepOptions()), Views(cfg, cpu)
    images = random_images(batch, cfg.data.image_size * 8 // 7)
    for _ in range(2):
        ours.step(*views(images))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux: KiB


def measure(preset: str) -> dict:
    """Peak RSS at two batch sizes, bytes per image, and the largest batches that fit."""
    peaks = {}
    for batch in BATCHES[preset]:
        out = subprocess.run([sys.executable, __file__, "--child", preset, str(batch)],
                             check=True, capture_output=True, text=True)
        peaks[batch] = int(out.stdout.split()[-1])
    return memory_fit(peaks, FITS_GIB)  # peak_bytes: the peak RSS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu-mini", "cifar10"],
                        choices=list(BATCHES))
    parser.add_argument("--child", nargs=2, metavar=("PRESET", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    results = {}
    for preset in args.presets:
        results[preset] = measure(preset)
        print(f"{preset} (CPU, fp32): {memory_text(results[preset])}")
    merge_into(args.out, "memory_cpu", results)
    print(f"results merged into {args.out}")


if __name__ == "__main__":
    main()
