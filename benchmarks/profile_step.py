"""Where one training step of a preset spends its time: augmentation, forward + backward, the
optimiser step and the EMA, each timed alone (synchronised), the LARS step's two ways side by
side (`torch._foreach_*` against one parameter at a time), then torch.profiler's top ops.

    python benchmarks/profile_step.py --preset cifar10 --batch 256 [--amp --channels-last]

Prints milliseconds per part and per step; `--json` writes them too. Not a test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from contenders import Ours, StepOptions, Views, preset_config, random_images
from harness import paired_ratio, seconds, sync, time_steps
from torch.profiler import ProfilerActivity, profile

from byol_ray.learn.optim import LARS


def part_times(ours: Ours, views: Views, images: torch.Tensor, repeats: int) -> dict[str, float]:
    """Milliseconds per call of each part of the step, each part timed alone."""
    device = images.device
    totals = dict.fromkeys(("augment", "forward_backward", "optimizer", "ema"), 0.0)

    def timed(part: str, fn):
        out = []
        totals[part] += seconds(lambda: out.append(fn()), device)
        return out[0]

    for _ in range(repeats):
        v1, v2 = timed("augment", lambda: views(images))

        def forward_backward(v1=v1, v2=v2):
            with ours._autocast(device):
                loss = ours.forward(ours._input(v1), ours._input(v2))["loss"]
            loss.backward()

        timed("forward_backward", forward_backward)

        def optimizer_step():
            ours.optimizer.step()
            ours.optimizer.zero_grad(set_to_none=True)

        timed("optimizer", optimizer_step)
        ours.steps += 1
        timed("ema", lambda: ours.method.after_step(ours.steps, 10_000))
    return {part: 1000 * seconds / repeats for part, seconds in totals.items()}


def top_ops(ours: Ours, views: Views, images: torch.Tensor, steps: int, rows: int) -> str:
    """torch.profiler's table of the ops with the most self time (device time on a GPU)."""
    activities = [ProfilerActivity.CPU]
    if images.is_cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            ours.step(*views(images))
        sync(images.device)
    key = "self_cuda_time_total" if images.is_cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=rows)
    if images.is_cuda:
        table += "\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return table


def lars_foreach_vs_per_parameter(ours: Ours, views: Views, images: torch.Tensor,
                                  blocks: int, steps: int) -> dict:
    """Milliseconds per LARS step with `torch._foreach_*` and one parameter at a time, on
    the device and on one-element tensors (the host's part alone).

    One backward pass leaves gradients that both then step with, in alternating blocks of
    `steps` steps; the ratio of each pair of neighbouring blocks cancels the machine's drift.
    """
    if not hasattr(ours.optimizer, "foreach"):
        raise ValueError(f"the preset's optimiser is {type(ours.optimizer).__name__}, not LARS")
    device = images.device
    with ours._autocast(device):
        ours.forward(*(ours._input(v) for v in views(images)))["loss"].backward()
    result = _alternate_lars(ours.optimizer, device, blocks, steps)
    ours.optimizer.zero_grad(set_to_none=True)
    host = _one_element_twin(ours.optimizer)
    result["host"] = _alternate_lars(host, torch.device("cpu"), blocks, steps)
    return result


def _one_element_twin(optimizer: torch.optim.Optimizer) -> LARS:
    """A LARS with the same groups and number of tensors, each of one element: its step
    does next to no arithmetic, so its time is what the host spends issuing the ops (what
    bounds a small model's optimiser step on a GPU, before kernel launches)."""
    generator = torch.Generator().manual_seed(0)
    groups = []
    for group in optimizer.param_groups:
        tiny = [torch.nn.Parameter(torch.randn(1, generator=generator)) for _ in group["params"]]
        for p in tiny:
            p.grad = torch.randn(1, generator=generator)
        groups.append({k: v for k, v in group.items() if k != "params"} | {"params": tiny})
    return LARS(groups, lr=optimizer.defaults["lr"])


def _alternate_lars(optimizer: torch.optim.Optimizer, device: torch.device, blocks: int,
                    steps: int) -> dict[str, float | int]:
    """ms per step of `optimizer` (a LARS) with foreach on and off, taking turns in blocks."""
    chosen = optimizer.foreach

    def stepper(foreach: bool):
        def step() -> None:
            optimizer.foreach = foreach
            optimizer.step()
        return step

    rates = time_steps({"foreach": stepper(True), "per_parameter": stepper(False)}, 1, device,
                       warmup=steps, reps=blocks, steps_per_rep=steps)
    optimizer.foreach = chosen
    speedup = paired_ratio(rates["foreach"], rates["per_parameter"])  # steps/s: foreach first
    return {"foreach_ms": 1000 / rates["foreach"].median,
            "per_parameter_ms": 1000 / rates["per_parameter"].median,
            "speedup_median": speedup["median"], "speedup_min": speedup["min"],
            "speedup_max": speedup["max"],
            "tensors": sum(len(g["params"]) for g in optimizer.param_groups)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=0, help="0: the preset's")
    parser.add_argument("--source", type=int, default=0, help="stored image side; 0: 8/7 size")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--lars-blocks", type=int, default=9,
                        help="alternating blocks of the foreach / per-parameter LARS timing")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    cfg = preset_config(args.preset, args.batch, args.image_size or None)
    source = args.source or cfg.data.image_size * 8 // 7
    options = StepOptions(amp=args.amp, channels_last=args.channels_last)
    ours = Ours(cfg, device, options)
    views = Views(cfg, device)
    images = random_images(args.batch, source, device)
    for _ in range(3):  # warm-up: allocator, cudnn autotuning, optimiser state
        ours.step(*views(images))
    parts = part_times(ours, views, images, args.repeats)
    step = sum(parts.values())
    label = f"{args.preset} batch {args.batch} {options.label()} on {device}"
    print(f"{label}: {step:.1f} ms per step ({1000 * args.batch / step:.0f} img/s)")
    for part, ms in parts.items():
        print(f"  {part:18s} {ms:8.2f} ms  {100 * ms / step:5.1f}%")
    lars = lars_foreach_vs_per_parameter(ours, views, images, args.lars_blocks, steps=10)
    for where, r in ((f"on {device}", lars), ("host only (1-element tensors)", lars["host"])):
        print(f"LARS step, {r['tensors']} tensors, {where}: foreach {r['foreach_ms']:.2f} ms, "
              f"per parameter {r['per_parameter_ms']:.2f} ms: per parameter / foreach "
              f"x{r['speedup_median']:.2f} (blocks {r['speedup_min']:.2f} to "
              f"{r['speedup_max']:.2f})")
    print(top_ops(ours, views, images, steps=2, rows=args.rows))
    if args.json:
        args.json.write_text(json.dumps({"label": label, "ms": parts, "lars": lars}, indent=1))


if __name__ == "__main__":
    main()
