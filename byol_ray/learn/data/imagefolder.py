"""ImageFolder datasets whose views are cut from the full image [P Table 6, App. C].

- `TwoViewFolder` (pretraining, CPU decoder): each item decodes its file once and returns the
  crops of T and T' as uint8 (2, 3, S, S), each box drawn independently over the whole
  original image; flip, colour, grey, blur and solarise follow batched on the device
  (`byol_ray.learn.data.views`).
- `JpegFolder` (pretraining, GPU decoder): each item is the file's JPEG bytes and the two boxes;
  `collate_jpeg` packs a batch for `byol_ray.learn.data.gpu_decode`.
- `CentreViewFolder` (evaluation): the centre view, uint8 (3, S, S).
- `CropFolder` (the protocols' classifier training [P App. C.1, C.2]): one random resized crop
  of the full image, uint8 (3, S, S); the flip follows on the device.

Imports nothing of byol_ray beyond `crops` and `decode`, so the GPU check script can use it
without Ray, MLflow or the config module.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from byol_ray.learn.data.crops import Box, centre_crop, random_resized_crop
from byol_ray.learn.data.decode import crop_views

Sample = tuple[str, int]  # (file path, class index)


def check_split(folder: Path) -> None:
    """Cheap preflight (no walk of a million files): the split folder exists and has classes."""
    if not folder.is_dir():
        raise FileNotFoundError(f"data.root: {folder.parent} has no {folder.name!r} folder; "
                                "expected train/ and val/, each with one folder per class")
    if not any(entry.is_dir() for entry in folder.iterdir()):
        raise FileNotFoundError(f"data.root: {folder} must hold one sub-folder of images per "
                                "class; it has none")


def scan(folder: Path) -> tuple[list[Sample], list[str]]:
    """(path, class) of every image under folder/<class>/, and the sorted class names."""
    check_split(folder)
    try:
        classes, class_to_idx = find_classes(folder)
        samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"data.root: {folder} must hold one sub-folder of images per "
                                f"class ({err})") from err
    return samples, classes


class _Folder(Dataset):
    """Shared base: a list of (path, class) samples and the output side `size`."""

    def __init__(self, samples: list[Sample], size: int):
        self.samples = samples
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)


class CrossCrops:
    """Draws the two independent random-resized-crop boxes (T, T') of a width x height image."""

    def __init__(self, scale: tuple[float, float], ratio: tuple[float, float]):
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __call__(self, width: int, height: int) -> list[Box]:
        return [random_resized_crop(width, height, self.scale, self.ratio) for _ in range(2)]


class TwoViewFolder(_Folder):
    """Pretraining items: (uint8 (2, 3, S, S) = the crops of T and T', class index)."""

    def __init__(self, samples: list[Sample], size: int, scale: tuple[float, float],
                 ratio: tuple[float, float]):
        super().__init__(samples, size)
        self.crops = CrossCrops(scale, ratio)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        views, _, _ = crop_views(path, self.size, self.crops)
        return torch.stack(views), label


class CropFolder(_Folder):
    """Protocol training items: (uint8 (3, S, S) random resized crop of the full image, class).

    The linear and fine-tuning protocols train on random crops of the whole image, as the
    paper's (torchvision-style) pipeline does [P App. C.1, C.2], not on crops of the centre
    view."""

    def __init__(self, samples: list[Sample], size: int, scale: tuple[float, float],
                 ratio: tuple[float, float]):
        super().__init__(samples, size)
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        views, _, _ = crop_views(
            path, self.size, lambda w, h: [random_resized_crop(w, h, self.scale, self.ratio)])
        return views[0], label


class CentreViewFolder(_Folder):
    """Evaluation items: (uint8 (3, S, S) centre view, class index): the standard 256 -> 224."""

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        views, _, _ = crop_views(path, self.size, lambda w, h: [centre_crop(w, h, self.size)])
        return views[0], label


class JpegFolder(_Folder):
    """GPU-decoder pretraining items: (JPEG bytes uint8 (n,), boxes (2, 4) corners, class).

    Only the header is parsed here (for the size the boxes need); decoding happens batched on
    the GPU. Files that nvJPEG cannot take (PNG, CMYK or other non-RGB/grey JPEGs, rare in
    ImageNet) are re-encoded once as RGB JPEG (quality 95) here.
    """

    def __init__(self, samples: list[Sample], size: int, scale: tuple[float, float],
                 ratio: tuple[float, float]):
        super().__init__(samples, size)
        self.crops = CrossCrops(scale, ratio)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        path, label = self.samples[index]
        data, (width, height) = _jpeg_bytes(path)
        boxes = torch.tensor([box.corners for box in self.crops(width, height)],
                             dtype=torch.float32)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), boxes, label


def _jpeg_bytes(path: str) -> tuple[bytes, tuple[int, int]]:
    """The file's bytes if nvJPEG can decode them (RGB or grey JPEG), else an RGB JPEG of it."""
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG" and img.mode in ("RGB", "L"):
                return data, img.size
            out = io.BytesIO()
            img.convert("RGB").save(out, format="JPEG", quality=95)
            return out.getvalue(), img.size
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ValueError(f"data.root: image file {path} could not be decoded ({err})") from err


def collate_jpeg(items: list[tuple[Tensor, Tensor, int]]) -> tuple[dict[str, Tensor], Tensor]:
    """A batch of JpegFolder items -> ({"jpeg": all bytes, "offsets": (B+1,), "boxes":
    (B, 2, 4)}, labels): a few flat tensors, cheap to pin and to send between processes."""
    lengths = torch.tensor([len(data) for data, _, _ in items], dtype=torch.int64)
    offsets = torch.zeros(len(items) + 1, dtype=torch.int64)
    offsets[1:] = lengths.cumsum(0)
    batch = {
        "jpeg": torch.cat([data for data, _, _ in items]),
        "offsets": offsets,
        "boxes": torch.stack([boxes for _, boxes, _ in items]),
    }
    return batch, torch.tensor([label for _, _, label in items], dtype=torch.int64)
