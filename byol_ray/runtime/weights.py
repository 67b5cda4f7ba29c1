"""A run's trained networks as files a user can take away, and back as plain modules.

A weights folder holds `config.yaml` (the resolved config that builds the networks), one
state_dict per part (`encoder`, `projector`, `target`) as `<part>.safetensors` (or `<part>.pt`
from `torch.save` when safetensors is not installed; always read with `weights_only=True`), and
`manifest.json` with each file's size and sha256, so that a truncated or altered file is refused
with a clear error instead of loading other weights. The encoder of a torchvision ResNet keeps
torchvision's keys (`conv1.weight`, `layer1.0.bn1.running_mean`, ...; `fc` is the identity).
`load_encoder(ref)` finds the folder on disk or, through `byol_ray.runtime.tracking`, in a run's
`weights/` artifacts or in the MLflow Model Registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml
from torch import nn

from byol_ray.core.config import Config, ConfigError, from_dict, to_dict

PARTS = ("encoder", "projector", "target")  # what a run saves, when its method has it
MANIFEST = "manifest.json"
CONFIG = "config.yaml"

try:  # safetensors stores tensors only (no pickled code); torch.save is the fallback
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file
except ImportError:  # pragma: no cover - exercised only where safetensors is absent
    load_file = save_file = None
    SafetensorError = OSError


class WeightsError(ConfigError):
    """A weights reference that does not exist, or files that fail their checks."""

    def __init__(self, ref: str, message: str):
        super().__init__("--run", f"{ref}: {message}")


def load_encoder(ref: str, tracking_uri: str = "") -> nn.Module:
    """The trained encoder that `ref` names, as a plain `nn.Module` in eval mode.

    `ref`: a run id, `runs:/<id>[/weights]`, `models:/NAME/VERSION`, or a local weights folder
    (or a file in it). Raises `WeightsError` (a ConfigError: exit 2 from the CLI) when the ref
    does not exist or a file is truncated or altered.
    """
    with fetch_weights(ref, tracking_uri) as (folder, _):
        return read_part(folder, "encoder", ref)


@contextlib.contextmanager
def fetch_weights(ref: str, tracking_uri: str = "") -> Iterator[tuple[Path, str | None]]:
    """The weights folder `ref` names, on local disk while the context lasts, and the MLflow id
    of the run that saved it (None for a local folder)."""
    local = Path(ref).expanduser()
    if local.exists():
        yield (local if local.is_dir() else local.parent), None
        return
    if not (ref.startswith(("runs:/", "models:/")) or re.fullmatch(r"[0-9a-f]{32}", ref)):
        raise WeightsError(ref, "is neither a folder nor an MLflow run id, runs:/<id> or "
                                "models:/NAME/VERSION")
    from byol_ray.runtime.tracking import store
    from byol_ray.runtime.tracking.run import download_weights  # MLflow only for a run's ref

    uri = store.resolve_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="byol-ray-weights-") as tmp:
        try:
            folder, run_id = download_weights(ref, uri, Path(tmp))
        except LookupError as error:
            raise WeightsError(ref, f"not found in {uri} ({error})") from None
        yield folder, run_id


def write_weights(method: nn.Module, cfg: Config, folder: Path) -> Path:
    """Save the parts of `method` that exist (encoder, projector, target), the config and the
    manifest into `folder`; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    files = {}
    for part in PARTS:
        module = getattr(method, part, None)
        if not isinstance(module, nn.Module):
            continue
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        path = folder / (f"{part}.safetensors" if save_file else f"{part}.pt")
        if save_file:
            save_file(state, str(path))
        else:  # pragma: no cover
            torch.save(state, path)
        files[part] = {"file": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path)}
    (folder / MANIFEST).write_text(json.dumps({"parts": files}, indent=2))
    return folder


def read_config(folder: Path, ref: str = "") -> Config:
    """The config saved beside the weights (what builds the networks)."""
    path = folder / CONFIG
    if not path.is_file():
        raise WeightsError(ref or str(folder), f"no {CONFIG} beside the weights")
    try:
        return from_dict(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ConfigError, AttributeError) as error:
        message = f"{CONFIG} is not a byol-ray config ({error})"
        raise WeightsError(ref or str(folder), message) from None


def read_part(folder: Path, part: str = "encoder", ref: str = "") -> nn.Module:
    """Build part `part` from the saved config and load its checked state_dict (strict keys)."""
    from byol_ray.learn.methods import build_method

    ref = ref or str(folder)
    state = read_state(folder, part, ref)
    module = getattr(build_method(read_config(folder, ref)), part, None)
    if not isinstance(module, nn.Module):
        raise WeightsError(ref, f"the saved config's method has no {part}")
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise WeightsError(ref, f"{part} weights do not fit the saved config ({error})") from None
    return module.eval()


def read_state(folder: Path, part: str, ref: str = "") -> dict[str, torch.Tensor]:
    """The state_dict of one part, after checking its size and sha256 against the manifest."""
    ref = ref or str(folder)
    if part not in PARTS:
        raise WeightsError(ref, f"unknown part {part!r}; one of: {', '.join(PARTS)}")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())["parts"]
    except FileNotFoundError:
        raise WeightsError(ref, f"no {MANIFEST}: not a byol-ray weights folder") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise WeightsError(ref, f"{MANIFEST} is damaged ({error})") from None
    if part not in manifest:
        raise WeightsError(ref, f"holds no {part} weights (it has: {', '.join(manifest)})")
    entry = manifest[part]
    path = folder / entry["file"]
    if not path.is_file():
        raise WeightsError(ref, f"{entry['file']} is missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise WeightsError(ref, f"{entry['file']} is {size} bytes, the manifest says "
                                f"{entry['bytes']}: truncated or replaced")
    if _sha256(path) != entry["sha256"]:
        raise WeightsError(ref, f"{entry['file']} fails its sha256 check: modified after "
                                "the run saved it")
    try:
        if path.suffix == ".safetensors":
            if load_file is None:  # pragma: no cover
                raise WeightsError(ref, "safetensors is not installed: pip install safetensors")
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise WeightsError(ref, f"{entry['file']} cannot be read ({error})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
