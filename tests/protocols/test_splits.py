"""Which images each protocol fits on, chooses on and reports on (pure functions, no Ray)."""

import torch

from byol_ray.cli.main import resolve_config
from byol_ray.jobs.protocols.run import choose_lr, linear_jobs
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
