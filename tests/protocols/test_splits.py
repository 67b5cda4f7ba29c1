"""Which images each protocol fits on, chooses on and reports on (pure functions, no Ray)."""

import pytest
import torch

from byol_ray.cli.main import resolve_config
from byol_ray.core.config import ConfigError
from byol_ray.jobs.protocols.run import choose_lr, finetune_jobs, linear_jobs
from byol_ray.jobs.protocols.splits import balanced_subset, holdout_split, labels_of
from byol_ray.learn.data import load_splits


def _digits_labels() -> torch.Tensor:
    return labels_of(load_splits(resolve_config("cpu-mini", []).data).train)


def test_holdout_is_stratified_disjoint_and_seeded():
    labels = _digits_labels()
    fit, held = holdout_split(labels, 0.2, seed=0)
    assert not set(fit) & set(held) and sorted(fit + held) == list(range(len(labels)))
    for c in range(10):
        share = int((labels[held] == c).sum()) / int((labels == c).sum())
        assert abs(share - 0.2) < 0.01
    assert holdout_split(labels, 0.2, seed=0) == (fit, held)
    assert holdout_split(labels, 0.2, seed=1)[1] != held


def test_label_subsets_are_class_balanced_and_identical_for_the_same_seed():
    labels = _digits_labels()
    for fraction, per_class in ((0.01, 1), (0.1, 14)):
        subset = balanced_subset(labels, fraction, seed=0)
        counts = torch.bincount(labels[subset], minlength=10)
        assert counts.tolist() == [per_class] * 10, fraction
        assert balanced_subset(labels, fraction, seed=0) == subset
        assert balanced_subset(labels, fraction, seed=1) != subset
    assert set(balanced_subset(labels, 0.01, 0)) <= set(range(len(labels)))


def test_the_learning_rate_is_chosen_on_held_out_train_images_never_on_test():
    cfg = resolve_config("cpu-mini", [])
    labels = _digits_labels()
    choice, final = linear_jobs(cfg, None, labels)
    assert choice.score_split == "train" and choice.score_indices
    assert not set(choice.fit_indices) & set(choice.score_indices)
    assert abs(len(choice.score_indices) - 0.2 * len(labels)) < 10
    assert final.score_split == "test" and final.score_indices is None
    assert final.fit_indices == list(range(len(labels)))
    assert choose_lr({0.4: 80.0, 0.3: 91.0, 0.2: 91.0, 0.1: 50.0}) == 0.3  # ties: first listed


def test_fine_tuning_chooses_its_rate_on_held_out_labelled_images_never_on_test():
    cfg = resolve_config("cpu-mini", ["protocol.fraction=0.1"])
    labels = _digits_labels()
    choice, final = finetune_jobs(cfg, None, labels)
    subset = balanced_subset(labels, 0.1, seed=0)
    assert final.fit_indices == subset and final.score_split == "test"
    assert final.score_indices is None and final.mode == choice.mode == "finetune"
    assert choice.score_split == "train"  # the held-out images are labelled train images
    fit, held = set(choice.fit_indices), set(choice.score_indices)
    assert not fit & held and fit | held == set(subset)
    assert torch.bincount(labels[choice.score_indices]).tolist() == [3] * 10  # 0.2 of 14
    assert finetune_jobs(cfg, None, labels)[0].score_indices == choice.score_indices
    other = resolve_config("cpu-mini", ["protocol.fraction=0.1", "protocol.subset_seed=1"])
    assert finetune_jobs(other, None, labels)[0].score_indices != choice.score_indices


def test_one_fine_tuning_rate_holds_nothing_out_and_too_few_labels_for_a_choice_say_so():
    labels = _digits_labels()
    one = resolve_config("cpu-mini", ["protocol.finetune_lrs=[0.05]"])
    choice, final = finetune_jobs(one, None, labels)  # 1%: one image per class, all fitted
    assert choice is None and len(final.fit_indices) == 10
    with pytest.raises(ConfigError) as error:  # 1% and a grid: nothing left to hold out
        finetune_jobs(resolve_config("cpu-mini", []), None, labels)
    assert error.value.field == "protocol.fraction"
    assert "1 labelled image per class" in str(error.value) and "--fraction" in str(error.value)
