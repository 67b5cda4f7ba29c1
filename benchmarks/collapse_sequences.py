"""What the collapse monitor (`eval/embedding_std`, `learn.metrics.embedding_std`) reads after
every epoch of cpu-mini's sweep trials (20 epochs, the sweep's settings) in the cells that
collapse and those that do not: the measurements behind `eval.collapse_threshold` and
`eval.collapse_patience`. The worker's loop without Ray (one process, the same step and
evaluation). Not a test; `--out` keeps the sequences as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

from byol_ray.core.config import apply_overrides, validate
from byol_ray.core.presets import get_preset
from byol_ray.jobs.pretrain.evaluation import _FeaturesAndProjection
from byol_ray.jobs.pretrain.step import train_micro_batch
from byol_ray.jobs.sweep.plan import PRESET_SWEEP_OVERRIDES
from byol_ray.learn.data import ViewPair, eval_transform, load_splits, view_params
from byol_ray.learn.methods import build_method
from byol_ray.learn.metrics import embedding_std, extract_features
from byol_ray.learn.optim import build_optimizer, lr_at

# cpu-mini's cells of Tables 5a/5b whose collapse the paper reports or whose baseline it is.
CELLS = {
    "byol": [],
    "pred=yes,target=no,beta=0": ["method.predictor=True", "method.target_network=False",
                                  "method.beta=0", "method.temperature=0.1"],
    "pred=no,target=yes,beta=0": ["method.predictor=False", "method.target_network=True",
                                  "method.beta=0", "method.temperature=0.1"],
    "tau=0": ["method.tau_base=0.0", "method.tau_schedule=constant"],
}


def sequence(overrides: list[str], seed: int) -> list[float]:
    """embedding_std after each epoch (index 0: the untrained encoder)."""
    cfg = validate(apply_overrides(get_preset("cpu-mini"), [
        *PRESET_SWEEP_OVERRIDES["cpu-mini"], f"train.seed={seed}", *overrides]))
    torch.manual_seed(cfg.train.seed)
    splits = load_splits(cfg.data, cfg.augment)
    method = build_method(cfg)
    loader = torch.utils.data.DataLoader(splits.pretrain, batch_size=cfg.data.batch_size,
                                         shuffle=True, drop_last=True)
    total = cfg.train.epochs * len(loader)
    peak = cfg.optim.lr(cfg.data.batch_size)
    warmup = round(cfg.optim.warmup_epochs * len(loader))
    optimizer = build_optimizer(method, cfg.optim, peak)
    views = ViewPair(view_params(cfg.augment), cfg.data.image_size, splits.mean, splits.std)
    def reading() -> float:  # what the monitor reads: the test split's online projections
        both, _ = extract_features(_FeaturesAndProjection(method.encoder, method.projector),
                                   splits.test, transform)
        return embedding_std(both[:, dim:])

    transform = partial(eval_transform, image_size=cfg.data.image_size, mean=splits.mean,
                        std=splits.std)
    dim = method.projector[0].in_features
    stds = [reading()]
    for epoch in range(cfg.train.epochs):
        method.train()
        for i, (batch, _) in enumerate(loader):
            _, step = train_micro_batch(method, optimizer, views(batch), epoch * len(loader) + i,
                                        1, lambda k: lr_at(k, total, warmup, peak))
            method.after_step(step + 1, total)
        stds.append(reading())
    return stds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--out", type=Path, default=Path("collapse_sequences.json"))
    args = parser.parse_args()
    results = {}
    for name in args.cells:
        overrides = CELLS[name]
        for seed in args.seeds:
            started = time.perf_counter()
            stds = results[f"{name} seed {seed}"] = sequence(overrides, seed)
            print(f"{name} seed {seed} ({time.perf_counter() - started:.0f} s): "
                  + " ".join(f"{s:.3f}" for s in stds), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
