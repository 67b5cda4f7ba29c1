"""The package works installed from its wheel, not only from a checkout: grids, reference
values and the sweep CLI all ship with it (a wheel once answered "'ema_decay' is not one of:
(none)")."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from byol_ray.cli.sweep import DEFAULT_GRIDS, GRID_ORDER
from byol_ray.tables.reference import reference_frame

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_every_dry_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # Built from a copy (setuptools writes build/ beside the sources) with this interpreter's
    # setuptools (no index needed), and installed as a wheel, not editable.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "byol_ray", src / "byol_ray",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
          "-w", str(tmp_path / "wheels")], cwd, env)
    wheel = next((tmp_path / "wheels").glob("byol_ray-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd, env)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], cwd, env)
    # torch, ray and mlflow from this interpreter's site-packages, as a plain path line (which
    # runs none of the .pth files there, e.g. an editable install's finder of byol_ray).
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"], cwd, env).stdout.strip())
    (site / "outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    check = ("import byol_ray; from byol_ray.tables.reference import reference_frame; "
             "from byol_ray.experiments import grids; "
             "print(byol_ray.__file__); print(len(reference_frame())); print(*grids())")
    found, n_refs, names = _run([str(python), "-c", check], cwd, env).stdout.splitlines()
    assert Path(found).is_relative_to(venv), found
    # every reference value of the checkout ships in the wheel
    assert int(n_refs) == len(reference_frame()) and names.split() == list(GRID_ORDER)
    for grid in GRID_ORDER:
        out = _run([str(bin_dir / "byol-ray"), "sweep", grid, "--preset", "cpu-mini",
                    "--dry-run"], cwd, env).stdout
        assert f"{grid} (" in out and " trials, " in out
    out = _run([str(bin_dir / "byol-ray"), "reproduce", "--preset", "cpu-mini", "--dry-run"],
               cwd, env).stdout
    assert out.count(" trials, ") == len(DEFAULT_GRIDS)  # the opt-in grids only when asked
    assert not (cwd / "mlflow.db").exists()
