"""The prepared GPU check: the presets' step speed and memory, in a few minutes on one GPU
with synthetic data. Run it through `benchmarks/gpu_check.sh`, which also runs the CUDA
correctness tests (tests/gpu: bf16 against fp32, BatchAugment on CUDA against the CPU, NCCL).

Sections (each bounded; one that would overrun the time budget is skipped and says so):
  env          the card, torch, CUDA, what is installed
  step_<p>     preset p's training step, images/s and model FLOPs utilisation: fp32, bf16,
               bf16+channels_last, + torch.compile; ours vs lightly on the same card
  memory_<p>   peak GPU memory per image of the step -> largest batch per worker per N GiB

Writes every section's result to --out (JSON) as soon as it is done, so a run cut short
still leaves what it measured, and prints a summary at the end. `--dry-run` runs every code
path on the CPU with tiny sizes (CUDA-only parts are skipped), to test the script without a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path

try:  # byol_ray.core.config parses overrides with PyYAML; nothing here parses any
    import yaml  # noqa: F401
except ImportError:  # pragma: no cover - only on a bare GPU image
    sys.modules["yaml"] = types.ModuleType("yaml")

import torch
from contenders import (
    Contender,
    Lightly,
    Ours,
    StepOptions,
    Views,
    numerics,
    preset_config,
    random_images,
    shipped_options,
)
from harness import environment, memory_fit, memory_text, paired_ratio, ratio_line, time_steps
from torch.utils.flop_counter import FlopCounterMode

# Dense bf16 tensor-core peak (FLOP/s) by card name, from NVIDIA's data sheets: the
# denominator of model FLOPs utilisation (MFU) for every precision, as is customary.
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12,
             "A100": 312e12, "L40S": 362e12, "A10G": 70e12}
LIGHTLY_TARGET = 1.10  # ours / lightly (issue 14)


def peak_flops(name: str) -> float | None:
    """The card's dense bf16 peak, or None for a card not in the table."""
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


class Check:
    """Runs sections within a time budget and keeps the results file up to date."""

    def __init__(self, out: Path, budget_s: float, only: list[str] | None = None):
        self.out, self.started, self.only = out, time.perf_counter(), only
        self.deadline = self.started + budget_s
        self.results: dict = {"started": datetime.datetime.now().isoformat(timespec="seconds"),
                              "budget_s": budget_s, "sections": {}}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def section(self, name: str, needs_s: float, fn: Callable[[], dict]) -> dict | None:
        """Run `fn` unless fewer than `needs_s` seconds are left; record its result or error."""
        if self.only and name != "env" and name not in self.only:
            return None
        if self.left() < needs_s:
            entry = {"status": "skipped", "reason": f"{self.left():.0f} s left, needs {needs_s}"}
        else:
            print(f"== {name} ({self.left():.0f} s left)", flush=True)
            began = time.perf_counter()
            try:
                entry = {"status": "done", **fn()}
            except Exception as error:  # one broken section must not lose the others
                entry = {"status": "error", "error": f"{type(error).__name__}: {error}",
                         "traceback": traceback.format_exc()[-3000:]}
                print(entry["traceback"], flush=True)
            entry["seconds"] = round(time.perf_counter() - began, 1)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self.results["sections"][name] = entry
        self.save()
        return entry if entry["status"] == "done" else None

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=1, default=str))


def installed(device: torch.device) -> dict:
    """`harness.environment`, the card's bf16 peak and the optional packages' versions."""
    info = environment(device)
    info["peak_bf16_flops"] = peak_flops(info.get("name", ""))
    for package in ("lightly", "torchvision", "yaml"):
        try:
            info[package] = getattr(__import__(package), "__version__", "present")
        except ImportError:
            info[package] = None
    return info


def count_flops(ours: Ours, views: Views, images: torch.Tensor) -> float:
    """FLOPs of one training step of `ours` (matmuls and convolutions, forward + backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        ours.step(*views(images))
    return float(counter.get_total_flops())


def step_speed(preset: str, device: torch.device, batch: int, source: int, image_size: int | None,
               compile_ours: bool, timing: dict, peak: float | None) -> dict:
    """images/s and MFU of a preset's step in each configuration, and ours vs lightly."""
    cfg = preset_config(preset, batch, image_size)
    images = random_images(batch, source, device)
    views = Views(cfg, device)
    configs = [StepOptions(), StepOptions(amp=True), StepOptions(amp=True, channels_last=True)]
    if compile_ours:
        configs.append(StepOptions(amp=True, channels_last=True, compile=True))
    if device.type != "cuda":  # autocast and channels_last are the GPU's business
        configs = [StepOptions()] + [c for c in configs if c.compile]
    contenders: dict[str, Contender] = {}
    for options in configs:
        contenders[f"ours {options.label()}"] = Ours(cfg, device, options)
    first = next(iter(contenders.values()))
    report: dict = {"preset": preset, "batch": batch, "image_size": cfg.data.image_size,
                    "encoder": cfg.model.encoder, "timing": timing,
                    "cudnn_benchmark": torch.backends.cudnn.benchmark}
    lightly_options = [configs[0], configs[-1 if not compile_ours else -2]]
    try:
        for options in dict.fromkeys(lightly_options):
            contenders[f"lightly {options.label()}"] = Lightly(first, options)
        report["numerics"] = numerics(first, [c for c in contenders.values()
                                              if isinstance(c, Lightly)][:1],
                                      *views(images))
    except ImportError as error:
        report["lightly"] = f"skipped: {error}"
    report["flops_per_step"] = count_flops(first, views, images)
    if compile_ours:  # one step of each from the same weights on the same views
        compiled = contenders[f"ours {configs[-1].label()}"]  # not stepped yet: a warm-up
        eager = Ours(cfg, device, dataclasses.replace(configs[-1], compile=False))
        losses = [float(c.step(*views(images))) for c in (eager, compiled)]
        del eager
        report["compile_numerics"] = {"eager": losses[0], "compiled": losses[1],
                                      "rel_diff": abs(losses[1] - losses[0]) / abs(losses[0])}

    def runner(contender: Contender) -> Callable[[], object]:
        return lambda: contender.step(*views(images))

    timings = time_steps({name: runner(c) for name, c in contenders.items()}, batch, device,
                         **timing)
    base = timings[next(iter(timings))]
    report["configs"] = {}
    for name, t in timings.items():
        entry = t.summary() | {"vs_fp32": paired_ratio(t, base)["median"]}
        if peak:
            entry["mfu"] = report["flops_per_step"] * t.median / batch / peak
        report["configs"][name] = entry
    for options in dict.fromkeys(lightly_options):
        ours, theirs = f"ours {options.label()}", f"lightly {options.label()}"
        if theirs in timings:
            report.setdefault("ours_vs_lightly", {})[options.label()] = paired_ratio(
                timings[ours], timings[theirs])
    # As shipped: the preset's own settings against lightly as in its example (fp32, eager).
    shipped, example = f"ours {shipped_options(cfg, device).label()}", "lightly fp32"
    if shipped in timings and example in timings:
        report.setdefault("ours_vs_lightly", {})[f"as shipped ({shipped}) vs {example}"] = (
            paired_ratio(timings[shipped], timings[example]))
    return report


def step_memory(preset: str, device: torch.device, batch: int, source: int,
                image_size: int | None, options: StepOptions) -> dict:
    """Peak GPU memory of one step at batch b and b/2: bytes per image and the fixed part, and
    the largest batch per worker that fits common card sizes."""
    peaks = {}
    for b in (batch // 2, batch):
        cfg = preset_config(preset, b, image_size)
        ours = Ours(cfg, device, options)
        views = Views(cfg, device)
        images = random_images(b, source, device)
        ours.step(*views(images))  # allocates gradients and optimiser state
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        ours.step(*views(images))
        torch.cuda.synchronize(device)
        peaks[b] = torch.cuda.max_memory_allocated(device)
        del ours, views, images
        torch.cuda.empty_cache()
    return {"preset": preset, "options": options.label()} | memory_fit(peaks, (24, 40, 80, 141))


def summary(results: dict) -> str:
    """Human-readable lines of the results."""
    lines = []
    env = results["sections"].get("env", {})
    lines.append(f"device: {env.get('name', env.get('device'))}, torch {env.get('torch')}, "
                 f"CUDA {env.get('cuda')}, lightly {env.get('lightly')}")
    for name, entry in results["sections"].items():
        status = entry["status"]
        if status != "done":
            lines.append(f"{name}: {status.upper()} {entry.get('reason') or entry.get('error')}")
            continue
        if name.startswith("step_"):
            lines.append(f"{name}: batch {entry['batch']} at {entry['image_size']} px, "
                         f"{entry['flops_per_step'] / 1e12:.2f} TFLOP per step")
            for config, c in entry["configs"].items():
                mfu = f"  MFU {100 * c['mfu']:5.1f}%" if "mfu" in c else ""
                lines.append(f"  {config:34s} {c['median']:10.0f} img/s  spread "
                             f"{100 * c['spread']:4.1f}%  x{c['vs_fp32']:.2f} vs fp32{mfu}")
            if "compile_numerics" in entry:
                n = entry["compile_numerics"]
                lines.append(f"  compiled vs eager, first step's loss: {n['compiled']:.6f} vs "
                             f"{n['eager']:.6f} (relative difference {n['rel_diff']:.1e})")
            for label, r in entry.get("ours_vs_lightly", {}).items():
                lines.append(ratio_line(f"ours/lightly {label}", r, LIGHTLY_TARGET))
            for other, n in entry.get("numerics", {}).items():
                lines.append(f"  numerics vs {other} ({n['mode']}): ours {n['ours']:.6f} "
                             f"theirs {n['theirs']:.6f} {'EQUAL' if n['equal'] else 'DIFFER'}")
            if "lightly" in entry:
                lines.append(f"  lightly: {entry['lightly']}")
        if name.startswith("memory_"):
            lines.append(f"{name} ({entry['options']}): {memory_text(entry)}")
    return "\n".join(lines)


def main() -> None:
    """Run every section within the budget, write JSON, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for all sections")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes on the CPU: exercise the code paths without a GPU")
    parser.add_argument("--compile-imagenet", action="store_true",
                        help="also torch.compile the imagenet step (minutes of compilation)")
    parser.add_argument("--only", nargs="+", help="run only these sections (and env)")
    args = parser.parse_args()
    dry = args.dry_run
    device = torch.device("cuda" if torch.cuda.is_available() and not dry else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    check = Check(args.out, args.budget, args.only)
    check.results["dry_run"] = dry
    env = check.section("env", 0, lambda: installed(device)) or {}
    peak = env.get("peak_bf16_flops")
    # (preset, batch, source pixels, image size override): the per-worker batch of each
    # preset (imagenet: 4096 over 8 GPUs = 512; 256 here keeps fp32 inside an 80 GiB card).
    sizes = {"cifar10": (256, 32, None), "imagenet": (256, 256, None)}
    timing = {"warmup": 3, "reps": 5, "steps_per_rep": 10}
    if dry:
        sizes = {"cifar10": (8, 32, None), "imagenet": (4, 72, 64)}
        timing = {"warmup": 1, "reps": 2, "steps_per_rep": 1}
    for preset, (batch, source, size) in sizes.items():
        compile_it = not dry and (preset == "cifar10" or args.compile_imagenet)
        check.section(f"step_{preset}", 150 if compile_it else 40,
                      lambda p=preset, b=batch, s=source, z=size, c=compile_it:
                      step_speed(p, device, b, s, z, c, timing, peak))
    if device.type == "cuda":
        for preset, (batch, source, size) in sizes.items():
            check.section(f"memory_{preset}", 20, lambda p=preset, b=batch, s=source, z=size:
                          step_memory(p, device, b, s, z, StepOptions(amp=True,
                                                                      channels_last=True)))
    check.save()
    print("\n" + summary(check.results), flush=True)
    print(f"\nresults: {args.out} ({check.results['elapsed_s']} s)", flush=True)


if __name__ == "__main__":
    main()
