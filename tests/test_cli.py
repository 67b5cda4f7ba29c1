"""The `byol-ray` commands that need no training: presets, show-config, exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from byol_ray.cli.main import main
from byol_ray.core.presets import PRESETS


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)


def test_show_config_resolves_overrides_as_json_and_yaml(capsys):
    assert main(["show-config", "--preset", "cpu-mini", "--set", "method.tau_base=0.9",
                 "--format", "json"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["method"]["tau_base"] == 0.9 and cfg["preset"] == "cpu-mini"
    assert main(["show-config", "--preset", "imagenet"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["encoder"] == "resnet50" and cfg["optim"]["base_lr"] == 0.2
    # method=simclr on a GPU preset: SimCLR's own settings (core/presets.py METHOD_SETTINGS)
    assert main(["show-config", "--preset", "imagenet", "--set", "method.name=simclr"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["optim"]["base_lr"] == 0.3 and cfg["model"]["proj_dim"] == 128


def test_bad_input_exits_2_naming_the_field(capsys):
    assert main(["show-config", "--preset", "cpu-mini", "--set", "method.tau_base=2"]) == 2
    assert "method.tau_base" in capsys.readouterr().err
    assert main(["show-config", "--preset", "nope"]) == 2
    assert "preset: 'nope' is not one of: cpu-mini" in capsys.readouterr().err


def test_train_with_bad_config_fails_fast_through_the_console_script():
    """Exit 2 before Ray starts: the check runs in the CLI, not in a worker. The one exit-2
    test through the real entry point (`python -m byol_ray.cli`, a fresh process); the others
    call `main` in-process (the `cli` fixture). Its imports alone take minutes on a loaded
    2-core machine, hence the deadline."""
    proc = subprocess.run(
        [sys.executable, "-m", "byol_ray.cli", "train", "--preset", "cpu-mini", "--set",
         "data.batch_size=7"], capture_output=True, text=True, timeout=500,
    )
    assert proc.returncode == 2
    assert "data.batch_size: 7 is not divisible by scaling.num_workers=2" in proc.stderr
    assert "ray" not in proc.stdout.lower()


def test_train_with_a_missing_dataset_exits_2_before_ray_starts(tmp_path, cli):
    proc = cli("train", "--preset", "cifar10", "--set", f"data.root={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "data.root:" in proc.stderr and "cifar-10-batches-py" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr


def test_reproduce_of_other_grids_never_overwrites_the_full_report():
    """`reproduce --grids normalization` reports to its own folder: its report would show the
    default grids' tables empty."""
    from byol_ray.cli.sweep import DEFAULT_GRIDS, default_out

    assert default_out("cpu-mini", list(DEFAULT_GRIDS)) == Path("results/cpu-mini")
    assert default_out("cpu-mini", ["normalization"]) == Path("results/cpu-mini-normalization")
    assert default_out("cifar10", ["ema_decay", "batch_size"]) == Path(
        "results/cifar10-ema_decay-batch_size")
