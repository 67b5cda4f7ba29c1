"""A command line that answers at once: `--help`, `presets`, `show-config` and config errors
import neither torch, Ray nor MLflow (nor pandas); the names the CLI lists without importing
the modules that own them agree with those modules."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "ray", "mlflow", "pandas")
# Each command line, with the exit status it must end with.
LIGHT = [
    (["--help"], 0),
    (["presets"], 0),
    (["show-config", "--preset", "cpu-mini"], 0),
    (["show-config", "--preset", "imagenet", "--explain"], 0),
    (["train", "--preset", "cpu-mini", "--set", "train.epoch=3"], 2),  # a typo'd key
    (["train", "--preset", "cpu-mini", "--set", "data.batch_size=7"], 2),  # a value no run takes
    (["train", "--preset", "nope"], 2),
    (["sweep", "ema_decay", "--preset", "cpu-mini", "--set", "train.epoch=3"], 2),
    (["sweep", "nope", "--preset", "cpu-mini"], 2),
    (["reproduce", "--preset", "cpu-mini", "--set", "method.tau_base=x"], 2),
    (["eval", "linear", "--run", "x", "--set", "protocol.linear_epoch=3"], 2),
    *[([command, "--help"], 0) for command in ("train", "eval", "views", "sweep", "reproduce",
                                               "tables", "sync", "show-config", "presets")],
]

PROBE = """
import json, sys
from byol_ray.cli.main import main
try:
    status = main(json.loads(sys.argv[1]))
except SystemExit as stop:  # --help
    status = stop.code
heavy = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
print(json.dumps({"status": status, "heavy": heavy}), file=sys.stderr)
"""


@pytest.mark.parametrize(("argv", "status"), LIGHT, ids=[" ".join(a) for a, _ in LIGHT])
def test_the_command_answers_without_torch_ray_mlflow(argv, status):
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result == {"status": status, "heavy": []}, done.stderr
    if status == 2:
        assert "byol-ray: error: " in done.stderr


def test_the_grid_names_the_cli_lists_are_the_grid_modules():
    from byol_ray import experiments

    with_grid = [m.__name__.rsplit(".", 1)[1] for m in experiments.paper_experiments()
                 if hasattr(m, "GRID")]
    assert list(experiments.GRIDS) == with_grid
    assert all(name == grid.name for name, grid in experiments.grids().items())


def test_the_metrics_the_cli_offers_are_the_reports():
    from byol_ray.cli.options import METRICS
    from byol_ray.tables.cells import METRICS as REPORT_METRICS

    assert METRICS == REPORT_METRICS
