"""sklearn's bundled digits and two harder variants, built on the fly: no download, no files.

- `digits`: the grey 8x8 digits, bilinear-upsampled.
- `colour_digits`: every digit painted in a random foreground colour on a random background
  colour (fixed per image). Colour carries no label, so matching two views by their colours
  is the shortcut that the paper's colour jitter and grey conversion exist to break [P §3.2,
  Fig. 3b]; the untrained encoder, whose features follow the colours, scores far lower than
  on grey digits.
- `mnistm_digits`: the MNIST-M recipe [Ganin & Lempitsky 2015, §4.1]: each digit blended
  with a random patch of a colour photograph, |patch − digit|; the photographs are the two
  that scikit-learn ships (`load_sample_images`).

All three share digits' stratified 80 / 20 train / test split (seed 0), so an image is in the
same split as its grey original; the variants draw their colours or patches from a fixed
generator, so every load gives the same pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

SPLIT_SEED = 0  # digits' stratified 80/20 split
PIXEL_SEED = 1  # the colours and patches


def digit_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices of digits' stratified 80 / 20 split (seed 0)."""
    from sklearn.model_selection import train_test_split  # lazy: sklearn (~2 s) only for digits

    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels,
                                   random_state=SPLIT_SEED)
    return np.sort(train), np.sort(test)


def digit_masks(image_size: int) -> tuple[Tensor, np.ndarray]:
    """sklearn's digits as ink masks in [0, 1], (N, 1, S, S) bilinear-upsampled, and labels."""
    from sklearn.datasets import load_digits  # lazy: sklearn (~2 s) only for digits

    digits = load_digits()
    ink = torch.from_numpy(digits.images).float()[:, None] / 16.0
    ink = torch.nn.functional.interpolate(ink, size=(image_size, image_size), mode="bilinear",
                                          align_corners=False)
    return ink.clamp(0, 1), digits.target


def grey_digits(image_size: int) -> tuple[Tensor, np.ndarray]:
    """(N, 3, S, S) uint8 grey digits (sklearn's 0..16 ink levels bilinear-upsampled), labels."""
    from sklearn.datasets import load_digits  # lazy: sklearn (~2 s) only for digits

    digits = load_digits()
    grey = torch.from_numpy(digits.images).float() * (255.0 / 16.0)  # (N, 8, 8), 0..255
    grey = torch.nn.functional.interpolate(
        grey[:, None], size=(image_size, image_size), mode="bilinear", align_corners=False,
    )
    images = grey.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return images, digits.target


def _to_uint8(images: Tensor) -> Tensor:
    return (images * 255).round().clamp(0, 255).to(torch.uint8).contiguous()


def colour_digits(image_size: int) -> tuple[Tensor, np.ndarray]:
    """(N, 3, S, S) uint8 digits, ink and background each a uniform random RGB colour (kept
    at least 0.5 apart in RGB so the digit stays visible), and the labels."""
    ink, labels = digit_masks(image_size)
    gen = torch.Generator().manual_seed(PIXEL_SEED)
    n = len(labels)
    background = torch.rand(n, 3, generator=gen)
    foreground = torch.rand(n, 3, generator=gen)
    close = (foreground - background).norm(dim=1) < 0.5
    while close.any():  # redraw the few that would hide the digit
        foreground[close] = torch.rand(int(close.sum()), 3, generator=gen)
        close = (foreground - background).norm(dim=1) < 0.5
    images = background[:, :, None, None] * (1 - ink) + foreground[:, :, None, None] * ink
    return _to_uint8(images), labels


def mnistm_digits(image_size: int) -> tuple[Tensor, np.ndarray]:
    """(N, 3, S, S) uint8 MNIST-M-style digits: |photo patch − digit| with a random patch (at
    a random scale) of one of scikit-learn's two sample photographs, and the labels."""
    from sklearn.datasets import load_sample_images  # lazy: sklearn (~2 s) only for digits

    ink, labels = digit_masks(image_size)
    photos = [torch.from_numpy(np.array(p)).permute(2, 0, 1).float() / 255.0
              for p in load_sample_images().images]
    gen = torch.Generator().manual_seed(PIXEL_SEED)
    patches = []
    for _ in range(len(labels)):
        photo = photos[int(torch.randint(len(photos), (1,), generator=gen))]
        side = int(torch.randint(image_size, 4 * image_size + 1, (1,), generator=gen))
        top = int(torch.randint(photo.shape[1] - side + 1, (1,), generator=gen))
        left = int(torch.randint(photo.shape[2] - side + 1, (1,), generator=gen))
        patch = photo[None, :, top:top + side, left:left + side]
        patches.append(torch.nn.functional.interpolate(
            patch, size=(image_size, image_size), mode="bilinear", align_corners=False,
            antialias=True)[0])
    return _to_uint8((torch.stack(patches) - ink).abs()), labels


BUNDLED = {"digits": grey_digits, "colour_digits": colour_digits,
           "mnistm_digits": mnistm_digits}  # name -> image_size -> (uint8 images, labels)
