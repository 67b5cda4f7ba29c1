"""Training-step images/s, side by side in one process: ours vs a plain PyTorch loop, vs
lightly's BYOL building blocks and vs byol-pytorch (at equal numerics, checked), and ours
inside a one-worker Ray Train run vs the plain loop in this process (Ray's overhead).

Run by `make bench`; not a test. Networks: ResNet-18 with the CIFAR stem at 32 px, batch 64
(the cifar10 preset's model) and the cpu-mini preset's CNN at its batch. Every contender gets
the same views and the same optimiser (see contenders.py); they take turns within each
repetition. Prints medians, spreads and ratios with their targets; `--out` merges the results
into a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from contenders import (
    ByolPytorch,
    Contender,
    Lightly,
    Ours,
    Plain,
    StepOptions,
    Timing,
    Views,
    numerics,
    time_steps,
)

from byol_ray.config import Config
from byol_ray.presets import get_preset

HERE = Path(__file__).resolve().parent
# Targets of issue 14: Ray Train's overhead and the margin over lightly's building blocks.
TARGETS = {"ray_train/plain": 0.97, "ours/lightly": 1.10}
NETWORKS = {  # name: (preset, batch, image size)
    "resnet18-cifar": ("cifar10", 64, 32),
    "cpu-mini": ("cpu-mini", 256, 16),
}


def network_config(name: str) -> Config:
    preset, batch, size = NETWORKS[name]
    cfg = get_preset(preset)
    cfg.data.batch_size, cfg.data.image_size = batch, size
    return cfg


def _images(cfg: Config) -> torch.Tensor:
    size = cfg.data.image_size
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (cfg.data.batch_size, 3, size, size), dtype=torch.uint8,
                         generator=generator)


def compare_steps(name: str, timing: dict) -> dict:
    """Every contender on one network: numerics against ours, then images/s and ratios."""
    cfg = network_config(name)
    device = torch.device("cpu")
    views, images = Views(cfg, device), _images(cfg)
    ours = Ours(cfg, device, StepOptions())
    contenders: dict[str, Contender] = {"ours": ours, "plain": Plain(ours, StepOptions())}
    skipped = {}
    for cls in (Lightly, ByolPytorch):
        try:
            contenders[cls.name] = cls(ours, StepOptions())
        except ImportError as error:
            skipped[cls.name] = f"not installed ({error}); pip install -e '.[bench]'"
    checked = numerics(ours, [c for c in contenders.values() if c is not ours], *views(images))

    def runner(contender: Contender):
        return lambda: contender.step(*views(images))

    timings = time_steps({n: runner(c) for n, c in contenders.items()}, cfg.data.batch_size,
                         device, **timing)
    ratios = {f"ours/{other}": timings["ours"].median / t.median
              for other, t in timings.items() if other != "ours"}
    return {"batch": cfg.data.batch_size, "image_size": cfg.data.image_size,
            "encoder": cfg.model.encoder, "numerics": checked, "skipped": skipped,
            "images_per_s": {n: t.summary() for n, t in timings.items()}, "ratios": ratios}


def _ray_worker(config: dict) -> None:
    """Ray Train loop: our step as train_worker runs it (prepare_model, the worker's threads),
    timed with the same harness as the plain loop; reports images/s per repetition."""
    import ray.train
    import ray.train.torch

    torch.set_num_threads(config["threads"])
    cfg = network_config(config["network"])
    device = ray.train.torch.get_device()
    ours = Ours(cfg, device, StepOptions())
    ray.train.torch.prepare_model(ours.method)  # one worker: no DDP wrapper, as in the loop
    views, images = Views(cfg, device), _images(cfg).to(device)
    timing = time_steps({"ray": lambda: ours.step(*views(images))}, cfg.data.batch_size,
                        device, **config["timing"])
    with tempfile.TemporaryDirectory() as folder:  # Train V2 keeps metrics with checkpoints
        ray.train.report({"per_rep": timing["ray"].per_rep},
                         checkpoint=ray.train.Checkpoint.from_directory(folder))


def ray_overhead(name: str, timing: dict, threads: int, blocks: int = 3) -> dict:
    """Ours in a one-worker Ray Train run vs the plain loop here, both with `threads` threads.

    The machine's load drifts, and a Ray run cannot take turns with the plain loop step by
    step, so they alternate in `blocks` blocks (plain, then a Ray Train run) on one cluster.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from byol_ray.train.trainer import LOCAL_CLUSTER_ENV

    cfg = network_config(name)
    device = torch.device("cpu")
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    views, images = Views(cfg, device), _images(cfg)
    plain = Plain(Ours(cfg, device, StepOptions()), StepOptions())
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=max(2, threads), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": LOCAL_CLUSTER_ENV | {"PYTHONPATH": path}})
    in_ray, plain_t = Timing(), Timing()
    try:
        with tempfile.TemporaryDirectory() as storage:
            for block in range(blocks):
                t = time_steps({"plain": lambda: plain.step(*views(images))},
                               cfg.data.batch_size, device, **timing)
                plain_t.per_rep += t["plain"].per_rep
                trainer = TorchTrainer(
                    _ray_worker,
                    train_loop_config={"network": name, "timing": timing, "threads": threads},
                    scaling_config=ray.train.ScalingConfig(
                        num_workers=1, use_gpu=False, resources_per_worker={"CPU": threads}),
                    run_config=ray.train.RunConfig(storage_path=storage, name=f"block{block}"),
                )
                in_ray.per_rep += trainer.fit().metrics["per_rep"]
    finally:
        ray.shutdown()
        torch.set_num_threads(saved_threads)
    return {"threads": threads, "blocks": blocks,
            "images_per_s": {"ray_train": in_ray.summary(), "plain": plain_t.summary()},
            "ratio": in_ray.median / plain_t.median}


def merge_into(path: Path, key: str, value: dict) -> None:
    """Write `value` under `key` in the JSON file at `path`, keeping the other keys."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1) + "\n")


def report(results: dict) -> None:
    """Print medians, spreads and every ratio beside its target."""
    for name, r in results["step"].items():
        print(f"\n{name}: {r['encoder']}, batch {r['batch']} at {r['image_size']} px")
        for contender, t in r["images_per_s"].items():
            print(f"  {contender:14s} {t['median']:8.1f} img/s  spread {100 * t['spread']:5.1f}%")
        for other, n in r["numerics"].items():
            print(f"  numerics vs {other:12s} ({n['mode']} mode): ours {n['ours']:.6f} "
                  f"theirs {n['theirs']:.6f}  {'equal' if n['equal'] else 'DIFFERENT'}")
        for other, why in r["skipped"].items():
            print(f"  {other}: skipped, {why}")
        for ratio, value in r["ratios"].items():
            target = TARGETS.get(ratio)
            verdict = f"target >= {target:.2f}: {'met' if value >= target else 'NOT met'}" \
                if target else "no target"
            print(f"  {ratio:20s} {value:6.3f}  ({verdict})")
    for name, r in results.get("ray", {}).items():
        target = TARGETS["ray_train/plain"]
        print(f"\n{name}, {r['threads']} thread(s): Ray Train "
              f"{r['images_per_s']['ray_train']['median']:.1f} img/s, plain "
              f"{r['images_per_s']['plain']['median']:.1f} img/s")
        print(f"  ray_train/plain      {r['ratio']:6.3f}  (target >= {target:.2f}: "
              f"{'met' if r['ratio'] >= target else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per repetition")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Train comparison")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    timing = {"warmup": args.warmup, "reps": args.reps, "steps_per_rep": args.steps}
    results: dict = {"step": {}, "timing": timing, "threads": args.threads}
    for name in args.networks:
        print(f"timing {name} ...", flush=True)
        results["step"][name] = compare_steps(name, timing)
    if not args.no_ray:
        print("timing cpu-mini under Ray Train ...", flush=True)
        results["ray"] = {"cpu-mini": ray_overhead("cpu-mini", timing, args.threads)}
    report(results)
    merge_into(args.out, "step_throughput", results)
    print(f"\nresults merged into {args.out}")


if __name__ == "__main__":
    main()
