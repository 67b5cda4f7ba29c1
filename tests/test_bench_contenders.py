"""The benchmarks compare steps "at equal numerics": check that claim on tensors.

`Plain` (one function, inline loss, `torch._foreach_*` EMA) must take exactly the steps of our
`Method` + optimiser + `after_step`; lightly's and byol-pytorch's losses must equal ours on the
same weights and views (when those optional packages are installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from contenders import ByolPytorch, Lightly, Ours, Plain, StepOptions, Views, numerics  # noqa: E402

from byol_ray.core.presets import get_preset  # noqa: E402


def _setup(batch: int = 16):
    cfg = get_preset("cpu-mini")
    cfg.data.batch_size = batch
    images = torch.randint(0, 256, (batch, 3, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return cfg, Views(cfg, torch.device("cpu")), images


def test_plain_step_takes_the_same_steps_as_ours():
    cfg, views, images = _setup()
    ours = Ours(cfg, torch.device("cpu"), StepOptions())
    plain = Plain(ours, StepOptions())
    for k in range(3):
        generator = torch.Generator().manual_seed(k)
        v1, v2 = views.t(images, generator=generator), views.t_prime(images, generator=generator)
        torch.testing.assert_close(ours.step(v1, v2), plain.step(v1, v2))
    method = ours.method
    pairs = [(method.encoder, plain.online[0]), (method.projector, plain.online[1]),
             (method.predictor, plain.predictor), (method.target, plain.target)]
    for a, b in pairs:
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, msg=name)


@pytest.mark.parametrize("other", [Lightly, ByolPytorch], ids=["lightly", "byol-pytorch"])
def test_reference_losses_equal_ours(other):
    pytest.importorskip("lightly" if other is Lightly else "byol_pytorch")
    cfg, views, images = _setup()
    ours = Ours(cfg, torch.device("cpu"), StepOptions())
    checked = numerics(ours, [other(ours, StepOptions())], *views(images))
    assert all(entry["equal"] for entry in checked.values()), checked
