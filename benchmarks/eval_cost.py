"""Seconds per evaluation (kNN + collapse, and the linear probe) against the training seconds
of one epoch, per preset: evaluation must stay a small fraction of training.

cpu-mini is measured on its real data (digits). cifar10 and imagenet are measured on synthetic
splits of `--images` training images (a fraction of the real split) and scaled to the real
sizes: embedding, linear probe and training grow with the number of images, the kNN search
with train x test.

The linear protocol [P App. C.1], one pass against separate fits, side by side on cpu-mini's
real digits and its encoder: every rate's choice and refit heads on one forward of the frozen
encoder per batch (`byol_ray.jobs.protocols.linear_pass`), against the same worker code fitting
one head per job as the protocol's separate jobs did (each rate on train minus the held-out
part and scored there, then one refit on all of train scored on test). Taking turns, repeated;
Ray's start-up of each separate job is not counted, so the ratio is a lower bound of what the
protocol gains. Run by `make bench`; not a test.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from contenders import Ours, StepOptions, Views, preset_config
from harness import Timing, environment, merge_into, paired_ratio, ratio_line, seconds

from byol_ray.core.config import Config
from byol_ray.jobs.pretrain.evaluation import evaluate
from byol_ray.jobs.protocols.linear_pass import CHOICE, REFIT, LinearPass, run_pass
from byol_ray.jobs.protocols.run import linear_jobs
from byol_ray.learn.data import DatasetSplits, ImageTensorDataset, load_splits
from byol_ray.learn.metrics import knn_top1, linear_probe
from byol_ray.learn.models import build_encoder

# Real split sizes (train, test): CIFAR-10 and ImageNet (ILSVRC-2012 train / val).
FULL_SIZES = {"cifar10": (50_000, 10_000), "imagenet": (1_281_167, 50_000)}
CPU_BATCH = {"cpu-mini": 256, "cifar10": 64, "imagenet": 4}  # training batch measured here


def synthetic_splits(cfg: Config, n_train: int, n_test: int, classes: int = 10) -> DatasetSplits:
    """Random uint8 images with random labels, stored at the preset's image size."""
    size = cfg.data.image_size
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> ImageTensorDataset:
        images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                               generator=generator)
        return ImageTensorDataset(images, torch.randint(0, classes, (n,), generator=generator))

    train = split(n_train)
    return DatasetSplits(pretrain=train, train=train, test=split(n_test),
                         num_classes=classes, mean=(0.5,) * 3, std=(0.25,) * 3)


def measure(preset: str, n_train: int) -> dict:
    """Evaluation and epoch seconds of one preset, scaled to its real split sizes."""
    cfg = preset_config(preset, CPU_BATCH[preset])
    cpu = torch.device("cpu")
    if preset == "cpu-mini":
        splits = load_splits(cfg.data)
        scale_linear = scale_knn = 1.0
    else:
        full_train, full_test = FULL_SIZES[preset]
        n_test = max(cfg.eval.knn_k) + n_train // 5
        splits = synthetic_splits(cfg, n_train, n_test)
        scale_linear = full_train / n_train
        scale_knn = full_train * full_test / (n_train * n_test)
    ours = Ours(cfg, cpu, StepOptions())
    method = ours.method
    # The faster of two passes: the first also pays one-off costs (allocator, thread pools).
    knn_only = min(seconds(lambda: evaluate(method, splits, cfg, cpu, 0, 1, linear=False))
                   for _ in range(2))
    dim = method.projector[0].in_features
    bank = torch.randn(len(splits.train), dim)
    queries = torch.randn(len(splits.test), dim)
    labels = torch.randint(0, splits.num_classes, (len(splits.train),))
    knn = seconds(lambda: knn_top1(bank, labels, queries, labels[: len(queries)],
                                    ks=cfg.eval.knn_k, temperature=cfg.eval.knn_temperature,
                                    num_classes=splits.num_classes))
    # The probe timed by itself on features of the same sizes (the difference of two whole
    # evaluations came out negative on a busy machine).
    e = cfg.eval
    probe = seconds(lambda: linear_probe(bank, labels, queries, labels[: len(queries)],
                                          num_classes=splits.num_classes,
                                          epochs=e.linear_epochs, lr=e.linear_lr,
                                          batch_size=e.linear_batch_size, seed=0))
    views = Views(cfg, cpu)
    batch = torch.stack([splits.pretrain[i][0] for i in range(cfg.data.batch_size)])
    ours.step(*views(batch))  # warm-up
    steps = 3
    step_s = seconds(lambda: [ours.step(*views(batch)) for _ in range(steps)]) / steps
    epoch = step_s * len(splits.pretrain) / cfg.data.batch_size * scale_linear
    evaluation = (knn_only - knn) * scale_linear + knn * scale_knn
    linear = probe * scale_linear
    return {"measured_on": "digits" if preset == "cpu-mini" else f"synthetic {n_train} images",
            "scaled_to_real_sizes": preset != "cpu-mini", "epoch_s": epoch,
            "knn_eval_s": evaluation, "linear_probe_s": linear,
            "knn_eval_per_epoch": evaluation / epoch, "linear_probe_per_epoch": linear / epoch,
            "eval_every": cfg.eval.eval_every, "epochs": cfg.train.epochs,
            "eval_share_of_run": (evaluation * cfg.train.epochs / max(1, cfg.eval.eval_every)
                                  + linear) / (epoch * cfg.train.epochs)}


def linear_protocol(epochs: int, reps: int) -> dict:
    """Seconds of cpu-mini's linear protocol at `epochs`: one pass, and separate fits (one
    per rate on the choice set, one refit), taking turns `reps` times; the speed-up."""
    cfg = preset_config("cpu-mini", 256)
    cfg.data.max_eval_images = 0  # every labelled image, as `byol-ray eval` runs it
    splits = load_splits(cfg.data)
    labels = torch.tensor([int(splits.train[i][1]) for i in range(len(splits.train))])
    choice, _ = linear_jobs(cfg, None, labels)
    torch.manual_seed(0)
    state = build_encoder(cfg.model)[0].state_dict()
    p, cpu = cfg.protocol, torch.device("cpu")
    job = LinearPass(cfg, state, p.linear_lrs, choice.fit_indices, choice.score_indices,
                     epochs, p.linear_batch_size, seed=0).as_dict()
    separate_jobs = [job | {"lrs": (lr,), "fit_sets": (CHOICE,)} for lr in p.linear_lrs]
    separate_jobs.append(job | {"lrs": (p.linear_lrs[0],), "fit_sets": (REFIT,)})
    runs = {"one pass": lambda: run_pass(job, state, 0, 1, cpu),
            "separate fits": lambda: [run_pass(j, state, 0, 1, cpu) for j in separate_jobs]}
    took = {name: Timing() for name in runs}  # rate: protocols per second
    for rep in range(reps):
        for name in list(runs)[rep % 2:] + list(runs)[: rep % 2]:
            took[name].per_rep.append(1 / seconds(runs[name]))
    ratio = paired_ratio(took["one pass"], took["separate fits"])
    return {"preset": "cpu-mini", "encoder": cfg.model.encoder, "epochs": epochs,
            "lrs": list(p.linear_lrs), "batch": p.linear_batch_size,
            "train_images": len(splits.train), "held_out": len(choice.score_indices),
            "one_pass_s": [1 / r for r in took["one pass"].per_rep],
            "separate_s": [1 / r for r in took["separate fits"].per_rep],
            "speedup": ratio, "environment": environment(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu-mini", "cifar10"],
                        choices=list(CPU_BATCH))
    parser.add_argument("--images", type=int, default=512,
                        help="synthetic training images for cifar10/imagenet")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--linear-epochs", type=int, default=5,
                        help="epochs of the linear protocol timed (its seconds grow linearly)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the linear timing")
    parser.add_argument("--only-linear", action="store_true",
                        help="time the linear protocol only")
    args = parser.parse_args()
    print(f"linear protocol on cpu-mini, {args.linear_epochs} epochs ...", flush=True)
    linear = linear_protocol(args.linear_epochs, args.reps)
    print(f"linear protocol, cpu-mini ({linear['encoder']}, {linear['train_images']} train "
          f"images, {len(linear['lrs'])} rates, {args.linear_epochs} epochs): one pass "
          f"{statistics.median(linear['one_pass_s']):.1f} s, separate fits "
          f"{statistics.median(linear['separate_s']):.1f} s")
    print(ratio_line("one pass speed-up (x)", linear["speedup"], target=3.0))
    merge_into(args.out, "eval_cost_linear_protocol", linear)
    if args.only_linear:
        return
    results = {}
    for preset in args.presets:
        print(f"measuring {preset} ...", flush=True)
        r = results[preset] = measure(preset, args.images if preset != "imagenet" else 64)
        scaled = " (scaled to the real split sizes)" if r["scaled_to_real_sizes"] else ""
        print(f"{preset}{scaled}: epoch {r['epoch_s']:.1f} s, kNN evaluation "
              f"{r['knn_eval_s']:.1f} s ({100 * r['knn_eval_per_epoch']:.0f}% of an epoch), "
              f"linear probe {r['linear_probe_s']:.1f} s "
              f"({100 * r['linear_probe_per_epoch']:.0f}% of an epoch); with an evaluation "
              f"every {r['eval_every']} epochs, evaluation is "
              f"{100 * r['eval_share_of_run']:.1f}% of the run")
    merge_into(args.out, "eval_cost", results)
    print(f"results merged into {args.out}")


if __name__ == "__main__":
    main()
