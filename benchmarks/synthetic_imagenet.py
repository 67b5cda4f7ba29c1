"""A synthetic ImageNet-like ImageFolder for the decode benchmarks: JPEGs (quality 90) whose
sizes are drawn like ImageNet's and whose content is smooth colour fields with fine noise
(so files weigh, and decode, like photographs rather than flat colour or pure noise).

Sizes: about 60% 4:3 landscape, 15% 3:4 portrait, 15% 3:2 or 2:3, 10% any ratio in [1:2.5,
2.5:1]; shorter side log-normal around 305 px (80 to 1200): about 400 x 350 on average, as the
issue measuring this asks. Also `loader_rate`, the timing both decode benchmarks share.
Needs only numpy, Pillow and torch (the GPU check runs it without Ray).
"""

from __future__ import annotations

import gc
import math
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

QUALITY = 90
CLASSES = 10


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) of one ImageNet-like photograph."""
    kind = rng.random()
    if kind < 0.60:
        aspect = 4 / 3
    elif kind < 0.75:
        aspect = 3 / 4
    elif kind < 0.90:
        aspect = 3 / 2 if rng.random() < 0.5 else 2 / 3
    else:
        aspect = math.exp(rng.uniform(math.log(1 / 2.5), math.log(2.5)))
    short = float(np.clip(rng.lognormal(math.log(305), 0.25), 80, 1200))
    if aspect >= 1:
        return round(short * aspect), round(short)
    return round(short), round(short / aspect)


def photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth random colour field (bicubic from 8x8) with fine Gaussian grain."""
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    grain = rng.normal(0, 10, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def write_folder(root: Path, n: int, seed: int = 0) -> Path:
    """root/train/<class>/*.jpg (n images, or more if a larger folder is already there) and a
    small root/val."""
    done = root / f".complete-{n}-{seed}"
    if any(int(m.name.split("-")[1]) >= n for m in root.glob(f".complete-*-{seed}")):
        return root  # the first n train images of a larger folder are these same n
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", max(CLASSES, n // 10))):
        for i in range(count):
            folder = root / split / f"class{i % CLASSES:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            photo(rng, *image_size(rng)).save(folder / f"{i:06d}.jpg", quality=QUALITY)
    done.touch()
    return root


def describe(root: Path) -> str:
    """Count, mean size and mean file size of root/train, for the benchmark's header."""
    files = sorted((root / "train").rglob("*.jpg"))
    sizes = []
    for path in files:
        with Image.open(path) as img:
            sizes.append(img.size)
    width, height = np.mean(sizes, axis=0)
    kib = np.mean([f.stat().st_size for f in files]) / 1024
    return (f"{len(files)} JPEGs (quality {QUALITY}), mean {width:.0f} x {height:.0f} px, "
            f"{kib:.0f} KiB")


def loader_rate(dataset: Dataset, workers: int, batch: int, step: Callable, collate=None,
                sync: Callable[[], None] = lambda: None, epochs: int = 3) -> tuple[float, float]:
    """(images/s, images per CPU-second of the loader workers) of a DataLoader whose batches
    `step` consumes. The first epoch warms up (workers start, files enter the page cache,
    queues fill) and is not timed; the CPU time counts every epoch's decoding, read from the
    workers' rusage once they exit (this process's own, without workers)."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        collate_fn=collate, drop_last=True, persistent_workers=workers > 0)
    cpu = _children_cpu() if workers else time.process_time()
    started, timed = 0.0, 0
    for epoch in range(epochs):
        if epoch == 1:
            sync()
            started = time.perf_counter()
        for data, labels in loader:
            step(data)
            timed += len(labels) if epoch else 0
    sync()
    wall = timed / (time.perf_counter() - started)
    del loader  # persistent workers exit and are reaped: their CPU time is now counted
    gc.collect()
    spent = _children_cpu() - cpu if workers else time.process_time() - cpu
    return wall, epochs * timed / (epochs - 1) / spent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
