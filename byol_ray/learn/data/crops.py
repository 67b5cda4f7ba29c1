"""Crop boxes in original-image pixels: the paper's random resized crop and the eval centre crop.

Pure geometry (no decoding), shared by the CPU (PIL) and GPU (nvJPEG) decoders and by
`byol-ray views`. Imports only torch, so benchmarks/gpu_decode_check.py can use it on a machine
without Ray or MLflow.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

EVAL_RESIZE_RATIO = 8 / 7  # shorter side to image_size * 8/7 (256 for 224), then centre crop
CROP_TRIES = 10  # torchvision RandomResizedCrop.get_params: 10 draws, then the fallback


class Box(NamedTuple):
    """A crop in original-image pixels: left, top, width, height."""

    left: float
    top: float
    width: float
    height: float

    @property
    def corners(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom): PIL's `box` and views.json's format."""
        return (self.left, self.top, self.left + self.width, self.top + self.height)


def random_resized_crop(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> Box:
    """A RandomResizedCrop box of a width x height image [P Table 6; torchvision get_params].

    Area ~ U[scale] x the original's area, aspect ratio w/h log-uniform in `ratio`, both relative
    to the original image; up to 10 draws until the box fits, else the fallback: the whole
    image, its ratio clamped to `ratio`, centred. Whole pixels, position uniform over the
    places the box fits (so crops reach every edge).
    """
    draws = torch.rand(CROP_TRIES, 4, generator=generator).tolist()
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for u_area, u_ratio, u_left, u_top in draws:
        target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_lo + (log_hi - log_lo) * u_ratio)
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = min(int(u_left * (width - w + 1)), width - w)
            top = min(int(u_top * (height - h + 1)), height - h)
            return Box(left, top, w, h)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return Box((width - w) // 2, (height - h) // 2, w, h)


def centre_crop(width: int, height: int, size: int) -> Box:
    """The evaluation view's box: shorter side resized to round(size * 8/7), centre crop `size`.

    Returned in original pixels (side = size / the resize factor), so one resample of this box to
    size x size equals resizing the whole image and then cropping its centre.
    """
    factor = round(size * EVAL_RESIZE_RATIO) / min(width, height)
    side = min(size / factor, width, height)
    return Box((width - side) / 2, (height - side) / 2, side, side)


def reduction(width: int, height: int, boxes: list[Box], size: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4 or 8) that keeps every box at >= size pixels a side.

    Decoding at 1/r of the resolution is r^2 times less work; a box narrower than `size` at full
    resolution gets no reduction (it is upsampled from native pixels).
    """
    smallest = min(min(box.width, box.height) for box in boxes)
    for factor in (8, 4, 2):
        if smallest / factor >= size and min(width, height) >= factor:
            return factor
    return 1
