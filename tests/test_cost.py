"""The dry run's price (`jobs.sweep.cost`), pure: pretraining, monitor and protocols per trial
from the measured speeds, and what the seeds multiply."""

import math

import pytest

from byol_ray.core.config import apply_overrides, validate
from byol_ray.core.presets import get_preset
from byol_ray.jobs.sweep.cost import (
    DECODE_IMAGES_PER_S,
    describe_cost,
    total_cost,
    trial_cost,
)

TRAIN, TEST = 1_281_167, 50_000


def _cfg(*overrides: str):
    return validate(apply_overrides(get_preset("imagenet-300"), list(overrides)),
                    check_paths=False)


def test_a_trial_prices_pretraining_its_monitor_and_the_one_pass_linear_protocol():
    cfg = _cfg()
    none, linear = trial_cost(cfg), trial_cost(cfg, ["linear"])
    assert none.pretrain_hours == pytest.approx(300 * TRAIN / 1286 / 3600)  # ~83 GPU-hours
    # 7 kNN evaluations (untrained, then every 50 epochs) of 100,000 train + all test images,
    # and 300 collapse readings of 512 test images, at the CPU decoder's images/s
    embedded = 7 * (100_000 + TEST) + 300 * 512
    assert none.monitor_hours == pytest.approx(embedded / DECODE_IMAGES_PER_S / 3600)
    assert none.protocol_hours == 0 and none.lower_bound
    # one pass of 80 epochs over train, then the held-out 1% and test scored once
    assert linear.protocol_hours == pytest.approx(
        (80 * TRAIN + 0.01 * TRAIN + TEST) / DECODE_IMAGES_PER_S / 3600)
    assert 14 < linear.protocol_hours < 17  # six separate fits were ~92 GPU-hours
    assert linear.longest_trial_hours == pytest.approx(linear.gpu_hours / 8)  # 8 workers


def test_random_init_pays_its_protocols_and_a_cpu_run_nothing():
    cost = trial_cost(_cfg("method.name=random_init"), ["linear", "segment"])
    assert cost.pretrain_hours == 0 and cost.protocol_hours > 14
    assert cost.unpriced == ("segment",)
    assert trial_cost(_cfg("scaling.use_gpu=false"), ["linear"]).gpu_hours == 0


def test_the_line_says_what_is_a_lower_bound_and_the_three_seed_total():
    configs = [_cfg(f"train.seed={s}") for s in range(2)]
    total = total_cost(configs, ["linear"])
    line = describe_cost(total, 2, None, three_seeds=total.scaled(1.5),
                         per_trial=trial_cost(configs[0], ["linear"]))
    assert line.startswith("2 trials, at least ")
    assert "of pretraining" in line and "of protocols" in line and "a trial 84 + " in line
    assert f"with 3 seeds at least {math.ceil(total.gpu_hours * 1.5):,}" in line
    assert "NVIDIA H200" in line and "lower bounds" in line
    assert "never measured" in describe_cost(
        total_cost([_cfg("model.encoder=resnet18")]), 1, None)
