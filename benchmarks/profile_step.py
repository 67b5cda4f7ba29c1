"""Where one training step of a preset spends its time: augmentation, forward + backward, the
optimiser step and the EMA, each timed alone (synchronised), then torch.profiler's top ops.

    python benchmarks/profile_step.py --preset cifar10 --batch 256 [--amp --channels-last]

Prints milliseconds per part and per step; `--json` writes them too. Not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from contenders import Ours, StepOptions, Views, _sync
from torch.profiler import ProfilerActivity, profile

from byol_ray.presets import get_preset


def part_times(ours: Ours, views: Views, images: torch.Tensor, repeats: int) -> dict[str, float]:
    """Milliseconds per call of each part of the step, each part timed alone."""
    device = images.device
    totals = dict.fromkeys(("augment", "forward_backward", "optimizer", "ema"), 0.0)

    def timed(part: str, fn):
        _sync(device)
        started = time.perf_counter()
        out = fn()
        _sync(device)
        totals[part] += time.perf_counter() - started
        return out

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
        _sync(images.device)
    key = "self_cuda_time_total" if images.is_cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=rows)
    if images.is_cuda:
        table += "\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return table


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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    cfg = get_preset(args.preset)
    cfg.data.batch_size = args.batch
    cfg.data.image_size = args.image_size or cfg.data.image_size
    source = args.source or cfg.data.image_size * 8 // 7
    options = StepOptions(amp=args.amp, channels_last=args.channels_last)
    ours = Ours(cfg, device, options)
    views = Views(cfg, device)
    images = torch.randint(0, 256, (args.batch, 3, source, source), dtype=torch.uint8,
                           device=device)
    for _ in range(3):  # warm-up: allocator, cudnn autotuning, optimiser state
        ours.step(*views(images))
    parts = part_times(ours, views, images, args.repeats)
    step = sum(parts.values())
    label = f"{args.preset} batch {args.batch} {options.label()} on {device}"
    print(f"{label}: {step:.1f} ms per step ({1000 * args.batch / step:.0f} img/s)")
    for part, ms in parts.items():
        print(f"  {part:18s} {ms:8.2f} ms  {100 * ms / step:5.1f}%")
    print(top_ops(ours, views, images, steps=2, rows=args.rows))
    if args.json:
        args.json.write_text(json.dumps({"label": label, "ms": parts}, indent=1))


if __name__ == "__main__":
    main()
