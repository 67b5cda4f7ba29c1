"""When the collapse monitor ends a run (`learn.collapse_stop`), pure, on the readings it took
in real runs: cpu-mini's sweep trials (20 epochs), `eval/embedding_std` after every epoch
(index 0: the untrained encoder), seed 0, measured by `benchmarks/collapse_sequences.py` on
2026-12-07 (benchmarks/results/collapse_sequences_cpu-mini_2026-12-07.json)."""

import math

import pytest

from byol_ray.core.config import EvalConfig
from byol_ray.learn.collapse_stop import CollapseStop, stop_epoch, stopped_text

BYOL = [0.049, 0.142, 0.356, 0.303, 0.485, 0.348, 0.610, 0.599, 0.646, 0.636, 0.640, 0.701,
        0.693, 0.702, 0.767, 0.777, 0.760, 0.770, 0.771, 0.773, 0.772]
# Table 5b (predictor, no target, beta = 0): collapses [P: 0.3 %]
PREDICTOR_NO_TARGET = [0.049, 0.026, 0.054, 0.035, 0.019, 0.013, 0.010, 0.010, 0.002, 0.002, 0.001,
                       0.001, 0.001, 0.003, 0.004, 0.002, 0.002, 0.002, 0.002, 0.002, 0.002]
# Table 5b (no predictor, target, beta = 0): does not collapse in 20 epochs here [P: 0.2 %]
NO_PREDICTOR_TARGET = [0.049, 0.026, 0.039, 0.068, 0.074, 0.067, 0.060, 0.050, 0.048, 0.042, 0.039,
                       0.036, 0.040, 0.033, 0.034, 0.033, 0.036, 0.035, 0.036, 0.037, 0.038]
# Table 5a tau = 0 held constant: does not collapse in 20 epochs here
TAU_0 = [0.049, 0.125, 0.156, 0.361, 0.521, 0.526, 0.625, 0.663, 0.620, 0.485, 0.690, 0.686, 0.664,
         0.752, 0.715, 0.749, 0.773, 0.780, 0.782, 0.782, 0.781]


def _epochs(readings: list[float]) -> list[tuple[int, float]]:
    return list(enumerate(readings))


def _defaults() -> tuple[float, int]:
    e = EvalConfig()
    return e.collapse_threshold, e.collapse_patience


def test_the_defaults_stop_a_collapsed_run_soon_and_never_a_healthy_one():
    threshold, patience = _defaults()
    assert stop_epoch(_epochs(BYOL), threshold, patience) is None
    assert min(BYOL) > 2 * threshold  # the untrained encoder is the lowest healthy reading
    for healthy in (NO_PREDICTOR_TARGET, TAU_0):
        assert stop_epoch(_epochs(healthy), threshold, patience) is None
    first = next(i for i, s in enumerate(PREDICTOR_NO_TARGET) if s < threshold)
    assert stop_epoch(_epochs(PREDICTOR_NO_TARGET), threshold, patience) == first + patience - 1
    assert first + patience - 1 < len(PREDICTOR_NO_TARGET) - 1  # before the run's end


def test_a_dip_shorter_than_the_patience_does_not_stop_and_nan_counts_as_collapsed():
    dip = [0.5, 0.01, 0.01, 0.4, 0.01, 0.01, 0.5]
    assert stop_epoch(_epochs(dip), 0.02, 3) is None
    assert stop_epoch(_epochs(dip), 0.02, 2) == 2
    assert stop_epoch(_epochs([0.5, math.nan, 0.01, 0.0]), 0.02, 3) == 3
    rule = CollapseStop(0.02, 1)
    assert not rule.observe(1, 0.5) and rule.observe(2, 0.0) and rule.observe(3, 0.9)
    assert rule.stopped_at == 2  # once stopped, it stays stopped
    with pytest.raises(ValueError, match="patience"):
        CollapseStop(0.02, 0)
    assert stopped_text(7) == "collapsed at epoch 7, stopped"


def test_every_preset_stops_collapsed_runs_by_default_and_set_turns_it_off():
    from byol_ray.core.config import apply_overrides
    from byol_ray.core.presets import PRESETS, get_preset

    for name in PRESETS:
        e = get_preset(name).eval
        assert e.collapse_stop and e.collapse_every >= 1, name
    assert not apply_overrides(get_preset("cpu-mini"), ["eval.collapse_stop=false"]
                               ).eval.collapse_stop


def test_a_collapse_reading_between_evaluations_leaves_the_run_s_random_stream_alone():
    """The reading's DataLoader draws from the global generator, as the augmentations do: it
    must not change a run that does not stop (it is restored)."""
    import torch

    from byol_ray.cli.main import resolve_config
    from byol_ray.jobs.pretrain.collapse_watch import CollapseWatch
    from byol_ray.learn.data import load_splits
    from byol_ray.learn.methods import build_method

    cfg = resolve_config("cpu-mini", [])
    torch.manual_seed(cfg.train.seed)  # the worker's initial weights, whatever ran before
    watch = CollapseWatch(cfg, build_method(cfg), load_splits(cfg.data, cfg.augment),
                          torch.device("cpu"), 0, 1)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    metrics = {}
    assert not watch.after_epoch(1, metrics, evaluated=False)
    assert torch.equal(torch.rand(3), expected)
    assert metrics["eval/embedding_std"] > cfg.eval.collapse_threshold  # untrained: not collapsed
