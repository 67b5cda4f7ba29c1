"""Faults injected for real through the `byol-ray` command: each test names its guarantee
(see the Reliability section of README.md)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def byol_ray(*args: str, cwd=None, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    """`byol-ray ARGS` in a fresh Python process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "byol_ray.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)


@pytest.fixture
def closed_port():
    """A port bound on 127.0.0.1 but never listening: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# ---------------------------------------------------------------- 1. tracking server unreachable


@pytest.mark.parametrize("command", [("train",), ("sweep", "ema_decay")])
def test_unreachable_tracking_server_exits_2_naming_the_uri_before_ray_starts(
        command, closed_port, tmp_path):
    uri = f"http://127.0.0.1:{closed_port}"
    proc = byol_ray(*command, "--preset", "cpu-mini", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert uri in lines[0] and "experiments/search" in lines[0] and "refused" in lines[0]
    assert "Ray" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("uri", ["htp:/bad", "htp://bad", "http:/127.0.0.1:5000"])
def test_malformed_tracking_uri_exits_2_naming_it(uri, tmp_path):
    proc = byol_ray("train", "--preset", "cpu-mini", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (f"byol-ray: error: --tracking-uri: {uri!r} is not a tracking "
                                   "URI; use http(s)://HOST:PORT, sqlite:///PATH.db or a folder")
    assert not list(tmp_path.iterdir()), "nothing may be created"


def test_sqlite_store_in_a_missing_folder_exits_2(tmp_path):
    uri = f"sqlite:///{tmp_path}/nope/mlflow.db"
    proc = byol_ray("train", "--preset", "cpu-mini", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2 and f"{tmp_path}/nope does not exist" in proc.stderr


# ---------------------------------------------------------------- 7. bad input


def test_cifar_files_failing_torchvisions_md5_check_exit_2_before_ray_starts(tmp_path):
    """Every file torchvision reads exists, but holds the wrong bytes (a broken download)."""
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar" / CIFAR10.base_folder
    folder.mkdir(parents=True)
    for name, _ in [*CIFAR10.train_list, *CIFAR10.test_list, (CIFAR10.meta["filename"], "")]:
        (folder / name).write_bytes(b"truncated download")
    proc = byol_ray("train", "--preset", "cifar10", "--set", f"data.root={tmp_path / 'cifar'}",
                    cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("byol-ray: error: data.root: data_batch_1, ")
    assert "failed torchvision's integrity (md5) check" in proc.stderr
    assert "Ray" not in proc.stdout + proc.stderr
