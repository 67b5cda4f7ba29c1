"""BYOL's batched view augmentations: shapes, per-sample randomness, recipes, components, and
the colour ops against the reference's formulas (DeepMind's augmentations.py, TF's adjust_*)
written here in numpy / colorsys, independent of the implementation."""

from __future__ import annotations

import colorsys
import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from byol_ray.core.config import AUGMENT_RECIPES, AugmentConfig, ConfigError, validate
from byol_ray.core.presets import PRESETS, get_preset
from byol_ray.learn.data import BatchAugment, ViewParams, eval_transform, view_params
from byol_ray.learn.data.augment import (
    JITTER_OPS,
    _jitter,
    _jitter_draws,
    _jitter_every_row,
    _Random,
    _shift_hue,
)

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
    inside = (..., slice(1, -1), slice(1, -1))  # the border darkens: zero padding
    assert out.std() < 0.6 * unit.std()
    assert torch.allclose(out[inside].mean(dim=(1, 2, 3)), unit[inside].mean(dim=(1, 2, 3)),
                          atol=0.02)
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
    stripes = torch.zeros(2000, 3, 32, 32, dtype=torch.uint8)  # 32 px: the blur has 3 taps
    stripes[..., ::2] = 255
    for view in (T, T_PRIME):
        params = only(blur_p=view.blur_p, blur_sigma=(1.0, 2.0))
        out = BatchAugment(params, 32, *ID)(stripes, seeded())
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


# ------------------------------------------------ colour ops as the reference computes them


def _np_hsv_map(x: np.ndarray, fn) -> np.ndarray:
    """Apply fn(h, s, v) -> (h, s, v) to every pixel of a (3, H, W) image through colorsys."""
    out = np.empty_like(x)
    for i, j in np.ndindex(*x.shape[1:]):
        out[:, i, j] = colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*x[:, i, j])))
    return out


# The reference's four jitter ops on one (3, H, W) float64 image [DM augmentations.py, TF
# adjust_brightness / adjust_contrast / adjust_saturation / adjust_hue].
NP_OPS = (
    lambda x, delta: x + delta,
    lambda x, f: (x - x.mean(axis=(1, 2), keepdims=True)) * f + x.mean(axis=(1, 2), keepdims=True),
    lambda x, f: _np_hsv_map(x, lambda h, s, v: (h, min(max(s * f, 0.0), 1.0), v)),
    lambda x, delta: _np_hsv_map(x, lambda h, s, v: ((h + delta) % 1.0, s, v)),
)


def _np_jitter(x: np.ndarray, factors, order) -> np.ndarray:
    """The reference's jitter: each op in `order`, clipped to [0, 1] after each."""
    for op in order:
        x = np.clip(NP_OPS[op](x, factors[op]), 0.0, 1.0)
    return x


def _colours(n: int, side: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=seeded(seed))


@pytest.mark.parametrize("op", range(4))
def test_each_reference_colour_op_matches_its_formula(op):
    x = _colours(5)
    factors = ([-0.3, -0.05, 0.0, 0.1, 0.4], [0.6, 0.9, 1.0, 1.2, 1.4],
               [0.0, 0.8, 1.0, 1.2, 3.0], [-0.1, -0.02, 0.0, 0.05, 0.5])[op]
    f = torch.tensor(factors)
    out = JITTER_OPS["reference"][op](x, f.view(-1, 1, 1, 1)).clamp(0, 1)
    for i, factor in enumerate(factors):
        expected = np.clip(NP_OPS[op](x[i].double().numpy(), factor), 0, 1)
        np.testing.assert_allclose(out[i].numpy(), expected, atol=2e-6)
    # The identity factor is an exact no-op (the jitter runs every op on every row).
    identity = factors.index(0.0 if op in (0, 3) else 1.0)
    assert torch.equal(out[identity], x[identity])


def test_jitter_runs_each_row_in_its_own_order_and_order_matters():
    orders = list(itertools.permutations(range(4)))
    x = _colours(1, side=6, seed=3).expand(24, -1, -1, -1)
    factors = (0.15, 1.35, 0.7, 0.08)  # brightness delta, contrast, saturation, hue delta
    draws = [torch.full((24,), f) for f in factors]
    out = _jitter(x, torch.ones(24, dtype=torch.bool), draws, torch.tensor(orders), T)
    expected = [_np_jitter(x[0].double().numpy(), factors, order) for order in orders]
    for got, want in zip(out, expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    # Saturation and hue commute in HSV and brightness commutes with hue: the others do not.
    distinct = {tuple(np.round(e, 4).ravel()) for e in expected}
    assert len(distinct) == len({tuple(np.round(o.numpy(), 4).ravel()) for o in out}) >= 12
    off = _jitter(x, torch.zeros(24, dtype=torch.bool), draws, torch.tensor(orders), T)
    assert torch.equal(off, x)  # the jitter is one event: off means every op off


def test_jitter_draws_every_order_and_the_reference_ranges_scaled_by_strength():
    n = 2400
    for strength in (1.0, 2.0):
        t, _ = view_params(AugmentConfig(strength=strength))
        on, factors, order = _jitter_draws(_Random(seeded(), torch.device("cpu")), n, t)
        counts = {perm: 0 for perm in itertools.permutations(range(4))}
        for row in order.tolist():
            counts[tuple(row)] += 1
        assert len(counts) == 24 and all(60 <= c <= 140 for c in counts.values())  # ~100 each
        assert on.float().mean().item() == pytest.approx(0.8, abs=0.03)
        s = strength
        bounds = [(-0.4 * s, 0.4 * s), (max(0, 1 - 0.4 * s), 1 + 0.4 * s),
                  (1 - 0.2 * s, 1 + 0.2 * s), (-0.1 * s, 0.1 * s)]
        for f, (low, high) in zip(factors, bounds, strict=True):
            assert low <= f.min() < low + 0.02 * s and high - 0.02 * s < f.max() <= high


@pytest.mark.parametrize("colour_ops", ["reference", "torchvision"])
def test_brightness_alone_adds_a_delta_by_default_and_multiplies_as_torchvision(colour_ops):
    x = torch.full((64, 3, 4, 4), 0.5) + torch.linspace(-0.05, 0.05, 16).view(1, 1, 4, 4)
    params = only(jitter_p=1.0, contrast=0.0, saturation=0.0, hue=0.0, colour_ops=colour_ops)
    out = BatchAugment(params, 4, *ID)(x, seeded())
    delta, ratio = out - x, out / x
    per_sample, identity = (delta, 0.0) if colour_ops == "reference" else (ratio, 1.0)
    spread = per_sample.flatten(1).amax(1) - per_sample.flatten(1).amin(1)
    assert spread.max() < 1e-5  # one delta (reference) or one factor (torchvision) per image
    assert (per_sample - identity).abs().amax() > 0.3  # drawn from [-0.4, 0.4] / [0.6, 1.4]


def test_grey_uses_the_reference_luma():
    x = _colours(4)
    out = BatchAugment(only(grey_p=1.0), 5, *ID)(x, seeded())
    r, g, b = x.double().numpy().transpose(1, 0, 2, 3)
    np.testing.assert_allclose(out[:, 0].numpy(), 0.2989 * r + 0.5870 * g + 0.1140 * b, atol=1e-6)


def test_every_preset_uses_the_reference_colour_ops_and_bad_choices_name_the_field():
    for name in PRESETS:
        assert all(v.colour_ops == "reference" for v in view_params(get_preset(name).augment))
    assert view_params(AugmentConfig(colour_ops="torchvision"))[1].colour_ops == "torchvision"
    cfg = get_preset("cpu-mini")
    cfg.augment.colour_ops = "hsv"
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert error.value.field == "augment.colour_ops"
    assert "reference, torchvision" in str(error.value)


@pytest.mark.parametrize("size", [32, 96, 224])
def test_blur_kernel_is_the_references(size):
    """2 * int(size / 10 / 2) + 1 taps (23 at 224), a normalised Gaussian, separable."""
    taps = 2 * int(size / 10 / 2) + 1
    assert {32: 3, 96: 9, 224: 23}[size] == taps
    x = torch.zeros(1, 3, size, size)
    x[:, :, size // 2, size // 2] = 1.0  # an impulse: the output is the kernel itself
    out = BatchAugment(only(blur_p=1.0, blur_sigma=(3.0, 3.0)), size, *ID)(x, seeded(), crop=False)
    offsets = np.arange(taps) - taps // 2
    kernel = np.exp(-(offsets**2) / (2 * 3.0**2))
    kernel /= kernel.sum()
    window = slice(size // 2 - taps // 2, size // 2 + taps // 2 + 1)
    np.testing.assert_allclose(out[0, :, window, window].numpy(),
                               np.broadcast_to(np.outer(kernel, kernel), (3, taps, taps)),
                               atol=1e-7)
    assert out[0, :, window, window].sum().item() == pytest.approx(3.0, abs=1e-5)  # nothing out


@pytest.mark.parametrize("colour_ops", ["reference", "torchvision"])
@pytest.mark.parametrize("changes", [{}, {"jitter_p": 1.0, "saturation": 0.0},
                                     {"brightness": 0.0, "hue": 0.5}, {"jitter_p": 0.0}])
def test_jitter_on_the_rows_whose_turn_it_is_equals_every_row_through_every_op(colour_ops,
                                                                               changes):
    """The CPU path (each stage runs each op on its rows only: 4 passes, issue 29's cost)
    gives the very values of the path that runs all 16 passes on every row (CUDA's), inputs
    a little outside [0, 1] included (roi_align's rounding)."""
    params = dataclasses.replace(T, colour_ops=colour_ops, **changes)
    generator = seeded(3)
    for _ in range(4):
        x = torch.rand(300, 3, 8, 8, generator=generator) * 1.02 - 0.01
        draws = _jitter_draws(_Random(generator, x.device), len(x), params)
        assert torch.equal(_jitter(x, *draws, params), _jitter_every_row(x, *draws, params))


@pytest.mark.parametrize("size", [8, 16, 19])
def test_blur_below_20_px_is_the_reference_s_single_tap(size):
    """int(size / 10 / 2) = 0 below 20 px: one tap, the image unchanged (issue 30: cpu-mini's
    16 px had a 3-tap blur the reference does not have), and the later draws unchanged."""
    assert 2 * int(size / 10 / 2) + 1 == 1
    x = torch.rand(64, 3, size, size)
    augment = BatchAugment(only(blur_p=1.0, blur_sigma=(1.0, 2.0), solarize_p=0.5), size, *ID)
    out = augment(x, seeded(), crop=False)
    no_blur = BatchAugment(only(blur_p=0.0, solarize_p=0.5), size, *ID)(x, seeded(), crop=False)
    assert augment.blur_radius == 0 and torch.equal(out, no_blur)
    blurred_only = BatchAugment(only(blur_p=1.0, blur_sigma=(1.0, 2.0)), size, *ID)
    assert torch.equal(blurred_only(x, seeded(), crop=False), x)
    assert BatchAugment(T, 20, *ID).blur_radius == 1 and BatchAugment(T, 224, *ID).blur_radius == 11


def test_blur_pads_borders_with_zeros_as_the_reference():
    """DeepMind's blur is a 'SAME' depthwise convolution: zeros outside the image, so a flat
    image keeps its value inside and darkens by the outer taps' weight on its border."""
    flat = torch.full((1, 3, 32, 32), 0.8)
    out = BatchAugment(only(blur_p=1.0, blur_sigma=(1.0, 1.0)), 32, *ID)(flat, seeded(), crop=False)
    outer_tap = math.exp(-0.5) / (1 + 2 * math.exp(-0.5))  # 3 taps at 32 px, sigma 1
    assert torch.allclose(out[0, :, 1:-1, 1:-1], flat[0, :, 1:-1, 1:-1], atol=1e-6)
    assert out[0, 0, 0, 16].item() == pytest.approx(0.8 * (1 - outer_tap), abs=1e-6)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.8 * (1 - outer_tap) ** 2, abs=1e-6)
