"""`train.channels_last` changes the layout of the convolutions' tensors, never the numbers:
the same loss, gradients and EMA target as the default layout on the same weights and views."""

from __future__ import annotations

import torch

from byol_ray.cli.main import resolve_config
from byol_ray.jobs.pretrain.step import train_micro_batch
from byol_ray.jobs.pretrain.worker import in_layout
from byol_ray.learn.methods import build_method
from byol_ray.learn.optim import build_optimizer


def _one_step(channels_last: bool) -> tuple[float, list[torch.Tensor]]:
    cfg = resolve_config("cifar10", ["model.proj_hidden_dim=32", "model.pred_hidden_dim=32",
                                     "model.proj_dim=16"], check_paths=False)
    layout = torch.channels_last if channels_last else torch.preserve_format
    torch.manual_seed(0)
    method = build_method(cfg).to("cpu", memory_format=layout)
    optimizer = build_optimizer(method, cfg.optim, 0.1)
    generator = torch.Generator().manual_seed(1)
    views = tuple(torch.randn(8, 3, 32, 32, generator=generator) for _ in range(2))
    outputs, step = train_micro_batch(method, optimizer, in_layout(views, layout), 0, 1,
                                      lambda _: 0.1)
    method.after_step(1, 10)
    assert step == 0
    conv = method.encoder.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    return float(outputs["loss"].detach()), [p.detach().clone() for p in method.target.parameters()]


def test_channels_last_gives_the_default_layouts_loss_and_weights():
    loss, target = _one_step(channels_last=False)
    loss_nhwc, target_nhwc = _one_step(channels_last=True)
    assert abs(loss - loss_nhwc) < 1e-5 * abs(loss)
    for a, b in zip(target, target_nhwc, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_in_layout_leaves_views_alone_by_default():
    views = (torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
    assert in_layout(views, torch.preserve_format) is views
    assert all(v.is_contiguous(memory_format=torch.channels_last)
               for v in in_layout(views, torch.channels_last))


def test_the_imagenet_presets_train_channels_last_and_cpu_mini_does_not():
    assert resolve_config("imagenet", [], check_paths=False).train.channels_last
    assert not resolve_config("cpu-mini", [], check_paths=False).train.channels_last
