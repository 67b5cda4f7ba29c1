"""Correctness of the CUDA paths; skipped without CUDA (`benchmarks/gpu_check.sh` runs them on
a GPU machine, their numbers in its JUnit XML as each test's `result` property).

- bf16: the BYOL loss, gradients and a short training run under bfloat16 autocast against
  float32, and float32 on the GPU against the CPU, on the same weights and views.
- augment: `BatchAugment` on CUDA against the CPU, with the same random draws (equal images)
  and with each device's own generator (equal distributions, two-sample KS tests).
- distributed: two processes, NCCL (gloo on the CPU with one GPU): `gather_features`, the
  all-reduce and SyncBatchNorm (two GPUs) against one process on the whole batch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from contenders import Ours, StepOptions, Views, preset_config  # noqa: E402

from byol_ray.core.config import Config, from_dict, to_dict  # noqa: E402
from byol_ray.learn.data import BatchAugment, view_params  # noqa: E402
from byol_ray.learn.methods import build_method  # noqa: E402
from byol_ray.learn.metrics import gather_features, shard_indices  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
# preset -> (batch of the bf16 check, stored image side, views sampled per device)
SIZES = {"cifar10": (64, 32, 8192), "imagenet": (16, 256, 1024)}

# bfloat16 keeps 8 significant bits (relative precision 2^-8 = 0.4%): the loss, computed in
# float32 from bf16 activations, may move by about that; more means a path loses precision.
BF16_LOSS_RTOL = 1e-2
# Over a short training run from the same weights on the same views, the two precisions'
# trajectories part (the step is chaotic) but their losses must stay alike: mean of the last
# steps' losses within this fraction.
BF16_TRAJECTORY_RTOL = 5e-2
FP32_DEVICE_RTOL = 1e-3  # the same float32 loss on CPU and GPU (TF32 off), kernels differ
KS_ALPHA = 1e-3  # family-wise false-alarm rate of the distribution tests


@contextlib.contextmanager
def strict_fp32():
    """No TF32 in matmuls and convolutions while inside: a float32 reference."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _loss_and_grads(method: nn.Module, v1: Tensor, v2: Tensor, amp: bool
                    ) -> tuple[float, dict[str, Tensor]]:
    method.zero_grad(set_to_none=True)
    with torch.autocast(v1.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = method(v1, v2)["loss"]
    loss.backward()
    parts: dict[str, list[Tensor]] = {}
    for name, p in method.named_parameters():
        if p.grad is not None:
            parts.setdefault(name.split(".")[0], []).append(p.grad.double().flatten())
    return float(loss.detach()), {part: torch.cat(g) for part, g in parts.items()}


def _cosines(a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, float]:
    return {part: round(float(F.cosine_similarity(a[part], b[part], dim=0)), 4) for part in a}


def _bf16_rounded(x: Tensor) -> Tensor:
    return x.to(torch.bfloat16).float()


def _trajectory(cfg: Config, device: torch.device, images: Tensor, steps: int, amp: bool
                ) -> list[float]:
    """Losses of `steps` training steps of our step from seed 0, on seeded views."""
    ours = Ours(cfg, device, StepOptions(amp=amp))
    views = Views(cfg, device)
    losses = []
    for k in range(steps):
        generator = torch.Generator().manual_seed(k)
        v1 = views.t(images, generator=generator)
        v2 = views.t_prime(images, generator=generator)
        losses.append(float(ours.step(v1, v2)))
    return losses


def bf16_vs_fp32(cfg: Config, device: torch.device, batch: int, source: int,
                 steps: int = 30) -> dict:
    """bf16 autocast against fp32 (loss at init, gradients, a short training run), and the
    GPU's fp32 loss against the CPU's, on the same weights and views.

    At random initialisation the encoder's gradient is chaotic: rounding only the input views
    to bf16 already turns it by a large angle in fp32. So the gradient cosines are reported
    beside that sensitivity, and judged by the training run, not by a fixed threshold.
    """
    amp = device.type == "cuda"
    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, source, source), dtype=torch.uint8)
    v1, v2 = Views(cfg, torch.device("cpu"))(images)
    method = build_method(cfg).train()
    reference = copy.deepcopy(method)  # batch norm running stats move with every forward
    on_device = method.to(device)
    d1, d2 = v1.to(device), v2.to(device)
    with strict_fp32():
        loss32, grad32 = _loss_and_grads(copy.deepcopy(on_device), d1, d2, amp=False)
        _, grad_rounded = _loss_and_grads(copy.deepcopy(on_device), _bf16_rounded(d1),
                                          _bf16_rounded(d2), amp=False)
    loss16, grad16 = _loss_and_grads(copy.deepcopy(on_device), d1, d2, amp=amp)
    with torch.no_grad():
        loss_cpu = float(reference(v1, v2)["loss"])
    with strict_fp32():
        run32 = _trajectory(cfg, device, images.to(device), steps, amp=False)
    run16 = _trajectory(cfg, device, images.to(device), steps, amp=amp)
    tail = max(1, steps // 3)
    end32, end16 = sum(run32[-tail:]) / tail, sum(run16[-tail:]) / tail
    result = {
        "preset": cfg.preset, "batch": batch, "image_size": cfg.data.image_size,
        "bf16_tested": amp,
        "loss_fp32": loss32, "loss_bf16": loss16, "loss_cpu_fp32": loss_cpu,
        "bf16_rel_diff": abs(loss16 - loss32) / abs(loss32),
        "gpu_vs_cpu_rel_diff": abs(loss32 - loss_cpu) / abs(loss_cpu),
        "grad_cosine_bf16_vs_fp32": _cosines(grad32, grad16),
        "grad_cosine_fp32_inputs_rounded_to_bf16": _cosines(grad32, grad_rounded),
        "trajectory_fp32": run32, "trajectory_bf16": run16,
        "trajectory_rel_diff": abs(end16 - end32) / abs(end32),
        "tolerances": {"bf16_rel": BF16_LOSS_RTOL, "gpu_vs_cpu_rel": FP32_DEVICE_RTOL,
                       "trajectory_rel": BF16_TRAJECTORY_RTOL},
    }
    return result


def _image_stats(x: Tensor) -> dict[str, Tensor]:
    """Per-image statistics of augmented views whose distributions are compared."""
    x = x.float().cpu()
    return {
        "mean": x.mean(dim=(1, 2, 3)), "std": x.std(dim=(1, 2, 3)),
        "red": x[:, 0].mean(dim=(1, 2)), "green": x[:, 1].mean(dim=(1, 2)),
        "blue": x[:, 2].mean(dim=(1, 2)),
        "sharpness": (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3)),
    }


def ks_statistic(a: Tensor, b: Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = torch.sort(a.double()).values, torch.sort(b.double()).values
    grid = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, grid, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, grid, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def ks_critical(n: int, m: int, alpha: float) -> float:
    """Asymptotic critical value of the two-sample KS statistic at level alpha."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def augment_devices(cfg: Config, device: torch.device, samples: int, source: int,
                    chunk: int = 256) -> dict:
    """Both views' BatchAugment on `device` against the CPU: same draws, same distribution."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, source, source), dtype=torch.uint8)
    report: dict = {"preset": cfg.preset, "image_size": cfg.data.image_size,
                    "samples_per_device": samples, "devices": f"{device.type} vs cpu"}
    for view_name, params in zip(("T", "T_prime"), view_params(cfg.augment), strict=True):
        augment = BatchAugment(params, cfg.data.image_size, (0.5,) * 3, (0.25,) * 3)
        on_device = copy.deepcopy(augment).to(device)
        same_cpu = augment(images, generator=torch.Generator().manual_seed(1))
        same_dev = on_device(images.to(device), generator=torch.Generator().manual_seed(1))
        diff = (same_cpu - same_dev.cpu()).abs()
        far = float((diff > 1e-3).float().mean())
        same_draws = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                      "fraction_over_1e-3": far, "ok": far <= 1e-3}
        stats_cpu: dict[str, list[Tensor]] = {}
        stats_dev: dict[str, list[Tensor]] = {}
        for _ in range(max(1, samples // chunk)):
            batch = images.repeat(math.ceil(chunk / len(images)), 1, 1, 1)[:chunk]
            for out, stats in ((augment(batch), stats_cpu),
                               (on_device(batch.to(device)), stats_dev)):
                for key, value in _image_stats(out).items():
                    stats.setdefault(key, []).append(value)
        n = len(torch.cat(stats_cpu["mean"]))
        critical = ks_critical(n, n, KS_ALPHA / len(stats_cpu))  # Bonferroni over statistics
        ks = {key: ks_statistic(torch.cat(stats_cpu[key]), torch.cat(stats_dev[key]))
              for key in stats_cpu}
        distribution = {"ks": ks, "critical": critical,
                        "ok": all(v <= critical for v in ks.values())}
        report[view_name] = {"same_draws": same_draws, "distribution": distribution}
    return report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _distributed_worker(rank: int, world: int, backend: str, port: int, cfg_dict: dict,
                        folder: str) -> None:
    """One rank of `distributed`: writes its findings to folder/rank<r>.json."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    cuda = backend == "nccl"
    device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    out: dict = {"rank": rank}
    try:
        n = 11  # uneven shards
        features = torch.arange(n * 3, dtype=torch.float32).view(n, 3)
        labels = torch.arange(n)
        mine = shard_indices(n, rank, world)
        got_f, got_l = gather_features(features[mine].to(device), labels[mine].to(device),
                                       torch.tensor(mine))
        out["gather_ok"] = bool(torch.equal(got_f.cpu(), features)
                                and torch.equal(got_l.cpu(), labels))
        value = torch.tensor(float(rank + 1), device=device)
        dist.all_reduce(value)
        out["all_reduce_ok"] = float(value) == world * (world + 1) / 2
        if cuda:  # SyncBN as the training loop converts it: the BYOL loss on half batches
            cfg = from_dict(cfg_dict)
            torch.manual_seed(0)
            method = build_method(cfg).train()
            images = torch.randint(0, 256, (16, 3, cfg.data.image_size, cfg.data.image_size),
                                   dtype=torch.uint8)
            v1, v2 = Views(cfg, torch.device("cpu"))(images)
            with strict_fp32():
                whole = float(copy.deepcopy(method).to(device)(v1.to(device), v2.to(device))
                              ["loss"])
                synced = nn.SyncBatchNorm.convert_sync_batchnorm(method).to(device)
                half = slice(rank * 8, rank * 8 + 8)
                local = synced(v1[half].to(device), v2[half].to(device))["loss"].detach()
                dist.all_reduce(local)
            mean = float(local) / world
            out |= {"syncbn_loss_whole": whole, "syncbn_loss_mean_of_halves": mean,
                    "syncbn_ok": abs(mean - whole) <= 1e-4 * abs(whole)}
    finally:
        Path(folder, f"rank{rank}.json").write_text(json.dumps(out))
        dist.destroy_process_group()


def distributed(cfg: Config, world: int = 2) -> dict:
    """Gathers, all-reduce and SyncBN with `world` processes: NCCL when there are that many
    GPUs, else gloo on the CPU (no SyncBN: it needs CUDA)."""
    gpus = torch.cuda.device_count()
    backend = "nccl" if gpus >= world else "gloo"
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_distributed_worker, args=(world, backend, _free_port(), to_dict(cfg), folder),
                 nprocs=world, join=True)
        ranks = [json.loads(Path(folder, f"rank{r}.json").read_text()) for r in range(world)]
    checks = [k for k in ranks[0] if k.endswith("_ok")]
    return {"backend": backend, "world": world, "gpus": gpus, "ranks": ranks,
            "syncbn": "tested" if backend == "nccl" else f"skipped: needs {world} GPUs",
            "failed": [f"rank {r['rank']}: {k}" for r in ranks for k in checks if not r.get(k)]}



@pytest.mark.parametrize("preset", SIZES)
def test_bf16_and_the_gpu_agree_with_fp32_on_the_cpu(preset, record_property):
    batch, source, _ = SIZES[preset]
    result = bf16_vs_fp32(preset_config(preset, batch), CUDA, batch, source, steps=30)
    record_property("result", json.dumps(result))
    assert result["bf16_rel_diff"] <= BF16_LOSS_RTOL, result
    assert result["gpu_vs_cpu_rel_diff"] <= FP32_DEVICE_RTOL, result
    assert result["trajectory_rel_diff"] <= BF16_TRAJECTORY_RTOL, result


@pytest.mark.parametrize("preset", SIZES)
def test_batch_augment_on_cuda_draws_as_on_the_cpu(preset, record_property):
    _, source, samples = SIZES[preset]
    result = augment_devices(preset_config(preset, 8), CUDA, samples, source,
                             chunk=min(samples, 256))
    record_property("result", json.dumps(result))
    for view in ("T", "T_prime"):
        assert result[view]["same_draws"]["ok"], result
        assert result[view]["distribution"]["ok"], result


def test_gathers_all_reduce_and_sync_batchnorm_across_two_processes(record_property):
    result = distributed(preset_config("cifar10", 16, 32))
    record_property("result", json.dumps(result))
    assert not result["failed"], result
