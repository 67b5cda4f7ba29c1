"""A tiny PASCAL VOC folder in the real on-disk layout, written by the tests themselves.

Each image is a noisy grey background with one or two coloured rectangles; the colour says the
class (three VOC classes), so a detector or segmenter can learn them in a few iterations. The
segmentation masks (palette PNGs, 255 on a one-pixel border as VOC's "void") and the XML boxes
describe the same rectangles.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {1: ("aeroplane", (220, 40, 40)), 8: ("cat", (40, 200, 40)),
           15: ("person", (40, 60, 230))}  # VOC id -> (name, colour)


def write_voc(root: Path, year: str = "2012", splits: dict[str, int] | None = None,
              size: int = 64, seed: int = 0) -> Path:
    """Write root/VOCdevkit/VOC<year> with `splits` (name -> image count) for both tasks;
    returns `root` (what `segment.root` / `detect.root` point at)."""
    splits = splits or {"train": 8, "val": 4}
    folder = root / "VOCdevkit" / f"VOC{year}"
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation",
                "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, count in splits.items():
        ids = [f"{year}_{split}_{i:04d}" for i in range(count)]
        for image_id in ids:
            _write_sample(folder, image_id, size, rng)
        for sets in ("Segmentation", "Main"):
            (folder / "ImageSets" / sets / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def _write_sample(folder: Path, image_id: str, size: int, rng: random.Random) -> None:
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(90, 150, (size, size, 3))
    image = noise.astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    objects = []
    for _ in range(rng.choice((1, 2))):
        class_id = rng.choice(sorted(CLASSES))
        name, colour = CLASSES[class_id]
        w, h = rng.randint(size // 4, size // 2), rng.randint(size // 4, size // 2)
        x0, y0 = rng.randint(0, size - w), rng.randint(0, size - h)
        image[y0:y0 + h, x0:x0 + w] = colour
        mask[y0:y0 + h, x0:x0 + w] = 255  # VOC's void border around each object
        mask[y0 + 1:y0 + h - 1, x0 + 1:x0 + w - 1] = class_id
        objects.append((name, x0, y0, x0 + w, y0 + h))
    Image.fromarray(image).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=95)
    write_mask(folder / "SegmentationClass" / f"{image_id}.png", mask)
    write_annotation(folder / "Annotations" / f"{image_id}.xml", image_id, size, objects)


def write_mask(path: Path, mask: np.ndarray) -> None:
    """A VOC-style palette PNG whose pixel values are the class ids."""
    png = Image.frombytes("P", mask.shape[::-1], np.ascontiguousarray(mask).tobytes())
    palette = [0] * 768
    for class_id, (_, colour) in CLASSES.items():
        palette[3 * class_id:3 * class_id + 3] = colour
    palette[765:768] = (224, 224, 192)  # VOC's colour of 255
    png.putpalette(palette)
    png.save(path)


def write_annotation(path: Path, image_id: str, size: int,
                     objects: list[tuple[str, int, int, int, int]]) -> None:
    """A VOC annotation XML with the image size and one <object> per (name, box)."""
    parts = [f"<annotation><folder>VOC</folder><filename>{image_id}.jpg</filename>",
             f"<size><width>{size}</width><height>{size}</height><depth>3</depth></size>"]
    for name, x0, y0, x1, y1 in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose>"
                     f"<truncated>0</truncated><difficult>0</difficult><bndbox>"
                     f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
                     f"</bndbox></object>")
    path.write_text("".join(parts) + "</annotation>\n")
