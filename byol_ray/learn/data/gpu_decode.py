"""The GPU decoder (`data.decoder: gpu`): batched nvJPEG decode, then the two crops on the GPU.

For nodes whose CPUs cannot decode as fast as their GPUs train: loader workers only read bytes
and draw boxes (`imagefolder.JpegFolder`), and `decode_crops` turns a packed batch into the
views of T and T'. torchvision.io.decode_jpeg decodes a list of JPEGs in one nvJPEG call on
CUDA (on CPU it uses libjpeg-turbo, which is how the tests exercise this code); torchvision
0.29 deprecates it in favour of TorchCodec, so its warning is silenced here.

Imports only torch and torchvision, so benchmarks/gpu_decode_check.py runs it without Ray.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg


def decode_crops(batch: dict[str, Tensor], size: int, device: torch.device) -> Tensor:
    """A `collate_jpeg` batch -> float32 views in [0, 1], (B, 2, 3, size, size) on `device`.

    Each box (original pixels, corner form) is cut from the decoded image at native
    resolution and resized to size x size, bicubic and antialiased, as the CPU decoder does.
    """
    data, offsets, boxes = batch["jpeg"], batch["offsets"].tolist(), batch["boxes"].tolist()
    encoded = [data[start:end] for start, end in zip(offsets[:-1], offsets[1:], strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decode_jpeg's deprecation notice, once per call
        images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    views = torch.empty(len(encoded), 2, 3, size, size, device=device)
    for i, (image, image_boxes) in enumerate(zip(images, boxes, strict=True)):
        for v, box in enumerate(image_boxes):
            views[i, v] = _crop_resize(image, box, size)
    return views


def _crop_resize(image: Tensor, box: list[float], size: int) -> Tensor:
    """uint8 (3, H, W) -> the box's pixels resized to float (3, size, size) in [0, 1]."""
    left, top, right, bottom = (round(c) for c in box)
    crop = image[:, top:bottom, left:right].unsqueeze(0).float()
    out = F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False,
                        antialias=True)
    return (out[0] / 255.0).clamp_(0.0, 1.0)
