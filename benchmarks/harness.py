"""The one timing harness of the benchmarks (step_throughput, profile_step, gpu_check, memory,
eval_cost, augment_throughput).

Contenders take turns within each repetition (who starts rotates), so a noisy neighbour or a
clock change hits them alike; a ratio is the median of per-repetition ratios, with its range,
so the machine's drift between repetitions cancels; the device is synchronised around every
timed block; results print as one line per ratio and merge into one JSON file.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

GIB = 2**30
CPU = torch.device("cpu")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device = CPU) -> float:
    """Wall seconds of one call of `fn`, the device synchronised before and after."""
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


@dataclass
class Timing:
    """Rates (e.g. images per second) of each repetition, and their summary."""

    per_rep: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.per_rep)

    def summary(self) -> dict[str, float | list[float]]:
        return {"median": self.median, "min": min(self.per_rep), "max": max(self.per_rep),
                "spread": (max(self.per_rep) - min(self.per_rep)) / self.median,
                "per_rep": self.per_rep}


def paired_ratio(a: Timing, b: Timing) -> dict[str, float | list[float]]:
    """a / b per repetition (the two ran back to back in each): median, range, the ratios."""
    ratios = [x / y for x, y in zip(a.per_rep, b.per_rep, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "per_rep": ratios}


def time_steps(steps: dict[str, Callable[[], object]], batch: int, device: torch.device,
               warmup: int, reps: int, steps_per_rep: int) -> dict[str, Timing]:
    """Items/s (`batch` items per call) of each named function: `reps` repetitions of
    `steps_per_rep` calls, the functions taking turns within each repetition (round robin,
    starting one further on each repetition so that none always runs first); each gets
    `warmup` untimed calls first (compilation, allocator and cudnn autotuning)."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
        sync(device)
    timings = {name: Timing() for name in steps}
    names = list(steps)
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            fn = steps[name]
            took = seconds(lambda fn=fn: [fn() for _ in range(steps_per_rep)], device)
            timings[name].per_rep.append(steps_per_rep * batch / took)
    return timings


def ratio_line(label: str, ratio: dict, target: float | None = None) -> str:
    """'  label  1.234  (per repetition 1.1 to 1.3; target >= 1.10: met)' for a paired ratio."""
    verdict = "no target" if target is None else (
        f"target >= {target:.2f}: {'met' if ratio['median'] >= target else 'NOT met'}")
    return (f"  {label:34s} {ratio['median']:6.3f}  (per repetition {ratio['min']:.3f} to "
            f"{ratio['max']:.3f}; {verdict})")


def memory_fit(peaks: dict[int, int], card_gib: tuple[int, ...]) -> dict:
    """A straight line through the peak memory at two batch sizes: bytes per image, the fixed
    part, and the largest batch per worker that fits each size in `card_gib`."""
    (small, p_small), (large, p_large) = sorted(peaks.items())
    per_image = max(1.0, (p_large - p_small) / (large - small))
    fixed = p_large - per_image * large
    return {"peak_bytes": peaks, "per_image_mib": per_image / 2**20, "fixed_mib": fixed / 2**20,
            "largest_batch_per_worker": {f"{n} GiB": int((n * GIB - fixed) // per_image)
                                         for n in card_gib}}


def memory_text(fit: dict) -> str:
    """'0.19 MiB per image + 900 MiB; largest batch per worker that fits 8 GiB: ...'."""
    fits = ", ".join(f"{k}: {v}" for k, v in fit["largest_batch_per_worker"].items())
    return (f"{fit['per_image_mib']:.2f} MiB per image + {fit['fixed_mib']:.0f} MiB; largest "
            f"batch per worker that fits {fits}")


def environment(device: torch.device) -> dict:
    """What sets the speed in this process: threads, CPUs, niceness, the thread and allocator
    environment variables, versions and, on CUDA, the card."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "device": str(device), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cpus": len(os.sched_getaffinity(0)), "nice": os.nice(0),
            "env": {k: v for k, v in os.environ.items()
                    if k.startswith(("OMP_", "MKL_", "KMP_", "LD_PRELOAD", "MALLOC"))}}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"cuda": torch.version.cuda, "gpus": torch.cuda.device_count(),
                 "name": props.name, "memory_gib": round(props.total_memory / GIB, 1),
                 "capability": f"{props.major}.{props.minor}",
                 "sms": props.multi_processor_count, "cudnn": torch.backends.cudnn.version(),
                 "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                          "cudnn": torch.backends.cudnn.allow_tf32}}
    return info


def merge_into(path: Path, key: str, value: dict) -> None:
    """Write `value` under `key` in the JSON file at `path`, keeping the other keys."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
