"""What a run was made from, as MLflow shows it: its dataset as a dataset input (name, digest,
source, split sizes) and its source (the command line that started it)."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from functools import lru_cache

from mlflow.entities import Dataset, DatasetInput, InputTag

from byol_ray.core.config import DataConfig
from byol_ray.learn.data import load_splits

BUNDLED_SOURCE = "bundled"  # the source of a dataset that ships with scikit-learn (no root)


def source_tags() -> dict[str, str]:
    """MLflow's source tags: the command line of this process, run from a local machine."""
    return {"mlflow.source.name": shlex.join(sys.argv), "mlflow.source.type": "LOCAL"}


def dataset_input(data: DataConfig) -> DatasetInput:
    """The run's dataset as an MLflow dataset input (context `train`): its name, a digest of
    what it holds, its source (`data.root`, or `bundled`) and, as profile, its split sizes."""
    sizes = _split_sizes(data.model_dump_json())
    profile = json.dumps({**sizes, "image_size": data.image_size,
                          "max_eval_images": data.max_eval_images})
    schema = json.dumps({"image": f"uint8 (3, {data.image_size}, {data.image_size})",
                         "label": "int64 class index"})
    source = data.root or BUNDLED_SOURCE
    digest = hashlib.sha256(f"{data.dataset}|{source}|{profile}".encode()).hexdigest()[:16]
    dataset = Dataset(name=data.dataset, digest=digest, source_type="local", source=source,
                      schema=schema, profile=profile)
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train")])


@lru_cache(maxsize=8)
def _split_sizes(data_json: str) -> dict[str, int]:
    """Images in each split of the dataset (counted once per data config and process)."""
    try:
        splits = load_splits(DataConfig.model_validate_json(data_json))
    except (OSError, ValueError, RuntimeError):  # files not here (a remote root): no sizes
        return {}
    return {"pretrain_images": len(splits.pretrain), "train_images": len(splits.train),
            "test_images": len(splits.test), "num_classes": splits.num_classes}
