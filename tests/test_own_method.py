"""A method from outside the package (`--set method.name=package.module:Class`): checked before
any worker starts, then run like ours through Ray Tune and Ray Train, and tracked like ours."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from byol_ray.core.presets import get_preset
from byol_ray.learn.methods.registry import check_method

OWN_METHODS = '''
import torch.nn.functional as F
from torch import nn

from byol_ray.learn.methods import Method


class Align(Method):
    """Pull the projections of two views together (collapses; enough for a test)."""

    def __init__(self, encoder, feat_dim, model, method):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feat_dim, 16)

    def forward(self, view1, view2):
        z1, z2 = (F.normalize(self.head(self.encoder(v)), dim=1) for v in (view1, view2))
        return {"loss": (2 - 2 * (z1 * z2).sum(1)).mean()}


class NoLoss(Align):
    def forward(self, view1, view2):
        return self.encoder(view1)


class NoAfterStep(nn.Module):
    def forward(self, view1, view2):
        return {}


class AnyArguments(Align):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
'''

SWEEP = '''
from byol_ray.cli.sweep import run_sweep_cli
from byol_ray.experiments.grid import Cell, Grid

GRID = Grid("own", "our BYOL against my method", lambda preset: [
    Cell("byol", "method", "byol"), Cell("mymethods.align:Align", "method", "align")])
raise SystemExit(run_sweep_cli(GRID))
'''


@pytest.fixture
def own_package(tmp_path):
    """A package `mymethods` outside byol_ray, on PYTHONPATH for a command and its Ray workers."""
    (tmp_path / "mymethods").mkdir()
    (tmp_path / "mymethods" / "__init__.py").write_text("")
    (tmp_path / "mymethods" / "align.py").write_text(textwrap.dedent(OWN_METHODS))
    (tmp_path / "mymethods" / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    paths = [str(tmp_path), os.environ.get("PYTHONPATH", ""), *sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@pytest.fixture
def own_importable(own_package, tmp_path, monkeypatch):
    """`mymethods` importable in this process (as a command run here would find it on
    PYTHONPATH), none of its modules left cached from another test's folder."""
    def forget() -> None:
        for name in [m for m in sys.modules if m.split(".")[0] == "mymethods"]:
            del sys.modules[name]

    forget()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    forget()


def run(args: list[str], env: dict[str, str], cwd, timeout: float = 500):
    """A command in a fresh Python process, its console captured (its imports of torch, Ray
    and MLflow alone take minutes on a loaded 2-core machine; under the 600 s test limit)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("name, missing", [
    ("mymethods.align:NoLoss", "must return a dict with 'loss'"),
    ("mymethods.align:NoAfterStep", "after_step()"),
    ("mymethods.align:Nowhere", "has no Nowhere"),
    ("mymethods.nothere:Align", "cannot import mymethods.nothere"),
    ("mymethods.broken:Align", "importing mymethods.broken failed: RuntimeError: no GPU here"),
    ("mymethods.align", "is not one of: byol, simclr, random_init, package.module:Class"),
])
def test_a_method_without_the_interface_exits_2_naming_method_name(name, missing,
                                                                   own_importable, tmp_path, cli):
    proc = cli("train", "--preset", "cpu-mini", "--set", f"method.name={name}",
               "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("byol-ray: error: method.name: ") and missing in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.db").exists()


def test_a_method_taking_any_arguments_passes_the_check(own_importable):
    cfg = get_preset("cpu-mini")
    cfg.method.name = "mymethods.align:AnyArguments"
    check_method(cfg)  # no ConfigError: built as cls(encoder, feat_dim, model, method)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # above the sweep's own 900 s, so that its console is the failure
def test_an_own_method_runs_as_a_sweep_cell_and_is_tracked_like_ours(own_package, tmp_path):
    (tmp_path / "own.py").write_text(textwrap.dedent(SWEEP))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run(["own.py", "--preset", "cpu-mini", "--only", "*-method=*", "--set",
                "train.epochs=2", "--tracking-uri", uri, "--storage", str(tmp_path / "ray")],
               own_package, tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("own/cpu-mini").experiment_id],
                              "tags.role = 'trial'")
    by_method = {run.data.tags["method"]: run for run in runs}
    ours, own = by_method["byol"], by_method["mymethods.align:Align"]
    assert own.info.status == ours.info.status == "FINISHED", own.data.tags
    assert set(own.data.tags) == set(ours.data.tags)
    # every metric of ours but what BYOL's own after_step() adds (its EMA's tau and share)
    assert set(own.data.metrics) == set(ours.data.metrics) - {"train/tau",
                                                              "train/target_init_share"}
    assert "train/loss" in own.data.metrics and "eval/knn_top1" in own.data.metrics
    assert own.data.params["method.name"] == "mymethods.align:Align"
