"""BYOL's batched view augmentations: shapes, per-sample randomness, recipes, components."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from byol_ray.core.config import AUGMENT_RECIPES, AugmentConfig
from byol_ray.learn.data import BatchAugment, ViewParams, eval_transform, view_params
from byol_ray.learn.data.augment import _shift_hue

ID = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean/std that leave [0, 1] values as they are
T, T_PRIME = view_params(AugmentConfig())
OFF = dict(flip_p=0.0, jitter_p=0.0, grey_p=0.0, blur_p=0.0, solarize_p=0.0)
NO_CROP = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))


def images(n: int = 8, side: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=gen)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def only(**changes) -> ViewParams:
    """Identity view (full-image crop, everything off) with some components switched on."""
    return dataclasses.replace(T, **{**OFF, **NO_CROP, **changes})


def test_output_shape_dtype_device_and_normalisation():
    x = images(6, 20)
    out = BatchAugment(T, 12, (0.5, 0.4, 0.3), (0.2, 0.3, 0.4))(x, seeded())
    assert out.shape == (6, 3, 12, 12) and out.dtype == torch.float32
    assert out.device == x.device
    assert torch.isfinite(out).all()
    unit = BatchAugment(T_PRIME, 12, *ID)(x.float() / 255, seeded())  # float input accepted
    assert unit.min() >= 0 and unit.max() <= 1


def test_per_sample_randomness_and_seeded_determinism():
    x = images(1).expand(16, -1, -1, -1)  # 16 copies of one image
    aug = BatchAugment(T, 16, *ID)
    out = aug(x, seeded(1))
    distinct = {tuple(o.flatten()[:50].tolist()) for o in out}
    assert len(distinct) == 16
    assert torch.equal(out, aug(x, seeded(1)))
    assert not torch.equal(out, aug(x, seeded(2)))


def test_identity_view_is_exact():
    x = images()
    out = BatchAugment(only(), 16, *ID)(x, seeded())
    assert torch.allclose(out, x.float() / 255, atol=1e-6)


def test_crop_only_crops_and_resizes():
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    x[:, :, :16] = 255  # white top half, black bottom half
    params = dataclasses.replace(view_params(AugmentConfig(recipe="crop_only"))[1],
                                 crop_scale=(0.1, 0.3))
    out = BatchAugment(params, 16, *ID)(x, seeded())
    assert out.shape == (4, 3, 16, 16)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])  # no colour
    rows = out[:, 0].mean(dim=2)  # each row stays uniform: crops, no rotation, no blur noise
    assert torch.allclose(out[:, 0], rows.unsqueeze(-1).expand_as(out[:, 0]), atol=1e-6)
    assert (rows.diff(dim=1) <= 1e-6).all()  # white stays above black: never flipped vertically


def test_flip_p_one_mirrors():
    x = images()
    out = BatchAugment(only(flip_p=1.0), 16, *ID)(x, seeded())
    assert torch.allclose(out, x.flip(-1).float() / 255, atol=1e-6)


def test_solarize_p_one():
    x = images()
    out = BatchAugment(only(solarize_p=1.0), 16, *ID)(x, seeded())
    unit = x.float() / 255
    assert torch.allclose(out, torch.where(unit >= 0.5, 1 - unit, unit), atol=1e-6)


def test_grey_p_one_equal_channels():
    out = BatchAugment(only(grey_p=1.0), 16, *ID)(images(), seeded())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert not torch.equal(out[0, 0], out[1, 0])


def test_blur_smooths_and_keeps_mean():
    x = images(4, 32)
    out = BatchAugment(only(blur_p=1.0, blur_sigma=(1.5, 2.0)), 32, *ID)(x, seeded())
    unit = x.float() / 255
    assert out.std() < 0.6 * unit.std()
    assert torch.allclose(out.mean(dim=(1, 2, 3)), unit.mean(dim=(1, 2, 3)), atol=0.02)
    assert out.min() >= 0 and out.max() <= 1


def test_jitter_p_one_changes_colours_per_sample():
    x = images(1).expand(8, -1, -1, -1)
    out = BatchAugment(only(jitter_p=1.0), 16, *ID)(x, seeded())
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out[0], x[0].float() / 255, atol=1e-3)
    assert not torch.allclose(out[0], out[1], atol=1e-3)


def test_hue_rotation_matches_torchvision():
    x = torch.rand(3, 3, 8, 8, generator=seeded())
    shifts = torch.tensor([0.0, 0.1, -0.4])
    out = _shift_hue(x, shifts)
    for i, shift in enumerate(shifts.tolist()):
        assert torch.allclose(out[i], TF.adjust_hue(x[i], shift), atol=1e-5)


def test_view_params_baseline_and_t_prime():
    assert (T.blur_p, T.solarize_p) == (1.0, 0.0)
    assert (T_PRIME.blur_p, T_PRIME.solarize_p) == (0.1, 0.2)
    assert dataclasses.replace(T, blur_p=0.1, solarize_p=0.2) == T_PRIME
    assert (T.crop_scale, T.flip_p, T.jitter_p, T.grey_p) == ((0.08, 1.0), 0.5, 0.8, 0.2)
    assert (T.brightness, T.contrast, T.saturation, T.hue) == (0.4, 0.4, 0.2, 0.1)
    assert T.blur_sigma == (0.1, 2.0)


EXPECTED_OFF = {
    "baseline": set(),
    "remove_flip": {"flip_p"},
    "remove_blur": {"blur_p"},
    "remove_colour": {"jitter_p", "grey_p"},
    "remove_colour_jitter": {"jitter_p"},
    "remove_grey": {"grey_p"},
    "crop_only": {"flip_p", "jitter_p", "grey_p", "blur_p", "solarize_p"},
    "crop_flip": {"jitter_p", "grey_p", "blur_p", "solarize_p"},
    "crop_colour": {"flip_p", "blur_p", "solarize_p"},
}


@pytest.mark.parametrize("recipe", AUGMENT_RECIPES)
def test_recipes_turn_off_exactly_their_components(recipe):
    assert set(EXPECTED_OFF) == set(AUGMENT_RECIPES)
    for base, view in zip((T, T_PRIME), view_params(AugmentConfig(recipe=recipe)), strict=True):
        changed = {f.name for f in dataclasses.fields(ViewParams)
                   if getattr(base, f.name) != getattr(view, f.name)}
        off = {name for name in EXPECTED_OFF[recipe] if getattr(base, name) > 0}
        assert changed == off
        assert all(getattr(view, name) == 0 for name in EXPECTED_OFF[recipe])


def test_strength_scales_jitter():
    t, _ = view_params(AugmentConfig(strength=2.0))
    assert (t.brightness, t.contrast, t.saturation, t.hue) == pytest.approx((0.8, 0.8, 0.4, 0.2))
    strong, _ = view_params(AugmentConfig(strength=10.0))
    assert strong.hue == 0.5
    none, _ = view_params(AugmentConfig(strength=0.0))
    assert none.jitter_p == 0 and none.brightness == 0 and none.hue == 0
    with pytest.raises(ValueError, match="augment.recipe"):
        view_params(AugmentConfig(recipe="nope"))


def test_eval_transform_deterministic_and_sized():
    x = images(3, 24)
    out = eval_transform(x, 12, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert out.shape == (3, 3, 12, 12) and out.dtype == torch.float32
    assert torch.equal(out, eval_transform(x, 12, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    same = eval_transform(x, 24, *ID)
    assert torch.allclose(same, x.float() / 255)
    flat = eval_transform(torch.full((1, 3, 24, 24), 255, dtype=torch.uint8), 12, *ID)
    assert torch.allclose(flat, torch.ones(1, 3, 12, 12))


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="B, 3, H, W"):
        BatchAugment(T, 8, *ID)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


def test_component_rates_follow_t_and_t_prime():
    x = torch.full((1, 3, 16, 16), 191, dtype=torch.uint8).expand(2000, -1, -1, -1)
    for view in (T, T_PRIME):
        params = only(solarize_p=view.solarize_p)
        out = BatchAugment(params, 16, *ID)(x, seeded())[:, 0, 0, 0]
        assert (out < 0.5).float().mean().item() == pytest.approx(view.solarize_p, abs=0.03)
    stripes = torch.zeros(2000, 3, 16, 16, dtype=torch.uint8)
    stripes[..., ::2] = 255
    for view in (T, T_PRIME):
        params = only(blur_p=view.blur_p, blur_sigma=(1.0, 2.0))
        out = BatchAugment(params, 16, *ID)(stripes, seeded())
        blurred = (out[:, 0, 0, 0] < 0.99).float().mean().item()
        assert blurred == pytest.approx(view.blur_p, abs=0.03)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_stays_on_device():
    x = images(8).cuda()
    out = BatchAugment(T_PRIME, 16, *ID).cuda()(x, seeded())  # CPU generator, CUDA images
    assert out.device == x.device and out.shape == (8, 3, 16, 16)
    cpu = BatchAugment(T_PRIME, 16, *ID)(x.cpu(), seeded())
    assert torch.allclose(out.cpu(), cpu, atol=1e-4)
    gpu_gen = torch.Generator(device="cuda").manual_seed(0)
    assert BatchAugment(T, 16, *ID)(x, gpu_gen).device == x.device
    assert eval_transform(x, 12, *ID).device == x.device
