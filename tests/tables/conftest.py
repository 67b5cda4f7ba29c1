"""Fixtures of the tables tests: the synthetic runs of `synthetic_runs`, tidy and in MLflow."""

from __future__ import annotations

import pandas as pd
import pytest
from synthetic_runs import PRESET, TRIALS, raw_frame, write_store

from byol_ray.report.runs import normalise_runs, select_runs


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory) -> str:
    """A real MLflow sqlite store holding `TRIALS` (created once: schema set-up takes seconds)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    write_store(uri, TRIALS)
    return uri


@pytest.fixture
def runs() -> pd.DataFrame:
    """`TRIALS` of the cpu-mini preset as tidy runs, as `load_runs` would return them."""
    return select_runs(normalise_runs(raw_frame(TRIALS)), preset=PRESET)
