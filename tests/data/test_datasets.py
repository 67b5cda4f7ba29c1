"""load_splits on small files written in each dataset's real on-disk format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.stl10
from PIL import Image

from byol_ray.core.config import DataConfig
from byol_ray.learn.data import DatasetSplits, check_dataset, load_splits


def _exists_only(fpath, md5=None) -> bool:
    return os.path.isfile(fpath)


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks the md5 of the real CIFAR/STL-10 files, which tiny test files cannot
    match; keep its existence check but skip the hash (the real check is tested below)."""
    for module in (torchvision.datasets.cifar, torchvision.datasets.stl10):
        monkeypatch.setattr(module, "check_integrity", _exists_only)


def _check_items(dataset, side: int, labels: set[int]) -> None:
    for i in (0, len(dataset) - 1):
        image, label = dataset[i]
        assert image.dtype == torch.uint8 and image.shape == (3, side, side)
        assert isinstance(label, int) and label in labels


# --------------------------------------------------------------------------- CIFAR


def _pickle(path: Path, obj) -> None:
    # The real batches are Python 2 pickles whose str keys torchvision reads back as str
    # (encoding="latin1"); protocol 2 with str keys gives the same result.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6) -> np.ndarray:
    """cifar-10-batches-py with 5 train batches; returns the first train batch's data."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    first = None
    for b in range(1, 6):
        data = _cifar_images(per_batch, b)
        first = data if first is None else first
        labels = [(b + i) % 10 for i in range(per_batch)]
        _pickle(folder / f"data_batch_{b}", {"data": data, "labels": labels,
                                             "batch_label": f"training batch {b} of 5"})
    _pickle(folder / "test_batch", {"data": _cifar_images(n_test, 9),
                                    "labels": [i % 10 for i in range(n_test)]})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                      "num_cases_per_batch": per_batch, "num_vis": 3072})
    return first


def write_cifar100(root: Path, n_train: int = 12, n_test: int = 5) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        fine = [(7 * i) % 100 for i in range(n)]
        _pickle(folder / name, {"data": _cifar_images(n, seed), "fine_labels": fine,
                                "coarse_labels": [f // 5 for f in fine]})
    _pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                              "coarse_label_names": [f"c{i}" for i in range(20)]})


def test_cifar10_loads_in_memory(tmp_path, no_md5):
    first = write_cifar10(tmp_path)
    splits = load_splits(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert isinstance(splits, DatasetSplits)
    assert splits.pretrain is splits.train
    assert (len(splits.train), len(splits.test), splits.num_classes) == (20, 6, 10)
    _check_items(splits.train, 32, set(range(10)))
    _check_items(splits.test, 32, set(range(10)))
    image, label = splits.train[1]
    assert torch.equal(image, torch.from_numpy(first[1].reshape(3, 32, 32)))
    assert label == 2
    assert splits.mean == pytest.approx((0.4914, 0.4822, 0.4465))


def test_cifar100_fine_labels(tmp_path, no_md5):
    write_cifar100(tmp_path)
    splits = load_splits(DataConfig(dataset="cifar100", root=str(tmp_path)))
    assert (len(splits.train), len(splits.test), splits.num_classes) == (12, 5, 100)
    assert [splits.train[i][1] for i in range(3)] == [0, 7, 14]
    _check_items(splits.test, 32, set(range(100)))


def test_cifar_md5_mismatch_is_a_clear_error(tmp_path):
    write_cifar10(tmp_path)  # no no_md5 fixture: torchvision's real integrity check runs
    with pytest.raises(ValueError, match="data.root.*md5"):
        load_splits(DataConfig(dataset="cifar10", root=str(tmp_path)))


def test_cifar_missing_folder_and_file(tmp_path, no_md5):
    with pytest.raises(FileNotFoundError, match="data.root.*'cifar-10-batches-py'.*download"):
        load_splits(DataConfig(dataset="cifar10", root=str(tmp_path)))
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="data.root.*test_batch"):
        load_splits(DataConfig(dataset="cifar10", root=str(tmp_path)))


def test_cifar_corrupt_pickle(tmp_path, no_md5):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data.root.*expected format"):
        load_splits(DataConfig(dataset="cifar100", root=str(tmp_path)))


@pytest.mark.parametrize("root", ["", "does-not-exist"])
def test_missing_root(tmp_path, root):
    path = str(tmp_path / root) if root else ""
    with pytest.raises(FileNotFoundError, match="data.root"):
        load_splits(DataConfig(dataset="cifar10", root=path))


def test_max_eval_images_caps_labelled_splits(tmp_path, no_md5):
    write_cifar10(tmp_path)
    cfg = DataConfig(dataset="cifar10", root=str(tmp_path), max_eval_images=5)
    a, b = load_splits(cfg), load_splits(cfg)
    assert (len(a.pretrain), len(a.train), len(a.test)) == (20, 5, 5)
    assert a.train.indices == b.train.indices  # deterministic subset
    assert all(torch.equal(a.test[i][0], b.test[i][0]) for i in range(5))


# --------------------------------------------------------------------------- STL-10


def _stl_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)


def _write_x(path: Path, images: np.ndarray) -> None:
    # STL-10 stores each channel column-major: on disk (N, 3, W, H).
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def write_stl10(root: Path) -> dict[str, np.ndarray]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    arrays = {"train": _stl_images(4, 1), "unlabeled": _stl_images(3, 2), "test": _stl_images(5, 3)}
    for name, images in arrays.items():
        _write_x(folder / f"{name}_X.bin", images)
    (folder / "train_y.bin").write_bytes(bytes([1, 2, 10, 3]))  # labels are 1..10 on disk
    (folder / "test_y.bin").write_bytes(bytes([10, 9, 8, 7, 1]))
    (folder / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    return arrays


def test_stl10_splits(tmp_path, no_md5):
    arrays = write_stl10(tmp_path)
    splits = load_splits(DataConfig(dataset="stl10", root=str(tmp_path)))
    assert (len(splits.pretrain), len(splits.train), len(splits.test)) == (7, 4, 5)
    assert splits.num_classes == 10
    assert [splits.pretrain[i][1] for i in range(7)] == [0, 1, 9, 2, -1, -1, -1]
    assert [splits.test[i][1] for i in range(5)] == [9, 8, 7, 6, 0]
    _check_items(splits.train, 96, set(range(10)))
    assert torch.equal(splits.train[2][0], torch.from_numpy(arrays["train"][2]))
    assert torch.equal(splits.pretrain[5][0], torch.from_numpy(arrays["unlabeled"][1]))
    assert torch.equal(splits.test[4][0], torch.from_numpy(arrays["test"][4]))


def test_stl10_missing_and_corrupt(tmp_path, no_md5):
    with pytest.raises(FileNotFoundError, match="data.root.*'stl10_binary'"):
        load_splits(DataConfig(dataset="stl10", root=str(tmp_path)))
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data.root.*unlabeled_X.bin"):
        load_splits(DataConfig(dataset="stl10", root=str(tmp_path)))
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").write_bytes(b"\0" * 1000)  # truncated
    with pytest.raises(ValueError, match="data.root.*expected format"):
        load_splits(DataConfig(dataset="stl10", root=str(tmp_path)))


# --------------------------------------------------------------------------- ImageFolder


def write_image_folder(root: Path, n_train: int = 3, n_val: int = 2) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                h, w = (20 + 7 * i, 31) if i % 2 else (40, 25)
                if i == 0:  # a greyscale PNG must come back as 3 channels
                    img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
                else:
                    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                img.save(root / split / cls / f"{i}.png")


def test_imagefolder_pretrain_pairs_and_centre_views(tmp_path):
    write_image_folder(tmp_path)
    splits = load_splits(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=16))
    assert (len(splits.pretrain), len(splits.train), len(splits.test)) == (6, 6, 4)
    assert splits.num_classes == 2
    for i in range(len(splits.pretrain)):
        pair, label = splits.pretrain[i]  # T and T' crops, each from the full image
        assert pair.dtype == torch.uint8 and pair.shape == (2, 3, 16, 16)
        assert label in (0, 1)
    _check_items(splits.train, 16, {0, 1})  # evaluation: the centre view
    _check_items(splits.test, 16, {0, 1})
    grey, _ = splits.train[0]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert splits.std == pytest.approx((0.229, 0.224, 0.225))


def test_imagefolder_errors(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a" / "x.png")
    cfg = DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=8)
    with pytest.raises(FileNotFoundError, match="data.root.*'val'"):
        load_splits(cfg)
    (tmp_path / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="data.root.*one sub-folder"):
        load_splits(cfg)
    (tmp_path / "val" / "b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "b" / "y.png")
    with pytest.raises(ValueError, match="same class folders"):
        load_splits(cfg)
    (tmp_path / "val" / "b").rename(tmp_path / "val" / "a")
    (tmp_path / "val" / "a" / "y.png").write_bytes(b"garbage")
    splits = load_splits(cfg)
    with pytest.raises(ValueError, match="data.root.*y.png"):
        splits.test[0]


# --------------------------------------------------------------------------- digits


def test_digits_splits_and_determinism():
    splits = load_splits(DataConfig(dataset="digits", image_size=24))
    assert (len(splits.pretrain), len(splits.train), len(splits.test)) == (1437, 1437, 360)
    assert splits.num_classes == 10
    _check_items(splits.train, 24, set(range(10)))
    image, _ = splits.test[0]
    assert torch.equal(image[0], image[2]) and image.max() > 200
    counts = torch.bincount(splits.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    assert 0 < splits.mean[0] < 1 and 0 < splits.std[0] < 1
    again = load_splits(DataConfig(dataset="digits", image_size=24))
    assert torch.equal(splits.test.images, again.test.images)
    assert torch.equal(splits.train.labels, again.train.labels)
    capped = load_splits(DataConfig(dataset="digits", image_size=8, max_eval_images=100))
    assert (len(capped.pretrain), len(capped.train), len(capped.test)) == (1437, 100, 100)


@pytest.mark.parametrize("dataset", ["colour_digits", "mnistm_digits"])
def test_digit_variants_are_fixed_colour_images_in_the_grey_digits_split(dataset):
    grey = load_splits(DataConfig(dataset="digits", image_size=16))
    splits = load_splits(DataConfig(dataset=dataset, image_size=16))
    assert (len(splits.pretrain), len(splits.train), len(splits.test)) == (1437, 1437, 360)
    # the same images in each split as the grey digits: no test image is pretrained on
    assert torch.equal(splits.train.labels, grey.train.labels)
    assert torch.equal(splits.test.labels, grey.test.labels)
    _check_items(splits.train, 16, set(range(10)))
    image, _ = splits.train[0]
    assert not torch.equal(image[0], image[1])  # colour
    again = load_splits(DataConfig(dataset=dataset, image_size=16))
    assert torch.equal(splits.train.images, again.train.images)
    assert torch.equal(splits.test.images, again.test.images)
    check_dataset(DataConfig(dataset=dataset))  # nothing to download or point at


# --------------------------------------------------------------------------- preflight


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "stl10", "imagefolder"])
def test_check_dataset_fails_fast_on_an_empty_root(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match=r"^data\.root: "):
        check_dataset(DataConfig(dataset=dataset, root=str(tmp_path)))


def test_check_dataset_accepts_complete_folders(tmp_path, no_md5):
    write_cifar10(tmp_path / "c10")
    check_dataset(DataConfig(dataset="cifar10", root=str(tmp_path / "c10")))
    check_dataset(DataConfig(dataset="digits"))
    check_dataset(DataConfig(dataset="cifar10", root=str(tmp_path / "new"), download=True))


def test_validation_part_is_held_out_of_train_and_never_touches_test():
    """data.eval_on=validation: a stratified fifth of train is scored; pretraining and the
    labelled train split keep the rest; the test split's images are in neither."""
    full = load_splits(DataConfig(dataset="digits", image_size=8))
    held = load_splits(DataConfig(dataset="digits", image_size=8, eval_on="validation"))
    assert held.pretrain is held.train
    assert len(held.train) + len(held.test) == len(full.train)  # 1149 + 288 = 1437

    def rows(dataset) -> set[bytes]:
        return {image.numpy().tobytes() + bytes([label]) for image, label in
                zip(dataset.images, dataset.labels, strict=True)}

    assert rows(held.test) <= rows(full.train) and not rows(held.test) & rows(held.train)
    counts = torch.bincount(held.test.labels, minlength=10)
    assert counts.min() >= 0.18 * len(held.test) / 10  # stratified: every class about a fifth
    again = load_splits(DataConfig(dataset="digits", image_size=8, eval_on="validation"))
    assert torch.equal(again.test.images, held.test.images)  # fixed seed


def test_validation_split_needs_an_in_memory_train_split():
    from byol_ray.core.config import Config, ConfigError, validate

    cfg = Config()
    cfg.data = DataConfig(dataset="stl10", root="x", eval_on="validation")
    with pytest.raises(ConfigError, match="data.eval_on"):
        validate(cfg, check_paths=False)
