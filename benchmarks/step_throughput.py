"""Training-step images/s, side by side in one process: ours vs a plain PyTorch loop, vs
lightly's BYOL building blocks and vs byol-pytorch (at equal numerics, checked), and ours
inside a one-worker Ray Train run, and inside a Ray Tune trial's own process (the launch's
in-trial form), each vs the same step in a plain process (Ray's overhead per step).

Run by `make bench`; not a test. Networks: ResNet-18 with the CIFAR stem at 32 px, batch 64
(the cifar10 preset's model) and the cpu-mini preset's CNN at its batch. Every contender gets
the same views and the same optimiser (see contenders.py); they take turns within each
repetition, and each ratio is the median of per-repetition ratios. Prints medians, spreads and
ratios with their targets; `--out` merges the results into a JSON file.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    Views,
    numerics,
    preset_config,
    random_images,
    shipped_options,
)
from harness import Timing, environment, merge_into, paired_ratio, ratio_line, time_steps

from byol_ray.core.config import Config

HERE = Path(__file__).resolve().parent
# Targets of issue 14: Ray Train's overhead and the margin over lightly's building blocks.
TARGETS = {"ray_train/plain": 0.97, "tune_trial/plain": 0.97, "ours/lightly": 1.10,
           "as shipped/lightly": 1.10}
RAY_FORMS = {"ray_train": "Ray Train", "tune_trial": "a Tune trial's own process"}
SHIPPED = "ours as shipped"  # the preset's own settings on this device (`shipped_options`)
NETWORKS = {  # name: (preset, batch, image size)
    "resnet18-cifar": ("cifar10", 64, 32),
    "cpu-mini": ("cpu-mini", 256, 16),
}


def network_config(name: str) -> Config:
    """The config of one of NETWORKS."""
    return preset_config(*NETWORKS[name])


def compare_steps(name: str, timing: dict) -> dict:
    """Every contender on one network: numerics against ours, then images/s and ratios."""
    cfg = network_config(name)
    device = torch.device("cpu")
    views, images = Views(cfg, device), random_images(cfg.data.batch_size, cfg.data.image_size)
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

    shipped = shipped_options(cfg, device)
    if shipped != StepOptions():  # else "as shipped" is ours at equal settings
        contenders[SHIPPED] = Ours(cfg, device, shipped)
    timings = time_steps({n: runner(c) for n, c in contenders.items()}, cfg.data.batch_size,
                         device, **timing)
    ratios = {f"ours/{other}": paired_ratio(timings["ours"], t)
              for other, t in timings.items() if other not in ("ours", SHIPPED)}
    if "lightly" in timings:  # lightly as in its example: fp32, default layout, eager
        ratios[f"{SHIPPED} ({shipped.label()})/lightly"] = paired_ratio(
            timings.get(SHIPPED, timings["ours"]), timings["lightly"])
    return {"batch": cfg.data.batch_size, "image_size": cfg.data.image_size,
            "encoder": cfg.model.encoder, "numerics": checked, "skipped": skipped,
            "images_per_s": {n: t.summary() for n, t in timings.items()}, "ratios": ratios}


class _BlockRunner:
    """Our step on one network, warmed up, timed a block of steps at a time (images/s)."""

    def __init__(self, name: str, device: torch.device, warmup: int, prepare=None):
        cfg = network_config(name)
        self.ours = Ours(cfg, device, StepOptions())
        if prepare is not None:
            prepare(self.ours.method)
        self.views = Views(cfg, device)
        self.images = random_images(cfg.data.batch_size, cfg.data.image_size, device)
        self.batch, self.device = cfg.data.batch_size, device
        self.block(warmup)

    def block(self, steps: int) -> float:
        t = time_steps({"ours": lambda: self.ours.step(*self.views(self.images))},
                       self.batch, self.device, warmup=0, reps=1, steps_per_rep=steps)
        return t["ours"].per_rep[0]


def _serve_blocks(runner: _BlockRunner, config: dict) -> None:
    """Time one block of steps per order from the driver's queue until it sends None."""
    orders, results = config["orders"], config["results"]
    results.put(environment(runner.device))
    while (steps := orders.get()) is not None:
        results.put(runner.block(steps))


def _ray_worker(config: dict) -> None:
    """Ray Train loop: our step as the Train launch runs it (prepare_model, the worker's
    threads), one block per order."""
    import ray.train
    import ray.train.torch

    torch.set_num_threads(config["threads"])
    runner = _BlockRunner(config["network"], ray.train.torch.get_device(), config["warmup"],
                          ray.train.torch.prepare_model)  # one worker: no DDP wrapper
    _serve_blocks(runner, config)
    with tempfile.TemporaryDirectory() as folder:  # Train V2 keeps metrics with checkpoints
        ray.train.report({"done": 1}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _tune_trial(config: dict) -> None:
    """Tune trainable: our step in the trial's own process, as the in-trial launch runs a
    one-worker loop (the worker's threads, no Train worker group), one block per order."""
    from ray import tune

    torch.set_num_threads(config["threads"])
    _serve_blocks(_BlockRunner(config["network"], torch.device("cpu"), config["warmup"]),
                  config)
    tune.report({"done": 1})


def _plain_process(conn, network: str, threads: int, warmup: int) -> None:
    """The same step in a plain Python process (no Ray): one block per order on `conn`,
    at the niceness of the first message (the Ray worker's)."""
    os.nice(max(0, conn.recv() - os.nice(0)))
    torch.set_num_threads(threads)
    runner = _BlockRunner(network, torch.device("cpu"), warmup)
    conn.send(environment(runner.device))
    while (steps := conn.recv()) is not None:
        conn.send(runner.block(steps))


def _fit_ray_side(form: str, config: dict, threads: int, storage: str) -> None:
    """Run the Ray side of the comparison until the driver's last order: a one-worker Ray
    Train run (`ray_train`, the trainer byol-ray runs) or a Tune trial (`tune_trial`)."""
    import ray.train
    from ray import tune

    from byol_ray.runtime.trainer import TrainerWithoutPlacementGroupCleaner

    if form == "ray_train":
        TrainerWithoutPlacementGroupCleaner(
            _ray_worker, train_loop_config=config,
            scaling_config=ray.train.ScalingConfig(
                num_workers=1, use_gpu=False, resources_per_worker={"CPU": threads}),
            run_config=ray.train.RunConfig(storage_path=storage, name="ray_overhead"),
        ).fit()
        return
    results = tune.Tuner(
        tune.with_resources(_tune_trial, {"CPU": threads}), param_space=config,
        run_config=tune.RunConfig(storage_path=storage, name="tune_overhead", verbose=0),
    ).fit()
    for result in results:
        if result.error:
            raise result.error


def ray_overhead(name: str, threads: int, blocks: int, steps: int, warmup: int,
                 form: str = "ray_train") -> dict:
    """Our step inside a one-worker Ray Train run (`form` ray_train), or inside a Ray Tune
    trial's own process (tune_trial), against the same step in a plain process.

    Both are separate processes with `threads` torch threads, the same OMP_NUM_THREADS and
    the same niceness (Ray
    starts its workers at nice 15, its `worker_niceness`: on a machine with other work, an
    un-niced process gets far more CPU, which is the machine's scheduling, not Ray Train's
    cost per step), warmed up, and they take turns:
    the driver orders one block of `steps` steps from each in turn (ABBA: who goes first
    alternates), each timed inside its own process, never both at once. The per-block ratio
    Ray / plain compares two neighbouring blocks, so the machine's drifting load cancels
    except within a block; the median ratio over `blocks` blocks is reported with its
    quartiles and range.
    """
    import multiprocessing as mp
    import threading

    import ray
    import ray.train
    from ray.util.queue import Queue

    from byol_ray.runtime.cluster import LOCAL_CLUSTER_ENV

    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=max(2, threads), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": LOCAL_CLUSTER_ENV | {"PYTHONPATH": path}})
    plain_end, child_end = mp.get_context("spawn").Pipe()
    plain = mp.get_context("spawn").Process(
        target=_plain_process, args=(child_end, name, threads, warmup), daemon=True)
    saved_omp = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # as Ray sets it for its worker
    plain.start()
    if saved_omp is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = saved_omp
    orders, results = Queue(), Queue()
    per_block: dict[str, list[float]] = {form: [], "plain": []}
    failure: list[BaseException] = []
    environments: dict[str, dict] = {}

    def conduct() -> None:
        """The driver's side of the turns, beside the Ray run in the main thread."""
        try:
            environments[form] = results.get(timeout=600)
            plain_end.send(environments[form]["nice"])
            environments["plain"] = plain_end.recv()
            for block in range(blocks):
                for who in (("plain", form) if block % 2 else (form, "plain")):
                    if who == "plain":
                        plain_end.send(steps)
                        per_block["plain"].append(plain_end.recv())
                    else:
                        orders.put(steps)
                        per_block[form].append(results.get(timeout=600))
        except BaseException as error:  # reported by the main thread, after fit()
            failure.append(error)
        finally:
            orders.put(None)

    try:
        with tempfile.TemporaryDirectory() as storage:
            conductor = threading.Thread(target=conduct, daemon=True)
            conductor.start()
            _fit_ray_side(form, {"network": name, "threads": threads, "warmup": warmup,
                                 "orders": orders, "results": results}, threads, storage)
            conductor.join()
    finally:
        plain_end.send(None)
        plain.join(timeout=60)
        ray.shutdown()
    if failure:
        raise failure[0]
    ratios = paired_ratio(Timing(per_block[form]), Timing(per_block["plain"]))
    quartiles = statistics.quantiles(ratios["per_rep"], n=4)
    return {"form": form, "threads": threads, "blocks": blocks, "steps_per_block": steps,
            "images_per_s": {k: Timing(v).summary() for k, v in per_block.items()},
            "ratio": ratios["median"], "ratio_quartiles": [quartiles[0], quartiles[2]],
            "ratio_range": [ratios["min"], ratios["max"]],
            "per_block_ratios": ratios["per_rep"], "environments": environments}


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
        for ratio, paired in r["ratios"].items():
            target = TARGETS.get("as shipped/lightly" if ratio.startswith(SHIPPED) else ratio)
            label = f"{ratio}, equal settings" if ratio == "ours/lightly" else ratio
            print(ratio_line(label, paired, target))
    for key, r in results.get("ray", {}).items():
        form = r.get("form", "ray_train")
        name, target = key.split(" ")[0], TARGETS[f"{form}/plain"]
        (q1, q3), (low, high) = r["ratio_quartiles"], r["ratio_range"]
        print(f"\n{name}, {r['threads']} thread(s), {r['blocks']} alternating blocks of "
              f"{r['steps_per_block']} steps: {RAY_FORMS[form]} "
              f"{r['images_per_s'][form]['median']:.1f} img/s, plain process "
              f"{r['images_per_s']['plain']['median']:.1f} img/s")
        print(f"  {form + '/plain':34s} {r['ratio']:6.3f}  (target >= {target:.2f}: "
              f"{'met' if r['ratio'] >= target else 'NOT met'}; per-block ratios: quartiles "
              f"{q1:.3f} to {q3:.3f}, range {low:.3f} to {high:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--steps", type=int, default=1, help="steps per repetition")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--no-ray", action="store_true",
                        help="skip the Ray Train and Tune-trial comparisons")
    parser.add_argument("--ray-forms", nargs="+", default=list(RAY_FORMS), choices=RAY_FORMS,
                        help="which Ray launches to compare with a plain process")
    parser.add_argument("--ray-blocks", type=int, default=30,
                        help="alternating blocks of Ray Train vs plain process")
    parser.add_argument("--ray-steps", type=int, default=3, help="steps per block")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    timing = {"warmup": args.warmup, "reps": args.reps, "steps_per_rep": args.steps}
    results: dict = {"step": {}, "timing": timing, "threads": args.threads}
    for name in args.networks:
        print(f"timing {name} ...", flush=True)
        results["step"][name] = compare_steps(name, timing)
    if not args.no_ray:
        results["ray"] = {}
        for form in args.ray_forms:  # "cpu-mini" keeps its key: earlier bench.json files
            print(f"timing cpu-mini in {RAY_FORMS[form]} ...", flush=True)
            key = "cpu-mini" if form == "ray_train" else f"cpu-mini {form}"
            results["ray"][key] = ray_overhead("cpu-mini", args.threads, args.ray_blocks,
                                               args.ray_steps, args.warmup + 2, form)
    report(results)
    merge_into(args.out, "step_throughput", results)
    print(f"\nresults merged into {args.out}")


if __name__ == "__main__":
    main()
