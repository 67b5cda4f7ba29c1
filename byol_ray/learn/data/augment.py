"""BYOL's view distributions T and T' [P Table 6], batched on tensors.

One `BatchAugment` call augments a whole uint8 batch on its own device, drawing every random
parameter per sample (crop box, flip, jitter factors and order, grey, blur sigma, solarise):
no per-image Python loop and no PIL. Deviations from the reference (DeepMind's
`augmentations.py`), all deliberate and small:

- crop boxes are continuous (not rounded to whole pixels) and resampled with `roi_align`, which
  averages ceil(box / output) points per output pixel: bilinear when upsampling, box-filtered
  (antialiased) when downsampling;
- `colour_ops`: "reference" (default) as TF's adjust_*: brightness adds a delta, contrast scales
  each channel about its mean, saturation and hue act in HSV; "torchvision" as ColorJitter
  (brightness multiplies, grey blends); contrast/saturation factors are floored at 0;
- the blur kernel has 2 * int(image_size / 10 / 2) + 1 taps as the reference's (23 at 224, 3
  at 32, a single tap below 20 px: no blur at cpu-mini's 16 px); sigma is in output pixels,
  U[0.1, 2], at every image size. Borders are zero-padded, as the reference's 'SAME'
  depthwise convolution pads them (the blurred edge darkens a little).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from byol_ray.core.config import AUGMENT_RECIPES, AugmentConfig

GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # the reference's luma (torchvision's: 0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ViewParams:
    """One view distribution with every component explicit (probability 0 = off)."""

    crop_scale: tuple[float, float]  # area fraction of the random resized crop
    crop_ratio: tuple[float, float]  # aspect ratio w/h, sampled log-uniformly
    flip_p: float
    jitter_p: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    grey_p: float
    blur_p: float
    blur_sigma: tuple[float, float]
    solarize_p: float
    colour_ops: str = "reference"  # one of config.COLOUR_OPS


# Probabilities each Fig. 3b recipe sets to 0 (in both views).
RECIPE_OFF: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "remove_flip": ("flip_p",),
    "remove_blur": ("blur_p",),
    "remove_colour": ("jitter_p", "grey_p"),
    "remove_colour_jitter": ("jitter_p",),
    "remove_grey": ("grey_p",),
    "crop_only": ("flip_p", "jitter_p", "grey_p", "blur_p", "solarize_p"),
    "crop_flip": ("jitter_p", "grey_p", "blur_p", "solarize_p"),
    "crop_colour": ("flip_p", "blur_p", "solarize_p"),
}
assert set(RECIPE_OFF) == set(AUGMENT_RECIPES), "RECIPE_OFF must cover config.AUGMENT_RECIPES"


def view_params(cfg: AugmentConfig) -> tuple[ViewParams, ViewParams]:
    """T and T' after applying cfg.recipe (Fig. 3b removal) and cfg.strength.

    strength scales the four jitter magnitudes (hue clipped to 0.5); strength 0 turns jitter off.
    """
    if cfg.recipe not in RECIPE_OFF:
        raise ValueError(f"augment.recipe: {cfg.recipe!r} is not one of: {', '.join(RECIPE_OFF)}")
    s = cfg.strength
    views = []
    for i in (0, 1):
        view = ViewParams(
            crop_scale=tuple(cfg.crop_scale), crop_ratio=tuple(cfg.crop_ratio), flip_p=cfg.flip_p,
            jitter_p=cfg.jitter_p if s > 0 else 0.0, brightness=cfg.brightness * s,
            contrast=cfg.contrast * s, saturation=cfg.saturation * s, hue=min(cfg.hue * s, 0.5),
            grey_p=cfg.grey_p, blur_p=cfg.blur_p[i], blur_sigma=tuple(cfg.blur_sigma),
            solarize_p=cfg.solarize_p[i], colour_ops=cfg.colour_ops,
        )
        views.append(dataclasses.replace(view, **dict.fromkeys(RECIPE_OFF[cfg.recipe], 0.0)))
    return views[0], views[1]


class _Random:
    """Per-sample random draws from `generator` (on its device), moved to `device`."""

    def __init__(self, generator: torch.Generator | None, device: torch.device):
        self.generator, self.device = generator, device
        self.source = generator.device if generator is not None else device

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.source).to(self.device)
        return low + (high - low) * u

    def coin(self, n: int, p: float) -> Tensor:
        return self.uniform((n,), 0.0, 1.0) < p


def _to_unit(images: Tensor) -> Tensor:
    """uint8 [0, 255] or float [0, 1] (B, 3, H, W) -> float32 [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
    return images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)


def _grey(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> luma (B, 1, H, W)."""
    r, g, b = x.unbind(1)
    w = GREY_WEIGHTS
    return (w[0] * r + w[1] * g + w[2] * b).unsqueeze(1)


def _crop_boxes(rand: _Random, n: int, height: int, width: int, p: ViewParams) -> Tensor:
    """RandomResizedCrop boxes (n, 5) = (index, x0, y0, x1, y1), as torchvision samples them.

    Ten candidate (area, log-ratio) draws per sample; the first that fits wins, else the
    torchvision fallback (whole image, ratio clamped to crop_ratio).
    """
    tries = 10
    area = height * width * rand.uniform((n, tries), *p.crop_scale)
    log_lo, log_hi = math.log(p.crop_ratio[0]), math.log(p.crop_ratio[1])
    ratio = torch.exp(rand.uniform((n, tries), log_lo, log_hi))
    w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (w <= width) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # first fitting try (0 if none)
    fall_ratio = min(max(width / height, p.crop_ratio[0]), p.crop_ratio[1])  # clamped to range
    fall_w, fall_h = min(width, height * fall_ratio), min(height, width / fall_ratio)
    any_fit = fits.any(dim=1)
    w = torch.where(any_fit, w.gather(1, first).squeeze(1), fall_w)
    h = torch.where(any_fit, h.gather(1, first).squeeze(1), fall_h)
    x0 = rand.uniform((n,), 0.0, 1.0) * (width - w)
    y0 = rand.uniform((n,), 0.0, 1.0) * (height - h)
    index = torch.arange(n, device=w.device, dtype=w.dtype)
    return torch.stack([index, x0, y0, x0 + w, y0 + h], dim=1)


def _shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by `shift` (B,) turns in HSV space, keeping value and saturation."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue6 = torch.where(
        maxc == r, (g - b) / safe, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue6 = torch.remainder(hue6 + 6 * shift.view(-1, 1, 1), 6.0)
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(n + hue6.unsqueeze(1), 6.0)
    out = maxc.unsqueeze(1) - delta.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)
    return torch.where(shift.view(-1, 1, 1, 1) == 0, x, out)  # shift 0: exactly x


def _saturate(x: Tensor, f: Tensor) -> Tensor:
    """HSV saturation S -> min(S f, 1), same H and V: each channel moves from/to V by S'/S."""
    value = x.amax(dim=1, keepdim=True)
    ratio = torch.minimum(f, value / (value - x.amin(dim=1, keepdim=True)).clamp_min(1e-12))
    return x + (value - x) * (1 - ratio)


# colour_ops -> brightness, contrast, saturation, hue(x, factor (B,1,1,1)); x at JITTER_IDENTITY.
JITTER_OPS = {
    "reference": (torch.add, lambda x, f: f * x + (1 - f) * x.mean(dim=(2, 3), keepdim=True),
                  _saturate, _shift_hue),
    "torchvision": (torch.mul,
                    lambda x, f: f * x + (1 - f) * _grey(x).mean(dim=(1, 2, 3), keepdim=True),
                    lambda x, f: f * x + (1 - f) * _grey(x), _shift_hue),
}
JITTER_IDENTITY = {"reference": (0.0, 1.0, 1.0, 0.0), "torchvision": (1.0, 1.0, 1.0, 0.0)}


def _jitter_draws(rand: _Random, n: int, p: ViewParams) -> tuple[Tensor, list[Tensor], Tensor]:
    """Per sample: jitter on (prob jitter_p), the four ops' factors, the order of the ops."""
    on = rand.coin(n, p.jitter_p)
    b = p.brightness
    bounds = [(-b, b) if p.colour_ops == "reference" else (max(0.0, 1 - b), 1 + b)]
    bounds += [(max(0.0, 1 - m), 1 + m) for m in (p.contrast, p.saturation)] + [(-p.hue, p.hue)]
    factors = [rand.uniform((n,), *bound) for bound in bounds]
    order = torch.argsort(rand.uniform((n, 4), 0.0, 1.0), dim=1)  # per-sample op permutation
    return on, factors, order


def _jitter(x: Tensor, on: Tensor, factors: list[Tensor], order: Tensor, p: ViewParams) -> Tensor:
    """Where `on`: brightness, contrast, saturation, hue (ops 0-3) in each row's `order`,
    clipped to [0, 1] after each. On the CPU each stage runs each op on the rows whose turn it
    is only (4 op passes over the batch); on CUDA, where selecting rows would make the host
    wait 16 times a view, every row runs every op, all but its own at the identity factor (an
    exact no-op): 16 passes, the same values (`_jitter_every_row`)."""
    ops = JITTER_OPS[p.colour_ops]
    active = _active_ops(p)
    if x.device.type == "cuda" or not active:
        return _jitter_every_row(x, on, factors, order, p)
    x = x.clone()
    for i, (stage, op) in enumerate(itertools.product(range(4), active)):
        rows = (on & (order[:, stage] == op)).nonzero().squeeze(1)
        if len(rows):
            x[rows] = ops[op](x[rows], factors[op][rows].view(-1, 1, 1, 1)).clamp(0, 1)
        if i == 0:  # as the other path's identity passes, clip every row from the first on
            x = x.clamp(0, 1)
    return x


def _active_ops(p: ViewParams) -> list[int]:
    """The jitter's ops (0-3) with a non-zero magnitude; none when the jitter is off."""
    magnitudes = (p.brightness, p.contrast, p.saturation, p.hue) if p.jitter_p > 0 else ()
    return [k for k, m in enumerate(magnitudes) if m > 0]


def _jitter_every_row(x: Tensor, on: Tensor, factors: list[Tensor], order: Tensor,
                      p: ViewParams) -> Tensor:
    """`_jitter` with every row through every op at every stage, the identity factor where it
    is not the row's turn: no row selection, so no host sync on CUDA."""
    ops, identity = JITTER_OPS[p.colour_ops], JITTER_IDENTITY[p.colour_ops]
    for stage, op in itertools.product(range(4), _active_ops(p)):
        f = torch.where(on & (order[:, stage] == op), factors[op], identity[op])
        x = ops[op](x, f.view(-1, 1, 1, 1)).clamp(0, 1)
    return x


def _blur(x: Tensor, rand: _Random, p: ViewParams, radius: int) -> Tensor:
    """With prob blur_p per sample: separable Gaussian blur, sigma ~ U[blur_sigma], zero pad;
    radius 0 (one tap) leaves x as it is. Draws either way: the later draws stay the same."""
    n, c, height, width = x.shape
    on = rand.coin(n, p.blur_p)
    sigma = rand.uniform((n,), *p.blur_sigma)
    if p.blur_p <= 0 or radius == 0:
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(x.dtype).expand_as(kernel)
    kernel = torch.where(on.view(-1, 1), kernel, identity).repeat_interleave(c, dim=0)
    flat = x.reshape(1, n * c, height, width)
    for pad, hw in (((radius, radius, 0, 0), (1, -1)), ((0, 0, radius, radius), (-1, 1))):
        flat = F.conv2d(F.pad(flat, pad), kernel.view(n * c, 1, *hw), groups=n * c)
    return flat.view(n, c, height, width)


class BatchAugment(torch.nn.Module):
    """One view distribution applied to a batch: crop, flip, jitter, grey, blur, solarise, norm."""

    def __init__(self, params: ViewParams, image_size: int, mean, std):
        super().__init__()
        self.params = params
        self.image_size = image_size
        # [DM augmentations.py] kernel_size = image_size / 10, radius = int(kernel_size / 2),
        # 2 * radius + 1 taps: 0 (a single tap, no blur) below 20 px
        self.blur_radius = int(image_size / 10 / 2)
        for name, v in (("mean", mean), ("std", std)):
            self.register_buffer(name, torch.tensor(v).float().view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: Tensor, generator: torch.Generator | None = None,
                crop: bool = True) -> Tensor:
        """uint8 (B,3,H,W) (or float in [0,1]) -> float32 normalised (B,3,S,S), S=image_size.

        Every sample draws its own crop/flip/jitter/grey/blur/solarise; all randomness comes from
        `generator` (if given), so a seeded generator reproduces the batch exactly. crop=False
        takes views already cropped to S x S from their full image (ImageFolder's loaders).
        """
        x = _to_unit(images)
        n, _, height, width = x.shape
        p = self.params
        rand = _Random(generator, x.device)
        if crop:
            boxes = _crop_boxes(rand, n, height, width, p)
            x = roi_align(x, boxes, output_size=self.image_size, spatial_scale=1.0,
                          sampling_ratio=-1, aligned=True)
        elif (height, width) != (self.image_size, self.image_size):
            raise ValueError(f"crop=False needs views of {self.image_size}x{self.image_size}, "
                             f"got {height}x{width}")
        flip = rand.coin(n, p.flip_p).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
        x = _jitter(x, *_jitter_draws(rand, n, p), p)
        grey = rand.coin(n, p.grey_p).view(-1, 1, 1, 1)
        x = torch.where(grey, _grey(x).expand_as(x), x)
        x = _blur(x, rand, p, self.blur_radius)
        solar = rand.coin(n, p.solarize_p).view(-1, 1, 1, 1)
        x = torch.where(solar & (x >= 0.5), 1 - x, x)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, {self.params}"


def eval_transform(images: Tensor, image_size: int, mean, std) -> Tensor:
    """Deterministic evaluation view: resize to image_size (bilinear, antialias), normalise."""
    x = _to_unit(images)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                          align_corners=False, antialias=True)
    mean_t, std_t = (torch.tensor(v, device=x.device).float().view(1, 3, 1, 1) for v in (mean, std))
    return (x - mean_t) / std_t
