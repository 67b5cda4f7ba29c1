"""Command-line options shared by `byol-ray train`, `show-config`, `tables` and every sweep;
light to import (no torch, Ray, MLflow or pandas), so that `--help` answers at once."""

from __future__ import annotations

import argparse

from byol_ray.core.config import Config
from byol_ray.core.explain import common_keys_help
from byol_ray.core.presets import PRESETS

# The top-1 the tables can show: `tables.cells.METRICS`, repeated here (a test checks they
# agree) because importing the report loads pandas and MLflow, which --help does not need.
METRICS = ("linear", "knn", "few_label")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """--preset and repeatable --set: how every command builds its config."""
    parser.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one config value, e.g. method.tau_base=0.99 (repeatable); "
                        f"sections: {', '.join(n for n in Config.model_fields if n != 'preset')}; "
                        "every key: byol-ray show-config --preset P --explain")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # the epilog's own lines
    parser.epilog = common_keys_help()


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where runs are tracked, where checkpoints go, and which Ray cluster runs them."""
    parser.add_argument("--tracking-uri", default="",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///mlflow.db in this folder)")
    parser.add_argument("--storage", default="",
                        help="checkpoint storage: a folder or s3://, gs:// (default "
                             "~/ray_results)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (default: the one running here, else a new "
                             "local cluster)")


def add_verbose_option(parser: argparse.ArgumentParser, default: object = False) -> None:
    """--verbose: Ray's and the libraries' own console output too (byol_ray/runtime/console.py)."""
    parser.add_argument("--verbose", action="store_true", default=default,
                        help="show Ray's and the libraries' own logs on the console (default: "
                             "byol-ray's lines only; the rest goes to the log files it names)")
