"""Load a dataset's pretrain / train / test splits as uint8 image tensors.

Every item is `(uint8 tensor (3, S, S), int label)` with one S per dataset, so a batch stacks
into one tensor that `byol_ray.learn.data.augment` augments on the device. Labels are -1 for
unlabelled images (STL-10's unlabeled split). Small datasets (digits, CIFAR, STL-10) live in
memory as one tensor; ImageFolder images are decoded lazily in the loader workers, and their
pretraining items are already the two crops of T and T' (`byol_ray.learn.data.imagefolder`).
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import Tensor
from torch.utils.data import Dataset, Subset

from byol_ray.core.config import (
    BUNDLED_DATASETS,
    VALIDATION_SEED,
    AugmentConfig,
    DataConfig,
    validation_size,
)
from byol_ray.learn.data.digit_variants import BUNDLED, digit_split
from byol_ray.learn.data.imagefolder import (
    CentreViewFolder,
    CropFolder,
    JpegFolder,
    TwoViewFolder,
    check_split,
    collate_jpeg,
    scan,
)

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
EVAL_SUBSET_SEED = 0  # seed of the max_eval_images subsets
_TORCHVISION_CLASSES = {
    "cifar10": torchvision.datasets.CIFAR10,
    "cifar100": torchvision.datasets.CIFAR100,
    "stl10": torchvision.datasets.STL10,
}


@dataclass
class DatasetSplits:
    """The three views of one dataset that pretraining and evaluation need."""

    pretrain: Dataset  # images BYOL learns from (labels unused; -1 if unlabelled)
    train: Dataset  # labelled: kNN memory bank and linear-probe training
    test: Dataset  # labelled held-out split: kNN / linear-probe evaluation
    num_classes: int
    mean: tuple[float, float, float]  # per-channel normalisation stats in [0, 1] units
    std: tuple[float, float, float]
    collate: Callable | None = None  # the pretraining DataLoader's collate_fn (None: default)
    # `train` as random resized crops of the full images, for the protocols' classifier
    # training: crops(scale, ratio) -> Dataset of (uint8 (3, S, S), label); None where `train`
    # holds the full images already (in-memory datasets: cropped on the device).
    train_crops: Callable[[tuple[float, float], tuple[float, float]], Dataset] | None = None


class ImageTensorDataset(Dataset):
    """In-memory images (N, 3, S, S) uint8 with int64 labels; items are (image, int label)."""

    def __init__(self, images: Tensor, labels: Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, S, S), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


def load_splits(cfg: DataConfig, augment: AugmentConfig | None = None) -> DatasetSplits:
    """Load `cfg.dataset` from `cfg.root` and cap the labelled splits to cfg.max_eval_images.

    `augment` (default: the paper's) gives the crop distribution that ImageFolder's loaders
    draw from the full image; the in-memory datasets crop on the device instead.
    """
    loaders: dict[str, Callable[[DataConfig], DatasetSplits]] = {
        **dict.fromkeys(BUNDLED, _digits),
        "cifar10": _cifar,
        "cifar100": _cifar,
        "stl10": _stl10,
        "imagefolder": partial(_imagefolder, augment=augment or AugmentConfig()),
    }
    if cfg.dataset not in loaders:
        raise ValueError(f"data.dataset: {cfg.dataset!r} is not one of: {', '.join(loaders)}")
    splits = loaders[cfg.dataset](cfg)
    if cfg.eval_on == "validation":
        splits = hold_out_validation(splits)
    if cfg.max_eval_images > 0:
        splits.train = _cap(splits.train, cfg.max_eval_images)
        splits.test = _cap(splits.test, cfg.max_eval_images)
        if splits.train_crops is not None:  # the same capped items as `train`
            splits.train_crops = partial(_capped, splits.train_crops, cfg.max_eval_images)
    return splits


def hold_out_validation(splits: DatasetSplits) -> DatasetSplits:
    """`splits` with a stratified validation part of train (`validation_size`, seed
    `VALIDATION_SEED`) as the evaluated split, and the rest as pretraining images and labelled
    train split: settings are chosen on it without ever looking at the test split."""
    from sklearn.model_selection import train_test_split  # lazy: sklearn only here

    train = splits.train
    if splits.pretrain is not train or not isinstance(train, ImageTensorDataset):
        raise ValueError("data.eval_on: validation needs an in-memory dataset whose pretraining "
                         "images are its train split")
    fit, held = train_test_split(np.arange(len(train)), test_size=validation_size(len(train)),
                                 stratify=train.labels.numpy(), random_state=VALIDATION_SEED)
    fit, held = torch.from_numpy(np.sort(fit)), torch.from_numpy(np.sort(held))
    kept = ImageTensorDataset(train.images[fit], train.labels[fit])
    validation = ImageTensorDataset(train.images[held], train.labels[held])
    return replace(splits, pretrain=kept, train=kept, test=validation)


def check_dataset(cfg: DataConfig) -> None:
    """Fail fast, before any worker starts, if the dataset's folders or files are missing.

    Raises FileNotFoundError (missing) or ValueError (a file fails torchvision's md5 check)
    whose message starts with the field (`data.root: ...`).
    """
    if cfg.dataset in BUNDLED_DATASETS:
        return
    root = _root(cfg)
    if cfg.dataset == "imagefolder":
        for split in ("train", "val"):
            check_split(root / split)
        return
    cls = _TORCHVISION_CLASSES[cfg.dataset]
    _check_files(root, cls, _file_names(cls), cfg)
    _check_intact(root, cls, cfg)


def _cap(dataset: Dataset, n: int) -> Dataset:
    """A fixed random subset of n items (sorted indices), or the dataset if it has <= n."""
    if len(dataset) <= n:
        return dataset
    gen = torch.Generator().manual_seed(EVAL_SUBSET_SEED)
    indices = torch.randperm(len(dataset), generator=gen)[:n].sort().values
    return Subset(dataset, indices.tolist())


def _capped(make: Callable[..., Dataset], n: int, *args) -> Dataset:
    """`_cap(make(*args), n)`: a dataset factory capped to `_cap`'s fixed subset."""
    return _cap(make(*args), n)


def _from_hwc(data: np.ndarray, labels) -> ImageTensorDataset:
    """(N, H, W, 3) uint8 array + labels -> ImageTensorDataset of (N, 3, H, W)."""
    images = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
    return ImageTensorDataset(images, torch.as_tensor(np.asarray(labels), dtype=torch.int64))


# --------------------------------------------------------------------------- digits


def _digits(cfg: DataConfig) -> DatasetSplits:
    """sklearn's digits or a variant (`byol_ray.learn.data.digit_variants`) at image_size;
    stratified 80/20 split (seed 0), pretrain = train.

    mean/std are measured on the train split (grey digits: one value for all channels).
    """
    images, labels = BUNDLED[cfg.dataset](cfg.image_size)
    targets = torch.from_numpy(labels).to(torch.int64)
    train_idx, test_idx = (torch.from_numpy(i) for i in digit_split(labels))
    train = ImageTensorDataset(images[train_idx], targets[train_idx])
    test = ImageTensorDataset(images[test_idx], targets[test_idx])
    if cfg.dataset == "digits":
        pixels = train.images[:, 0].float() / 255.0
        mean, std = (float(pixels.mean()),) * 3, (float(pixels.std()),) * 3
    else:
        pixels = train.images.float() / 255.0
        mean = tuple(float(m) for m in pixels.mean(dim=(0, 2, 3)))
        std = tuple(float(s) for s in pixels.std(dim=(0, 2, 3)))
    return DatasetSplits(train, train, test, 10, mean, std)


# --------------------------------------------------------------------------- torchvision sets


def _root(cfg: DataConfig) -> Path:
    """The dataset folder; raise a clear error if it is unset or (without download) absent."""
    if not cfg.root:
        raise FileNotFoundError(f"data.root: required for dataset {cfg.dataset!r}: the folder "
                                "holding its files")
    root = Path(cfg.root).expanduser()
    if not cfg.download and not root.is_dir():
        raise FileNotFoundError(f"data.root: {root} is not a folder; point it at the "
                                f"{cfg.dataset} files or set data.download=true")
    return root


def _check_files(root: Path, cls: type, names: list[str], cfg: DataConfig) -> None:
    """Raise FileNotFoundError naming data.root if torchvision's folder or files are missing."""
    if cfg.download:
        return
    folder = root / cls.base_folder
    if not folder.is_dir():
        raise FileNotFoundError(f"data.root: {root} has no {cls.base_folder!r} folder; "
                                "download it or set data.download=true")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"data.root: {folder} lacks {', '.join(missing)}; "
                                "re-download it or set data.download=true")


def _check_intact(root: Path, cls: type, cfg: DataConfig) -> None:
    """Raise ValueError naming data.root if a file fails torchvision's md5 check."""
    if cfg.download:
        return
    folder = root / cls.base_folder
    damaged = [name for name, md5 in _md5_list(cls) if not _intact(cls, folder / name, md5)]
    if damaged:
        raise ValueError(f"data.root: {', '.join(damaged)} in {folder} failed torchvision's "
                         "integrity (md5) check; delete them and re-download "
                         "(data.download=true)")


def _md5_list(cls: type) -> list[tuple[str, str]]:
    meta = getattr(cls, "meta", None)  # CIFAR's batches.meta / meta
    return cls.train_list + cls.test_list + ([(meta["filename"], meta["md5"])] if meta else [])


_INTACT: dict[tuple, bool] = {}  # (check, file, size, mtime, md5) -> verdict: a sweep checks once


def _intact(cls: type, path: Path, md5: str) -> bool:
    """torchvision's own md5 check of one file (the function its dataset class calls), here
    before any worker starts rather than inside them after Ray has started."""
    check = importlib.import_module(cls.__module__).check_integrity
    stat = path.stat()
    key = (check, str(path), stat.st_size, stat.st_mtime_ns, md5)
    if key not in _INTACT:
        _INTACT[key] = check(str(path), md5)
    return _INTACT[key]


def _file_names(cls: type) -> list[str]:
    """The files a torchvision CIFAR/STL-10 class reads (its md5-checked lists)."""
    return [name for name, _ in _md5_list(cls)]


def _open(cls: type, root: Path, cfg: DataConfig, **kwargs):
    """Construct a torchvision dataset, turning its terse errors into ones naming data.root."""
    try:
        return cls(str(root), download=cfg.download, **kwargs)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise ValueError(f"data.root: the {cls.base_folder!r} files in {root} failed "
                         f"torchvision's integrity (md5) check ({err}); delete them and "
                         "re-download (data.download=true)") from err
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
        raise ValueError(f"data.root: the {cls.base_folder!r} files in {root} are not in "
                         f"the expected format ({type(err).__name__}: {err})") from err


def _cifar(cfg: DataConfig) -> DatasetSplits:
    """CIFAR-10/100 python batches, held in memory; pretrain = train = the 50k train images."""
    cls = _TORCHVISION_CLASSES[cfg.dataset]
    root = _root(cfg)
    _check_files(root, cls, _file_names(cls), cfg)
    train_set = _open(cls, root, cfg, train=True)
    test_set = _open(cls, root, cfg, train=False)
    train = _from_hwc(train_set.data, train_set.targets)
    test = _from_hwc(test_set.data, test_set.targets)
    mean, std = CIFAR10_STATS if cfg.dataset == "cifar10" else CIFAR100_STATS
    return DatasetSplits(train, train, test, len(train_set.classes), mean, std)


def _stl10(cfg: DataConfig) -> DatasetSplits:
    """STL-10 binaries in memory: pretrain = train+unlabeled; train = its labelled 5k prefix."""
    cls = torchvision.datasets.STL10
    root = _root(cfg)
    _check_files(root, cls, _file_names(cls), cfg)
    pre_set = _open(cls, root, cfg, split="train+unlabeled")
    test_set = _open(cls, root, cfg, split="test")
    pretrain = ImageTensorDataset(torch.from_numpy(np.ascontiguousarray(pre_set.data)),
                                  torch.from_numpy(pre_set.labels.astype(np.int64)))
    n_labelled = int((pretrain.labels >= 0).sum())  # torchvision puts the labelled ones first
    train = ImageTensorDataset(pretrain.images[:n_labelled], pretrain.labels[:n_labelled])
    test = ImageTensorDataset(torch.from_numpy(np.ascontiguousarray(test_set.data)),
                              torch.from_numpy(test_set.labels.astype(np.int64)))
    return DatasetSplits(pretrain, train, test, 10, *IMAGENET_STATS)


# --------------------------------------------------------------------------- image folders


def _imagefolder(cfg: DataConfig, augment: AugmentConfig) -> DatasetSplits:
    """root/train and root/val class folders, decoded lazily in the loader workers.

    Pretraining items are the two crops of T and T' cut from the full image (`TwoViewFolder`),
    or its JPEG bytes and boxes for the GPU decoder (`JpegFolder`); labelled items are the
    evaluation's centre view (`CentreViewFolder`). See byol_ray.learn.data.imagefolder.
    """
    root = _root(cfg)
    train_samples, classes = scan(root / "train")
    test_samples, test_classes = scan(root / "val")
    if classes != test_classes:
        raise ValueError(f"data.root: {root}/train and {root}/val must hold the same class "
                         f"folders; got {classes} and {test_classes}")
    size, gpu = cfg.image_size, cfg.decoder == "gpu"
    views = JpegFolder if gpu else TwoViewFolder
    return DatasetSplits(
        pretrain=views(train_samples, size, augment.crop_scale, augment.crop_ratio),
        train=CentreViewFolder(train_samples, size),
        test=CentreViewFolder(test_samples, size),
        num_classes=len(classes),
        mean=IMAGENET_STATS[0],
        std=IMAGENET_STATS[1],
        collate=collate_jpeg if gpu else None,
        train_crops=partial(CropFolder, train_samples, size),
    )
