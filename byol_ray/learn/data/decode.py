"""Decode an image file once and cut its views out of it: the CPU (PIL) decoder.

A JPEG is decoded at the largest DCT reduction (1/2, 1/4, 1/8) that keeps every requested box
at least `size` pixels a side (PIL's draft mode), so large images with large crops cost a
fraction of a full decode; every box is then resampled from those native (or reduced) pixels
straight to size x size (bicubic, antialiased when shrinking) in one step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from byol_ray.learn.data.crops import Box, reduction

BoxPicker = Callable[[int, int], Sequence[Box]]  # (width, height) -> boxes in original pixels


def crop_views(
    path: str, size: int, pick: BoxPicker
) -> tuple[list[Tensor], list[Box], tuple[int, int]]:
    """Decode `path` once; return one uint8 (3, size, size) view per box that `pick` chooses.

    `pick` gets the original (width, height) from the file's header, before decoding, and
    returns boxes in original pixels. Also returns those boxes and the original size. Errors
    name the file and the field (`data.root`).
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            boxes = list(pick(width, height))
            factor = reduction(width, height, boxes, size)
            drafted = img.draft("RGB", (width // factor, height // factor)) if factor > 1 else None
            scale = drafted[1][2] / width if drafted else 1.0  # PIL: original -> decoded pixels
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ValueError(f"data.root: image file {path} could not be decoded ({err})") from err
    views = [_resample(rgb, box, scale, size) for box in boxes]
    return views, boxes, (width, height)


def _resample(img: Image.Image, box: Box, scale: float, size: int) -> Tensor:
    """The box (original pixels; `scale` maps them to img's) resized to size x size, uint8 CHW."""
    corners = tuple(c * scale for c in box.corners)
    out = img.resize((size, size), Image.Resampling.BICUBIC, box=corners)
    return torch.from_numpy(np.asarray(out).transpose(2, 0, 1).copy())
