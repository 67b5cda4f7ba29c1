"""Where a cpu-mini trial's training time goes, change by change (issue 29), side by side in
one process: the training step of a sweep trial's config (the two views T, T' of 256 real
digits at 16 px, then forward, backward, LARS and the EMA, as `jobs.pretrain.worker` runs it),
with each change that came with the paper-following grids undone alone:

- colour ops: the reference's (additive brightness, HSV saturation and hue) vs torchvision's;
- batch groups: BN within groups of 64 rows (`data.group_size=64`, Fig. 3a's cell) vs none;
- target init: an independent draw vs a copy of the online network;
- the 16 px blur: three taps (before issue 30) vs the reference's single tap (none);
- the colour jitter's 16 passes over every row (before the fix of issue 29; CUDA's path) vs
  4 passes over the rows whose turn it is (the CPU path; the same values, tests/data).

The views alone are timed too (augmentation's share of a step), each at 1 and 2 torch threads.
A ratio is time with the change / time without it (median of per-repetition ratios; > 1: the
change costs that factor). Run by `make bench`; not a test.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from harness import environment, merge_into, paired_ratio, time_steps

from byol_ray.cli.main import resolve_config
from byol_ray.core.config import Config
from byol_ray.jobs.sweep.plan import PRESET_SWEEP_OVERRIDES
from byol_ray.learn.data import BatchAugment, augment, load_splits, view_params
from byol_ray.learn.methods import build_method
from byol_ray.learn.models.batch_groups import within_groups
from byol_ray.learn.optim import build_optimizer

CPU = torch.device("cpu")
# name: overrides on top of a cpu-mini sweep trial's config, and the blur's radius (None: the
# augmentation's own, 0 at 16 px).
VARIANTS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "16-pass jitter": ((), None),
    "trial as shipped": ((), None),
    "torchvision colour ops": (("augment.colour_ops=torchvision",), None),
    "groups of 64": (("data.group_size=64",), None),
    "copied target": (("method.target_init=copy",), None),
    "3-tap blur at 16 px": ((), 1),
}
# ratio label: (with the change, without it)
CHANGES = {
    "reference / torchvision colour ops": ("trial as shipped", "torchvision colour ops"),
    "groups of 64 / none": ("groups of 64", "trial as shipped"),
    "independent / copied target": ("trial as shipped", "copied target"),
    "3-tap / 1-tap blur": ("3-tap blur at 16 px", "trial as shipped"),
    "16-pass / 4-pass jitter": ("16-pass jitter", "trial as shipped"),
}


def trial_config(overrides: tuple[str, ...]) -> Config:
    """A cpu-mini sweep trial's config (`PRESET_SWEEP_OVERRIDES`) with `overrides`."""
    return resolve_config("cpu-mini", [*PRESET_SWEEP_OVERRIDES["cpu-mini"], *overrides],
                          check_paths=False)


class TrialStep:
    """One optimiser step of a trial, as the worker takes it: views, forward, backward, LARS,
    EMA (no DDP: a cpu-mini trial has one worker)."""

    def __init__(self, cfg: Config, images: torch.Tensor, blur_radius: int | None):
        torch.manual_seed(0)
        method = build_method(cfg)
        if cfg.data.group_size:
            method = within_groups(method, cfg.data.group_size, cfg.data.batch_size, CPU)
        self.method = method.train()
        self.lr = cfg.optim.lr(cfg.data.batch_size)
        self.optimizer = build_optimizer(self.method, cfg.optim, self.lr)
        view_t, view_t_prime = view_params(cfg.augment)
        size, mean, std = cfg.data.image_size, (0.5,) * 3, (0.25,) * 3
        self.t, self.t_prime = BatchAugment(view_t, size, mean, std), BatchAugment(
            view_t_prime, size, mean, std)
        if blur_radius is not None:
            self.t.blur_radius = self.t_prime.blur_radius = blur_radius
        self.images, self.steps = images, 0

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.t(self.images), self.t_prime(self.images)

    def step(self) -> None:
        loss = self.method(*self.views())["loss"]
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        self.method.after_step(self.steps, 10_000)


class SixteenPassStep(TrialStep):
    """The trial's step with the colour jitter as it was: every row through all 16 passes."""

    def views(self) -> tuple[torch.Tensor, torch.Tensor]:
        fast = augment._jitter
        augment._jitter = augment._jitter_every_row  # contenders take turns: one at a time
        try:
            return super().views()
        finally:
            augment._jitter = fast


def measure(threads: int, images: torch.Tensor, timing: dict) -> dict:
    """Every variant's step and views at `threads` torch threads: images/s and the ratios."""
    torch.set_num_threads(threads)
    steps = {name: (SixteenPassStep if name == "16-pass jitter" else TrialStep)(
                 trial_config(overrides), images, radius)
             for name, (overrides, radius) in VARIANTS.items()}
    batch = len(images)
    result = {}
    for part, call in (("step", lambda s: s.step), ("views", lambda s: s.views)):
        runners: dict[str, Callable[[], object]] = {n: call(s) for n, s in steps.items()}
        if part == "views":  # the network changes do not touch the views
            runners = {n: runners[n] for n in ("trial as shipped", "torchvision colour ops",
                                               "3-tap blur at 16 px", "16-pass jitter")}
        timings = time_steps(runners, batch, CPU, **timing)
        ratios = {label: paired_ratio(timings[without], timings[with_])  # rate ratio = time
                  for label, (with_, without) in CHANGES.items()
                  if with_ in timings and without in timings}
        result[part] = {"images_per_s": {n: t.summary() for n, t in timings.items()},
                        "time_ratios": ratios}
    return result


def report(results: dict) -> None:
    """Images/s per variant and the time ratio of each change, per thread count."""
    for threads, parts in results["threads"].items():
        for part, r in parts.items():
            print(f"\n{part}, {threads} torch thread(s), batch {results['batch']} at 16 px:")
            for name, t in r["images_per_s"].items():
                print(f"  {name:28s} {t['median']:8.1f} img/s  spread {100 * t['spread']:5.1f}%")
            for label, ratio in r["time_ratios"].items():
                print(f"  time {label:38s} {ratio['median']:6.3f}  (per repetition "
                      f"{ratio['min']:.3f} to {ratio['max']:.3f})")
    shipped = results["threads"]
    if "1" in shipped and "2" in shipped:
        one = shipped["1"]["step"]["images_per_s"]["trial as shipped"]["median"]
        two = shipped["2"]["step"]["images_per_s"]["trial as shipped"]["median"]
        print(f"\nthe shipped step at 1 thread takes {two / one:.2f} x the time of 2 threads "
              "(not interleaved: the machine's load may differ between the two)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2, help="steps per repetition")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    cfg = trial_config(())
    images = load_splits(cfg.data).pretrain.images[: cfg.data.batch_size]  # real grey digits
    timing = {"warmup": args.warmup, "reps": args.reps, "steps_per_rep": args.steps}
    results: dict = {"batch": len(images), "timing": timing, "threads": {},
                     "environment": environment(CPU)}
    for threads in args.threads:
        print(f"timing a cpu-mini trial's step, {threads} thread(s) ...", flush=True)
        results["threads"][str(threads)] = measure(threads, images, timing)
    report(results)
    merge_into(args.out, "trial_step_cost", results)
    print(f"\nresults merged into {args.out}")


if __name__ == "__main__":
    main()
