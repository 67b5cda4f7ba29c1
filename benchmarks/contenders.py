"""One BYOL training step per contender, on the same weights, views and optimiser.

Shared by `step_throughput.py` (CPU, `make bench`), `gpu_check.py` (one GPU), `memory.py`,
`eval_cost.py`, `profile_step.py` and tests/gpu (timed by `harness.py`). Every
contender starts from the weights of `Ours` (copied, so each trains its own copy), gets the same
two views (byol_ray's `BatchAugment`, outside the contender) and the same optimiser (the
preset's, from `byol_ray.learn.optim`), so their ratios compare the method step itself: both views
through the online and the target network, the loss, backward, the optimiser step, the EMA.

- `Ours`: byol_ray's `Method` and optimiser, called as `byol_ray.jobs.pretrain.worker` calls them.
- `Plain`: the same step written out in plain PyTorch in one function: the overhead floor.
- `Lightly`: the `lightly` package's BYOL building blocks as in its examples/pytorch/byol.py
  (projection/prediction heads, `NegativeCosineSimilarity`, `update_momentum`,
  `cosine_schedule`); its loss is -(cos + cos)/2, ours 4 - 2 (cos + cos), so ours = 4 + 4 x its.
- `ByolPytorch`: lucidrains' `byol-pytorch` `BYOL` learner. It encodes both views in one
  batch, so its batch-norm statistics are joint; its numerics are compared in eval mode.

`lightly` and `byol-pytorch` are the optional extra `bench`; a missing one raises ImportError
at construction, which callers report as skipped.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from byol_ray.core.config import Config
from byol_ray.core.presets import get_preset
from byol_ray.learn.data import BatchAugment, view_params
from byol_ray.learn.methods import build_method
from byol_ray.learn.optim import build_optimizer

TOTAL_STEPS = 10_000  # the k/K of the EMA schedule: a step early in a long run


@dataclass(frozen=True)
class StepOptions:
    """How a contender runs: bf16 autocast, channels-last convolutions, torch.compile."""

    amp: bool = False
    channels_last: bool = False
    compile: bool = False

    def label(self) -> str:
        parts = ["bf16" if self.amp else "fp32"]
        parts += ["channels_last"] if self.channels_last else []
        parts += ["compile"] if self.compile else []
        return "+".join(parts)


def preset_config(preset: str, batch: int, image_size: int | None = None) -> Config:
    """`preset`'s config at this batch (and image size, else the preset's)."""
    cfg = get_preset(preset)
    cfg.data.batch_size = batch
    cfg.data.image_size = image_size or cfg.data.image_size
    return cfg


def random_images(batch: int, side: int, device: torch.device | str = "cpu") -> Tensor:
    """Seeded uint8 images (batch, 3, side, side) on `device`: the timings' synthetic input."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8,
                         generator=generator).to(device)


def shipped_options(cfg: Config, device: torch.device) -> StepOptions:
    """How the training loop runs this config's step on `device` (`train.amp` on CUDA only,
    `train.channels_last`, `train.compile`): our step "as shipped"."""
    return StepOptions(amp=cfg.train.amp and device.type == "cuda",
                       channels_last=cfg.train.channels_last, compile=cfg.train.compile)


class Views:
    """The two augmented views of a uint8 batch, as the training loop makes them (T, T')."""

    def __init__(self, cfg: Config, device: torch.device, mean=(0.5,) * 3, std=(0.25,) * 3):
        view_t, view_t_prime = view_params(cfg.augment)
        size = cfg.data.image_size
        self.t = BatchAugment(view_t, size, mean, std).to(device)
        self.t_prime = BatchAugment(view_t_prime, size, mean, std).to(device)

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.t(images), self.t_prime(images)


class Contender:
    """A model and optimiser that take training steps on pairs of views."""

    name = "contender"

    def __init__(self, options: StepOptions):
        self.options = options
        self.steps = 0

    def step(self, view1: Tensor, view2: Tensor) -> Tensor:
        """One training step; returns the detached loss (in the contender's own scale)."""
        raise NotImplementedError

    @torch.no_grad()
    def loss(self, view1: Tensor, view2: Tensor) -> float:
        """The loss on these views in our scale (BYOL's 2 - 2 cos summed over both
        directions), without updating anything but batch-norm running statistics."""
        raise NotImplementedError

    def _input(self, view: Tensor) -> Tensor:
        if self.options.channels_last:
            return view.contiguous(memory_format=torch.channels_last)
        return view

    def _autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.options.amp)

    def _prepare(self, module: nn.Module) -> None:
        if self.options.channels_last:
            module.to(memory_format=torch.channels_last)


class Ours(Contender):
    """byol_ray's step, in the order of `jobs.pretrain.worker.train_worker`'s inner loop."""

    name = "ours"

    def __init__(self, cfg: Config, device: torch.device, options: StepOptions, seed: int = 0):
        super().__init__(options)
        torch.manual_seed(seed)
        self.cfg, self.device = cfg, device
        self.method = build_method(cfg).to(device).train()
        self._prepare(self.method)
        self.peak_lr = cfg.optim.lr(cfg.data.batch_size)
        self.optimizer = build_optimizer(self.method, cfg.optim, self.peak_lr)
        self.forward = torch.compile(self.method) if options.compile else self.method

    def step(self, view1: Tensor, view2: Tensor) -> Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak_lr
        with self._autocast(self.device):
            outputs = self.forward(self._input(view1), self._input(view2))
        outputs["loss"].backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        self.method.after_step(self.steps, TOTAL_STEPS)
        return outputs["loss"].detach()

    @torch.no_grad()
    def loss(self, view1: Tensor, view2: Tensor) -> float:
        return float(self.method(view1, view2)["loss"])


def _tau(step: int, tau_base: float) -> float:
    return 1 - (1 - tau_base) * (math.cos(math.pi * step / TOTAL_STEPS) + 1) / 2


class Plain(Contender):
    """The same step as one plain PyTorch function: modules, inline loss, foreach EMA."""

    name = "plain"

    def __init__(self, ours: Ours, options: StepOptions):
        super().__init__(options)
        method, self.device = ours.method, ours.device
        self.online = copy.deepcopy(nn.Sequential(method.encoder, method.projector))
        self.predictor = copy.deepcopy(method.predictor)
        self.target = copy.deepcopy(method.target)
        trainable = nn.ModuleList([self.online, self.predictor])
        for module in (trainable, self.target):
            self._prepare(module)
        self.tau_base = ours.cfg.method.tau_base
        self.peak_lr = ours.peak_lr
        self.optimizer = build_optimizer(trainable, ours.cfg.optim, self.peak_lr)
        self.pairs = [
            (list(self.target.parameters()), list(self.online.parameters())),
            (list(self.target.buffers()), list(self.online.buffers())),
        ]
        self.forward = torch.compile(self._loss) if options.compile else self._loss

    def _loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = self.online(view1), self.online(view2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1, t2 = self.target(view1), self.target(view2)
        cos = F.cosine_similarity(p1.float(), t2.float()) + F.cosine_similarity(
            p2.float(), t1.float())
        return (4 - 2 * cos).mean()

    def step(self, view1: Tensor, view2: Tensor) -> Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak_lr
        with self._autocast(self.device):
            loss = self.forward(self._input(view1), self._input(view2))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        tau = _tau(self.steps, self.tau_base)
        with torch.no_grad():
            (xi, theta), (target_buffers, online_buffers) = self.pairs
            torch._foreach_mul_(xi, tau)
            torch._foreach_add_(xi, theta, alpha=1 - tau)
            torch._foreach_copy_(target_buffers, online_buffers)
        return loss.detach()

    @torch.no_grad()
    def loss(self, view1: Tensor, view2: Tensor) -> float:
        return float(self._loss(view1, view2))


def _copy_mlp_into_lightly(ours: nn.Sequential, head: nn.Module) -> None:
    """Our Linear-BN-ReLU-Linear into lightly's head, whose first Linear has no bias (the
    batch norm after it cancels a bias exactly in training mode)."""
    state = {f"layers.{k}": v for k, v in ours.state_dict().items() if k != "0.bias"}
    head.load_state_dict(state)


class Lightly(Contender):
    """lightly's BYOL as in its examples/pytorch/byol.py, on our weights and optimiser."""

    name = "lightly"

    def __init__(self, ours: Ours, options: StepOptions):
        super().__init__(options)
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad, update_momentum
        from lightly.utils.scheduler import cosine_schedule

        self._update_momentum, self._cosine_schedule = update_momentum, cosine_schedule
        method, model_cfg = ours.method, ours.cfg.model
        self.device, self.tau_base, self.peak_lr = ours.device, ours.cfg.method.tau_base, (
            ours.peak_lr)
        feat_dim = method.projector[0].in_features
        self.backbone = copy.deepcopy(method.encoder)
        self.projection_head = BYOLProjectionHead(
            feat_dim, model_cfg.proj_hidden_dim, model_cfg.proj_dim)
        self.prediction_head = BYOLPredictionHead(
            model_cfg.proj_dim, model_cfg.pred_hidden_dim, model_cfg.proj_dim)
        _copy_mlp_into_lightly(method.projector, self.projection_head)
        _copy_mlp_into_lightly(method.predictor, self.prediction_head)
        self.backbone_momentum = copy.deepcopy(method.target[0])
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        _copy_mlp_into_lightly(method.target[1], self.projection_head_momentum)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.model = nn.ModuleDict({
            "backbone": self.backbone, "projection_head": self.projection_head,
            "prediction_head": self.prediction_head, "backbone_momentum": self.backbone_momentum,
            "projection_head_momentum": self.projection_head_momentum,
        }).to(self.device).train()
        self._prepare(self.model)
        self.criterion = NegativeCosineSimilarity()
        self.optimizer = build_optimizer(self.model, ours.cfg.optim, self.peak_lr)
        self.forward = torch.compile(self._loss) if options.compile else self._loss

    def _online(self, x: Tensor) -> Tensor:
        y = self.backbone(x).flatten(start_dim=1)
        return self.prediction_head(self.projection_head(y))

    def _momentum(self, x: Tensor) -> Tensor:
        y = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(y).detach()

    def _loss(self, x0: Tensor, x1: Tensor) -> Tensor:
        p0, z0 = self._online(x0), self._momentum(x0)
        p1, z1 = self._online(x1), self._momentum(x1)
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    def step(self, view1: Tensor, view2: Tensor) -> Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak_lr
        momentum = self._cosine_schedule(self.steps, TOTAL_STEPS, self.tau_base, 1)
        self._update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        self._update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        with self._autocast(self.device):
            loss = self.forward(self._input(view1), self._input(view2))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.steps += 1
        return loss.detach()

    @torch.no_grad()
    def loss(self, view1: Tensor, view2: Tensor) -> float:
        return 4 + 4 * float(self._loss(view1, view2))


class ByolPytorch(Contender):
    """lucidrains' byol-pytorch `BYOL` learner on our weights, views passed through its
    augmentation hooks (it is handed both views concatenated and splits them)."""

    name = "byol-pytorch"

    def __init__(self, ours: Ours, options: StepOptions):
        super().__init__(options)
        from byol_pytorch import BYOL

        method, model_cfg = ours.method, ours.cfg.model
        self.device, self.peak_lr = ours.device, ours.peak_lr
        self.learner = BYOL(
            copy.deepcopy(method.encoder), image_size=ours.cfg.data.image_size, hidden_layer=-1,
            projection_size=model_cfg.proj_dim, projection_hidden_size=model_cfg.proj_hidden_dim,
            augment_fn=_first_half, augment_fn2=_second_half,
            moving_average_decay=ours.cfg.method.tau_base, sync_batchnorm=False,
            use_simplicial_embeddings=False,
        )
        # Its constructor ran a training-mode forward: restore the encoder's BN statistics too.
        self.learner.online_encoder.net.load_state_dict(method.encoder.state_dict())
        self.learner.online_encoder.projector.load_state_dict(method.projector.state_dict())
        self.learner.online_predictor.load_state_dict(method.predictor.state_dict())
        self.learner.target_encoder.net.load_state_dict(method.target[0].state_dict())
        self.learner.target_encoder.projector.load_state_dict(method.target[1].state_dict())
        self.learner.to(self.device).train()
        self._prepare(self.learner)
        self.optimizer = build_optimizer(self.learner, ours.cfg.optim, self.peak_lr)

    def step(self, view1: Tensor, view2: Tensor) -> Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak_lr
        with self._autocast(self.device):
            loss = self.learner(torch.cat([self._input(view1), self._input(view2)]))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.learner.update_moving_average()
        self.steps += 1
        return loss.detach()

    @torch.no_grad()
    def loss(self, view1: Tensor, view2: Tensor) -> float:
        return float(self.learner(torch.cat([view1, view2])))


def _first_half(x: Tensor) -> Tensor:
    return x[: x.shape[0] // 2]


def _second_half(x: Tensor) -> Tensor:
    return x[x.shape[0] // 2 :]


@torch.no_grad()
def numerics(ours: Ours, others: list[Contender], view1: Tensor, view2: Tensor,
             rtol: float = 1e-4) -> dict[str, dict]:
    """Each contender's loss on the same weights and views against ours (in our scale).

    Train mode (batch statistics) for all but byol-pytorch, whose joint batch norm over both
    views differs by design; it and ours are compared in eval mode (running statistics).
    Call before any training step, while every contender still holds our weights.
    """
    ours.method.eval()  # first: a training-mode forward moves the running statistics
    reference = {"eval": ours.loss(view1, view2)}
    ours.method.train()
    reference["train"] = ours.loss(view1, view2)
    report = {}
    for other in others:
        mode = "eval" if isinstance(other, ByolPytorch) else "train"
        module = other.learner if isinstance(other, ByolPytorch) else None
        if module is not None:
            module.eval()
        value = other.loss(view1, view2)
        if module is not None:
            module.train()
        diff = abs(value - reference[mode])
        report[other.name] = {
            "mode": mode, "ours": reference[mode], "theirs": value, "abs_diff": diff,
            "equal": diff <= rtol * max(1.0, abs(reference[mode])),
        }
    return report
