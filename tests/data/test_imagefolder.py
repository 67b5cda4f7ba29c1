"""ImageFolder views cut from the full image [P Table 6], on JPEG folders the tests write.

Images are colour ramps (red grows with x, green with y), so a view's colours say where in the
original it was cut from, whatever the decoder's reduction or resampling.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2

from byol_ray.cli.main import main
from byol_ray.core.config import AugmentConfig, DataConfig
from byol_ray.learn.data import ViewPair, load_splits, view_params
from byol_ray.learn.data.crops import Box, centre_crop, random_resized_crop, reduction
from byol_ray.learn.data.decode import crop_views
from byol_ray.learn.data.gpu_decode import decode_crops
from byol_ray.learn.data.imagefolder import (
    CentreViewFolder,
    JpegFolder,
    TwoViewFolder,
    collate_jpeg,
)

SIZES = [(500, 375), (375, 500), (800, 200)]  # landscape, portrait, a wide panorama
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def ramp(width: int, height: int) -> Image.Image:
    """Red = 255 x / width, green = 255 y / height, blue 128: position encoded as colour."""
    x = (np.arange(width) + 0.5) / width * 255
    y = (np.arange(height) + 0.5) / height * 255
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = np.round(x)[None, :]
    rgb[..., 1] = np.round(y)[:, None]
    rgb[..., 2] = 128
    return Image.fromarray(rgb)


def write_jpeg_folder(root: Path, sizes=SIZES, per_class: int = 2) -> None:
    """root/{train,val}/{a,b}/*.jpg, quality 90, each size in `sizes` per class."""
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                width, height = sizes[i % len(sizes)]
                ramp(width, height).save(folder / f"{i}.jpg", quality=90)


def draw_boxes(width: int, height: int, n: int, seed: int) -> list[Box]:
    gen = torch.Generator().manual_seed(seed)
    return [random_resized_crop(width, height, SCALE, RATIO, gen) for _ in range(n)]


# --------------------------------------------------------------------------- crop boxes


@pytest.mark.parametrize("size", SIZES)
def test_crop_boxes_follow_the_papers_distribution_relative_to_the_original(size):
    width, height = size
    boxes = draw_boxes(width, height, 4000, seed=1)
    area = np.array([b.width * b.height / (width * height) for b in boxes])
    aspect = np.array([b.width / b.height for b in boxes])
    assert all(b.left >= 0 and b.left + b.width <= width for b in boxes)
    assert all(b.top >= 0 and b.top + b.height <= height for b in boxes)
    assert area.min() >= 0.08 * 0.97 and area.max() <= 1.0
    assert aspect.min() >= 0.75 * 0.98 and aspect.max() <= 4 / 3 * 1.02  # whole pixels
    # Crops whose area is below 0.3 of the original fit at every ratio (for the two 4:3
    # images), so there the paper's law holds exactly: area ~ U[0.08, 0.3], ratio log-uniform.
    if max(size) / min(size) <= 4 / 3:
        small = area < 0.3
        assert stats.kstest(area[small], stats.uniform(0.08, 0.22).cdf).pvalue > 1e-3
        log_ratio = np.log(aspect[small])
        lo, hi = math.log(3 / 4), math.log(4 / 3)
        assert stats.kstest(log_ratio, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
        assert area.max() > 0.95  # large crops too
    else:  # 800x200: no crop wider than 4/3 x 200 fits, and the fallback takes over
        assert area.max() <= 267 * 200 / (800 * 200) + 1e-9
        assert Box(266, 0, 267, 200) in boxes


@pytest.mark.parametrize("size", SIZES)
def test_crop_boxes_match_torchvision_random_resized_crop(size):
    """Same law as torchvision's RandomResizedCrop.get_params (two-sample KS, fixed seeds)."""
    width, height = size
    ours = draw_boxes(width, height, 3000, seed=2)
    torch.manual_seed(3)
    image = torch.empty(3, height, width)
    theirs = [v2.RandomResizedCrop.get_params(image, list(SCALE), list(RATIO))
              for _ in range(3000)]  # (top, left, height, width)
    for mine, reference in (
        ([b.width * b.height for b in ours], [h * w for _, _, h, w in theirs]),
        ([b.width / b.height for b in ours], [w / h for _, _, h, w in theirs]),
        ([b.left + b.width / 2 for b in ours], [j + w / 2 for _, j, _, w in theirs]),
    ):
        assert stats.ks_2samp(mine, reference).pvalue > 1e-3


@pytest.mark.parametrize("size", SIZES)
def test_crops_reach_all_four_edges(size):
    width, height = size
    boxes = draw_boxes(width, height, 2000, seed=4)
    assert min(b.left for b in boxes) == 0 and min(b.top for b in boxes) == 0
    assert max(b.left + b.width for b in boxes) == width
    assert max(b.top + b.height for b in boxes) == height


def test_eval_box_is_the_centre_of_the_shorter_side_resized_to_8_7():
    box = centre_crop(500, 375, 224)  # 375 -> 256: 224 px there are 328.125 original px
    assert box == pytest.approx(Box((500 - 328.125) / 2, (375 - 328.125) / 2, 328.125, 328.125))
    assert centre_crop(200, 800, 224).width == pytest.approx(200 * 224 / 256)


def test_reduction_keeps_every_box_at_least_the_output_size():
    big = [Box(0, 0, 900, 800), Box(100, 100, 600, 700)]
    assert reduction(1600, 1200, big, 64) == 8  # 600 / 8 = 75 >= 64
    assert reduction(1600, 1200, big, 224) == 2  # 600 / 4 = 150 < 224
    assert reduction(1600, 1200, [Box(0, 0, 100, 100)], 64) == 1


# --------------------------------------------------------------------------- decoded views


def _mean_colour(view: torch.Tensor) -> tuple[float, float]:
    red, green = view[0].float().mean(), view[1].float().mean()
    return float(red), float(green)


@pytest.mark.parametrize(("size", "box", "out"), [
    ((1600, 1200), Box(200, 100, 800, 900), 64),  # decoded at 1/8 (draft mode)
    ((500, 375), Box(300, 20, 120, 90), 64),  # a small crop: native pixels, upsampled
    ((800, 200), Box(0, 0, 267, 200), 32),
])
def test_a_view_is_its_box_of_the_original(tmp_path, size, box, out):
    path = tmp_path / "x.jpg"
    ramp(*size).save(path, quality=90)
    views, boxes, original = crop_views(str(path), out, lambda w, h: [box])
    assert original == size and boxes == [box]
    view = views[0]
    assert view.dtype == torch.uint8 and view.shape == (3, out, out)
    left, top, right, bottom = box.corners
    red, green = _mean_colour(view)  # a linear ramp's mean over the box = its centre's value
    assert red == pytest.approx(255 * (left + right) / 2 / size[0], abs=3)
    assert green == pytest.approx(255 * (top + bottom) / 2 / size[1], abs=3)
    # ... and its left and right columns are the box's edges
    assert float(view[0, :, 0].float().mean()) == pytest.approx(255 * left / size[0], abs=6)
    assert float(view[0, :, -1].float().mean()) == pytest.approx(255 * right / size[0], abs=6)


@pytest.mark.parametrize("size", SIZES)
def test_eval_view_equals_resize_then_centre_crop(tmp_path, size):
    path = tmp_path / "x.jpg"
    ramp(*size).save(path, quality=90)
    dataset = CentreViewFolder([(str(path), 0)], 64)
    view, label = dataset[0]
    assert view.shape == (3, 64, 64) and label == 0
    reference = v2.Compose([v2.Resize(round(64 * 8 / 7)), v2.CenterCrop(64), v2.PILToTensor()])
    with Image.open(path) as img:
        expected = reference(img.convert("RGB"))
    assert (view.float() - expected.float()).abs().mean() < 2.0


def test_protocol_training_crops_come_from_the_full_image(tmp_path):
    """The linear / fine-tune protocols train on random crops of the whole image: on a wide
    ramp they reach the left and right edges, which the centre view never shows; capped splits
    keep `train` and its crops item for item."""
    write_jpeg_folder(tmp_path, sizes=[(800, 200)], per_class=3)
    cfg = DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=32, max_eval_images=4)
    splits = load_splits(cfg)
    crops = splits.train_crops(SCALE, RATIO)
    assert len(crops) == len(splits.train) == 4
    assert [crops[i][1] for i in range(4)] == [splits.train[i][1] for i in range(4)]
    torch.manual_seed(0)
    red = torch.stack([crops[0][0][0].float() for _ in range(60)])  # red = 255 x / width
    centre = splits.train[0][0][0].float()
    assert centre.min() > 60 and centre.max() < 195  # the centre square of an 800 x 200 image
    assert red.amin(dim=(1, 2)).min() < 30 and red.amax(dim=(1, 2)).max() > 225
    assert len({float(r.mean()) for r in red}) > 50  # a new crop each time


def test_two_views_are_independent_crops_of_one_decode(tmp_path):
    write_jpeg_folder(tmp_path, per_class=3)
    splits = load_splits(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=32))
    assert isinstance(splits.pretrain, TwoViewFolder) and splits.collate is None
    torch.manual_seed(0)
    pairs = [splits.pretrain[i][0] for i in range(len(splits.pretrain))]
    assert all(p.dtype == torch.uint8 and p.shape == (2, 3, 32, 32) for p in pairs)
    assert sum(not torch.equal(p[0], p[1]) for p in pairs) >= len(pairs) - 1
    t, t_prime = ViewPair(view_params(AugmentConfig()), 32, splits.mean, splits.std)(
        torch.stack(pairs))
    assert t.shape == t_prime.shape == (len(pairs), 3, 32, 32) and t.dtype == torch.float32


def test_imagefolder_errors_name_the_file(tmp_path):
    write_jpeg_folder(tmp_path)
    (tmp_path / "train" / "a" / "0.jpg").write_bytes(b"not a jpeg")
    splits = load_splits(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=16))
    for dataset in (splits.pretrain, splits.train):
        with pytest.raises(ValueError, match=r"data\.root.*0\.jpg"):
            dataset[0]


def test_gpu_decoder_code_gives_the_same_crops_as_the_cpu_decoder(tmp_path):
    """The nvJPEG path's code, run on CPU (libjpeg-turbo): same boxes, same pixels within
    resampling differences. CI has no GPU; benchmarks/gpu_decode_check.py runs it on CUDA."""
    write_jpeg_folder(tmp_path)
    cfg = DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=32, decoder="gpu")
    splits = load_splits(cfg)
    assert isinstance(splits.pretrain, JpegFolder) and splits.collate is collate_jpeg
    torch.manual_seed(0)
    batch, labels = collate_jpeg([splits.pretrain[i] for i in range(4)])
    assert batch["offsets"].shape == (5,) and batch["boxes"].shape == (4, 2, 4)
    assert labels.tolist() == [0, 0, 1, 1]
    views = decode_crops(batch, 32, torch.device("cpu"))
    assert views.shape == (4, 2, 3, 32, 32) and views.min() >= 0 and views.max() <= 1
    for i, (path, _) in enumerate(splits.pretrain.samples[:4]):
        boxes = [Box(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in batch["boxes"][i].tolist()]
        cpu, _, _ = crop_views(path, 32, lambda w, h, boxes=boxes: boxes)
        for v in range(2):
            assert (views[i, v] * 255 - cpu[v].float()).abs().mean() < 3.0
    t, _ = ViewPair(view_params(AugmentConfig()), 32, splits.mean, splits.std)(batch)
    assert t.shape == (4, 3, 32, 32)


# --------------------------------------------------------------------------- byol-ray views


def test_views_command_draws_boxes_and_lists_them(tmp_path, capsys):
    write_jpeg_folder(tmp_path / "data", per_class=3)
    out = tmp_path / "out"
    code = main(["views", "--preset", "imagenet100", "--set", f"data.root={tmp_path / 'data'}",
                 "--set", "data.image_size=48", "--out", str(out), "--n", "5"])
    assert code == 0 and "5 images" in capsys.readouterr().out
    summary = json.loads((out / "views.json").read_text())
    assert summary["image_size"] == 48 and len(summary["images"]) == 5
    for record in summary["images"]:
        width, height = record["size"]
        assert (width, height) in SIZES and Path(record["path"]).is_file()
        with Image.open(record["path"]) as img:
            assert img.size == (width, height)
        for key in ("t", "t_prime", "eval"):
            left, top, right, bottom = record[key]
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
    with Image.open(out / "views.png") as sheet:
        assert sheet.width > 5 * 128 and sheet.height > 5 * 128


@pytest.mark.parametrize(("args", "message"), [
    (["--n", "0"], "--n"),
    (["--set", "data.root=/does/not/exist"], "data.root"),
    (["--preset", "cpu-mini"], "data.dataset"),
    (["--out", "FILE"], "--out"),
])
def test_views_command_rejects_bad_input_with_status_2(tmp_path, capsys, args, message):
    write_jpeg_folder(tmp_path / "data")
    (tmp_path / "FILE").write_text("x")
    argv = ["views", "--preset", "imagenet100", "--set", f"data.root={tmp_path / 'data'}",
            "--out", str(tmp_path / "out")]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        value = str(tmp_path / value) if value == "FILE" else value
        argv += [flag, value]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- config, end to end


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.decoder=nvdec"], "data.decoder: 'nvdec' is not one of: cpu, gpu"),
    (["data.decoder=gpu", "data.dataset=digits"], "data.decoder: gpu decodes ImageFolder"),
    (["data.decoder=gpu", "scaling.use_gpu=false"], "data.decoder: gpu needs CUDA"),
])
def test_decoder_key_is_checked_before_any_worker_starts(tmp_path, overrides, message):
    from byol_ray.cli.main import resolve_config
    from byol_ray.core.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        resolve_config("imagenet100", [f"data.root={tmp_path}", *overrides])


def test_evaluation_embeds_each_split_once_through_loader_workers(tmp_path):
    from byol_ray.cli.main import resolve_config
    from byol_ray.jobs.pretrain.evaluation import evaluate
    from byol_ray.learn.methods import build_method

    write_jpeg_folder(tmp_path, per_class=5)
    cfg = resolve_config("cpu-mini", [
        "data.dataset=imagefolder", f"data.root={tmp_path}", "data.image_size=16",
        "data.loader_workers=2", "data.max_eval_images=7", "eval.linear_batch_size=4",
        "eval.knn_k=[3]", "eval.few_label_per_class=0",
    ])
    splits = load_splits(cfg.data, cfg.augment)
    assert len(splits.train) == len(splits.test) == 7  # data.max_eval_images caps both
    method = build_method(cfg)
    batches = []
    method.encoder.register_forward_hook(lambda m, args, out: batches.append(len(out)))
    metrics = evaluate(method, splits, cfg, torch.device("cpu"), rank=0, world=1)
    assert sorted(batches) == sorted([4, 3, 4, 3])  # train once, test once (not twice)
    assert {"eval/knn_top1", "eval/embedding_std", "eval/collapsed"} <= set(metrics)


@pytest.mark.slow
def test_imagefolder_pretraining_runs_on_ray_and_gpu_decoding_needs_gpus(tmp_path, ray_joined):
    """The loop takes the loader's pre-cropped pairs; evaluation decodes in loader workers
    (on the session's local Ray cluster, tests/conftest.py)."""
    from mlflow.tracking import MlflowClient

    from byol_ray.cli.main import resolve_config
    from byol_ray.core.config import ConfigError
    from byol_ray.jobs.pretrain.driver import run_pretraining
    from byol_ray.runtime.cluster import check_resources

    write_jpeg_folder(tmp_path / "data", per_class=8)
    overrides = [
        "data.dataset=imagefolder", f"data.root={tmp_path / 'data'}", "data.image_size=16",
        "data.batch_size=8", "data.loader_workers=1", "scaling.num_workers=1",
        "train.epochs=2", "eval.eval_every=1", "eval.linear_epochs=2", "eval.knn_k=[3]",
        "train.checkpoint_every=0", "eval.few_label_per_class=0",
    ]
    with pytest.raises(ConfigError, match="data.decoder: gpu decodes with nvJPEG on CUDA"):
        check_resources(resolve_config("cpu-mini", [*overrides, "data.decoder=gpu"]))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_pretraining(resolve_config("cpu-mini", overrides), uri,
                             storage_path=str(tmp_path / "ray"))
    run = MlflowClient(uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert math.isfinite(metrics["train/loss"]) and metrics["eval/collapsed"] in (0.0, 1.0)
    assert 0 <= metrics["eval/knn_top1"] <= 100 and 0 <= metrics["eval/linear_top1"] <= 100


@pytest.mark.slow
def test_gpu_decode_check_runs_without_ray_mlflow_or_yaml(tmp_path):
    """benchmarks/gpu_decode_check.py runs on GPU machines that have only torch and
    torchvision: with Ray, MLflow and PyYAML unimportable it still runs (a CPU smoke here)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_decode_check.py"
    code = (
        "import runpy, sys\n"
        "for name in ('ray', 'mlflow', 'yaml'):\n"
        "    sys.modules[name] = None\n"
        f"sys.argv = ['gpu_decode_check.py', '--folder', {str(tmp_path / 'data')!r},\n"
        f"            '--out', {str(tmp_path / 'out.json')!r}]\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "assert 'byol_ray.core.config' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUT")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "smoke run on the CPU" in proc.stdout
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["gpu_vs_cpu_decoder_mean_abs_difference"] < 3
