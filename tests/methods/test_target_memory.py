"""The target's remaining share of its initialisation, Pi_k tau_k (issue 30): the pure
function against a direct product, the run's step count against the loop's own loader, the
numbers the issue quotes, and where it is shown (show-config, train/sweep --dry-run)."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from byol_ray.cli.main import main, resolve_config
from byol_ray.core.config import DataConfig
from byol_ray.jobs.sweep.plan import PRESET_SWEEP_OVERRIDES
from byol_ray.learn.data import load_splits
from byol_ray.learn.target_memory import (
    PRETRAIN_IMAGES,
    TargetMemory,
    ema_horizon,
    init_share,
    log_init_share,
    optimiser_steps,
    pretrain_images,
    share_warning,
    tau_at,
)


def _loop_product(total: int, tau_base: float, schedule: str, steps: int | None = None) -> float:
    product = 1.0  # after_step(step + 1, total) for steps 0 .. K - 1
    for k in range(1, (total if steps is None else steps) + 1):
        product *= tau_at(k, total, tau_base, schedule)
    return product


@pytest.mark.parametrize("total", [1, 7, 100, 1000])
@pytest.mark.parametrize("tau_base,schedule",
                         [(0.99, "cosine"), (0.9, "cosine"), (0.996, "cosine"), (0.99, "constant"),
                          (1.0, "cosine"), (0.0, "constant")])
def test_share_is_the_product_of_the_taus_the_target_rule_applies(total, tau_base, schedule):
    expected = _loop_product(total, tau_base, schedule)
    assert init_share(total, tau_base, schedule) == pytest.approx(expected, rel=1e-9, abs=0)
    partial = _loop_product(total, tau_base, schedule, total // 2)
    assert init_share(total, tau_base, schedule, total // 2) == pytest.approx(partial, rel=1e-9)


def test_the_issue_s_numbers():
    """cpu-mini's old sweep trial (1437 images, batch 256, 20 epochs: 100 steps) kept ~0.61;
    the re-chosen one (batch 64, tau_base 0.97: 440 steps) ~e^-6.6; imagenet-300 (93,600 steps
    at 0.99) ~e^-468 by the approximation exp(-(1 - tau) K / 2)."""
    old = resolve_config("cpu-mini", [*PRESET_SWEEP_OVERRIDES["cpu-mini"], "data.batch_size=256",
                                      "method.tau_base=0.99"], check_paths=False)
    memory = TargetMemory.of(old)
    assert memory.steps == 100 and memory.share == pytest.approx(0.61, abs=0.01)
    assert memory.horizon == pytest.approx(100.0)
    trial = TargetMemory.of(resolve_config("cpu-mini", list(PRESET_SWEEP_OVERRIDES["cpu-mini"]),
                                           check_paths=False))
    assert trial.steps == 440 and trial.share <= 0.01
    assert trial.log_share == pytest.approx(-(1 - 0.97) * 440 / 2, rel=0.01)
    big = TargetMemory.of(resolve_config("imagenet-300", [], check_paths=False))
    assert big.steps == 93_600
    assert big.log_share == pytest.approx(-(1 - 0.99) * 93_600 / 2, rel=0.01)
    assert math.isfinite(big.log_share) and big.share < 1e-200
    assert ema_horizon(0.996) == pytest.approx(250.0) and ema_horizon(1.0) == math.inf
    assert log_init_share(195_000, 0.99) < -900  # cifar10: far below a float's range


def test_digits_pretraining_split_size_without_loading_matches_the_loaded_one():
    for dataset in ("digits", "colour_digits"):
        splits = load_splits(DataConfig(dataset=dataset, image_size=8))
        assert len(splits.pretrain) == PRETRAIN_IMAGES[dataset]
    held = resolve_config("cpu-mini", ["data.eval_on=validation"], check_paths=False)
    assert pretrain_images(held)[0] == len(load_splits(held.data).pretrain) == 1149


@pytest.mark.parametrize("images,batch,workers,accumulate,epochs",
                         [(1437, 256, 1, 1, 20), (1437, 256, 2, 1, 40), (1437, 64, 2, 4, 3),
                          (1001, 100, 4, 2, 5)])
def test_step_count_is_the_loop_s(images, batch, workers, accumulate, epochs):
    """The loader the pretraining loop builds (DistributedSampler and DataLoader, both
    drop_last), per rank, gives the same batches per epoch."""
    cfg = resolve_config("cpu-mini", [f"data.batch_size={batch}",
                                      f"scaling.num_workers={workers}",
                                      f"train.accumulate_steps={accumulate}",
                                      f"train.epochs={epochs}"], check_paths=False)
    data = TensorDataset(torch.zeros(images))
    for rank in range(workers):
        sampler = DistributedSampler(data, num_replicas=workers, rank=rank, drop_last=True)
        per_epoch = len(DataLoader(data, batch_size=batch // workers, sampler=sampler,
                                   drop_last=True))
        assert optimiser_steps(cfg, images) == epochs * per_epoch // accumulate


def test_methods_without_a_target_show_nothing():
    for overrides in (["method.name=simclr"], ["method.name=random_init"],
                      ["method.target_network=false"]):
        assert TargetMemory.of(resolve_config("cpu-mini", overrides, check_paths=False)) is None


def test_a_run_warns_only_when_more_than_one_percent_is_left():
    assert "0.608" in share_warning({"tau": 1.0, "target_init_share": 0.6081})
    assert share_warning({"tau": 1.0, "target_init_share": 0.009}) is None
    assert share_warning({"tau": 1.0, "target_init_share": 1.0}) is None  # tau = 1 by design
    assert share_warning({}) is None  # no target


def test_show_config_and_train_dry_run_print_the_share(capsys):
    assert main(["show-config", "--preset", "cpu-mini"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["preset"] == "cpu-mini"  # the line is a YAML comment
    assert "# target: 440 optimiser steps" in out and "share of its initialisation" in out
    assert main(["train", "--preset", "imagenet-300", "--dry-run"]) == 0
    assert "share of its initialisation left at the end e^-469.8" in capsys.readouterr().out
    assert main(["train", "--preset", "cpu-mini", "--set", "method.name=simclr",
                 "--dry-run"]) == 0
    assert "target" not in capsys.readouterr().out


def test_sweep_dry_run_shows_every_byol_trial_s_share(capsys):
    assert main(["sweep", "ema_decay", "--preset", "cpu-mini", "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.startswith("  byol-") and " steps  share " in line}
    assert set(rows) == {"byol-tau_base=1-s0", "byol-tau_base=0.99-s0", "byol-tau_base=0.97-s0",
                         "byol-tau_base=0-s0"}
    assert "share     0.11  " in rows["byol-tau_base=0.99-s0"] and "NOT FORGOTTEN" in rows[
        "byol-tau_base=0.99-s0"]
    assert "share  0.00128" in rows["byol-tau_base=0.97-s0"] and "NOT FORGOTTEN" not in rows[
        "byol-tau_base=0.97-s0"]
    assert "random-init" not in "".join(rows)


def test_the_running_product_survives_a_resume():
    """after_step's logged share is its own running product of the taus it applied; a method
    rebuilt mid-run (a resume) computes the earlier steps' part."""
    cfg = resolve_config("cpu-mini", ["model.width=1", "model.proj_hidden_dim=8",
                                      "model.proj_dim=4", "model.pred_hidden_dim=8"],
                         check_paths=False)
    from byol_ray.learn.methods import build_method

    fresh, resumed = build_method(cfg), build_method(cfg)
    logged = [fresh.after_step(k, 12)["target_init_share"] for k in range(1, 13)]
    assert logged[-1] == pytest.approx(init_share(12, cfg.method.tau_base), rel=1e-12)
    assert [resumed.after_step(k, 12)["target_init_share"] for k in range(7, 13)] == \
        pytest.approx(logged[6:], rel=1e-12)
