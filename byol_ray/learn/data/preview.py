"""`byol-ray views`: what T and T' do to real images, as a picture and as checkable boxes.

For n images of an ImageFolder's train split: the source with its T box (orange), T' box
(blue) and evaluation centre box (white) drawn on it, then the two crops as the loader cuts
them, then the two views after the rest of T / T' (flip, colour, grey, blur, solarise), all
from the same code the training run uses. `views.json` lists each image's original size and
its boxes in original-image pixels, [left, top, right, bottom].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from byol_ray.core.config import Config
from byol_ray.learn.data.augment import view_params
from byol_ray.learn.data.crops import centre_crop
from byol_ray.learn.data.datasets import IMAGENET_STATS
from byol_ray.learn.data.decode import crop_views
from byol_ray.learn.data.imagefolder import CrossCrops, scan
from byol_ray.learn.data.views import ViewPair

COLOURS = {"t": (255, 140, 0), "t_prime": (30, 144, 255), "eval": (255, 255, 255)}
COLUMNS = ("source: T, T', eval boxes", "crop T", "crop T'", "view T", "view T'")
MIN_CELL = 128  # pixels: small image sizes are shown enlarged


def write_preview(cfg: Config, out: Path, n: int, seed: int = 0) -> int:
    """Write out/views.png and out/views.json for n train images (fewer if the split is
    smaller) drawn with `seed`; return how many images they show."""
    size = cfg.data.image_size
    samples, _ = scan(Path(cfg.data.root).expanduser() / "train")
    torch.manual_seed(seed)
    chosen = sorted(torch.randperm(len(samples))[:n].tolist())
    crops, records, sources = [], [], []
    pick = CrossCrops(cfg.augment.crop_scale, cfg.augment.crop_ratio)
    for index in chosen:
        path, label = samples[index]
        views, boxes, (width, height) = crop_views(path, size, pick)
        crops.append(torch.stack(views))
        with Image.open(path) as source:
            sources.append(source.convert("RGB"))
        records.append({
            "path": path, "label": label, "size": [width, height],
            "t": list(boxes[0].corners), "t_prime": list(boxes[1].corners),
            "eval": [round(c, 2) for c in centre_crop(width, height, size).corners],
        })
    pair = torch.stack(crops)
    augmented = ViewPair(view_params(cfg.augment), size, *IMAGENET_STATS)(pair)
    out.mkdir(parents=True, exist_ok=True)
    _sheet(sources, records, pair, augmented, size).save(out / "views.png")
    summary = {"preset": cfg.preset, "image_size": size,
               "crop_scale": list(cfg.augment.crop_scale),
               "crop_ratio": list(cfg.augment.crop_ratio),
               "box_format": "left, top, right, bottom", "images": records}
    (out / "views.json").write_text(json.dumps(summary, indent=2) + "\n")
    return len(records)


def _sheet(sources: list[Image.Image], records: list[dict], crops: Tensor,
           views: tuple[Tensor, Tensor], size: int) -> Image.Image:
    """One row per image: source with boxes (2 cells wide), crops T, T', views T, T'."""
    cell, pad, header = max(size, MIN_CELL), 6, 20
    widths = [2 * cell] + [cell] * 4
    sheet = Image.new("RGB", (sum(widths) + pad * 6, header + len(sources) * (cell + pad)),
                      (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    lefts = [pad + sum(widths[:i]) + pad * i for i in range(5)]
    for left, title in zip(lefts, COLUMNS, strict=True):
        draw.text((left, 4), title, fill=(230, 230, 230))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET_STATS)
    shown = [crops[:, 0], crops[:, 1], *((v.cpu() * std + mean) * 255 for v in views)]
    for row, (source, record) in enumerate(zip(sources, records, strict=True)):
        top = header + row * (cell + pad)
        sheet.paste(_with_boxes(source, record, 2 * cell, cell), (lefts[0], top))
        for column, images in enumerate(shown, start=1):
            tile = _to_pil(images[row]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (lefts[column], top))
            colour = COLOURS["t" if column % 2 else "t_prime"]
            draw.rectangle((lefts[column], top, lefts[column] + cell - 1, top + cell - 1),
                           outline=colour, width=2)
    return sheet


def _with_boxes(
    source: Image.Image, record: dict, max_width: int, max_height: int
) -> Image.Image:
    """The source scaled to fit max_width x max_height, its three boxes drawn on it."""
    factor = min(max_width / source.width, max_height / source.height)
    image = source.resize((max(1, round(source.width * factor)),
                           max(1, round(source.height * factor))), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for key in ("eval", "t", "t_prime"):
        left, top, right, bottom = (c * factor for c in record[key])
        draw.rectangle((left, top, right - 1, bottom - 1), outline=COLOURS[key],
                       width=1 if key == "eval" else 3)
    return image


def _to_pil(image: Tensor) -> Image.Image:
    """(3, S, S) uint8 or float in [0, 255] -> PIL RGB."""
    array = image.float().clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))

