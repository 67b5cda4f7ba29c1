"""A run's trained networks as files a user can take away, and back as plain modules.

A weights folder holds `config.yaml` (the resolved config that builds the networks), one
state_dict per part (`encoder`, `projector`, `target`) as `<part>.safetensors` (or `<part>.pt`
from `torch.save` when safetensors is not installed; always read with `weights_only=True`), and
`manifest.json` with each file's size and sha256, so that a truncated or altered file is refused
with a clear error instead of loading other weights. The encoder of a torchvision ResNet keeps
torchvision's keys (`conv1.weight`, `layer1.0.bn1.running_mean`, ...; `fc` is the identity).
`load_encoder(ref)` finds the folder on disk or, through `byol_ray.runtime.tracking`, in a run's
`weights/` artifacts or in the MLflow Model Registry.

A weights folder is untrusted input (an MLflow run's artifacts are writable by whoever reaches
the server): every file it names must lie inside it, every manifest field is checked, and a
method from outside the package (`method.name: package.module:Class`), whose import runs that
module's code, is built only when the caller passes `trust_code=True` (`--trust-code`, after
Hugging Face's `trust_remote_code`).
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
from byol_ray.core.masking import mask_tree

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


def load_encoder(ref: str, tracking_uri: str = "", trust_code: bool = False) -> nn.Module:
    """The trained encoder that `ref` names, as a plain `nn.Module` in eval mode.

    `ref`: a run id, `runs:/<id>[/weights]`, `models:/NAME/VERSION`, or a local weights folder
    (or a file in it). Raises `WeightsError` (a ConfigError: exit 2 from the CLI) when the ref
    does not exist, a file is truncated, altered or outside the folder, or the saved config
    names a method from outside the package and `trust_code` is False (importing it would run
    that module's code).
    """
    with fetch_weights(ref, tracking_uri) as (folder, _):
        return read_part(folder, "encoder", ref, trust_code=trust_code)


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
    # stored and uploaded as an artifact: no password or token of a URI (core/masking.py)
    (folder / CONFIG).write_text(yaml.safe_dump(mask_tree(to_dict(cfg)), sort_keys=False))
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


def read_config(folder: Path, ref: str = "", trust_code: bool = False) -> Config:
    """The config saved beside the weights (what builds the networks); a method from outside
    the package is refused unless `trust_code` (building it imports, i.e. runs, its module)."""
    ref = ref or str(folder)
    path = _inside(folder, CONFIG, CONFIG, ref)
    if not path.is_file():
        raise WeightsError(ref, f"no {CONFIG} beside the weights")
    try:
        cfg = from_dict(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ConfigError, AttributeError, TypeError) as error:
        raise WeightsError(ref, f"{CONFIG} is not a byol-ray config ({error})") from None
    check_trusted(cfg, ref, trust_code)
    return cfg


def check_trusted(cfg: Config, ref: str, trust_code: bool) -> None:
    """Raise WeightsError when `cfg` names a method from outside the package (`module:Class`)
    and the caller did not opt in with `trust_code`: importing a module runs its code, and the
    config of a weights folder is written by whoever saved (or replaced) it."""
    name = cfg.method.name
    if ":" in name and not trust_code:
        raise WeightsError(ref, f"{CONFIG} field method.name is {name!r}, a method from outside "
                                "byol-ray: building it imports (runs) that module; if you "
                                "trust this folder, pass --trust-code (trust_code=True in "
                                "Python)")


def read_part(folder: Path, part: str = "encoder", ref: str = "",
              trust_code: bool = False) -> nn.Module:
    """Build part `part` from the saved config and load its checked state_dict (strict keys);
    `trust_code` as `read_config`."""
    from byol_ray.learn.methods import build_method

    ref = ref or str(folder)
    state = read_state(folder, part, ref)
    module = getattr(build_method(read_config(folder, ref, trust_code)), part, None)
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
    entry = _manifest_entry(folder, part, ref)
    name = entry["file"]
    path = _inside(folder, name, f"{MANIFEST} field parts.{part}.file", ref)
    if not path.is_file():
        raise WeightsError(ref, f"{name} is missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise WeightsError(ref, f"{name} is {size} bytes, the manifest says "
                                f"{entry['bytes']}: truncated or replaced")
    if _sha256(path) != entry["sha256"]:
        raise WeightsError(ref, f"{name} fails its sha256 check: modified after "
                                "the run saved it")
    try:
        if path.suffix == ".safetensors":
            if load_file is None:  # pragma: no cover
                raise WeightsError(ref, "safetensors is not installed: pip install safetensors")
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise WeightsError(ref, f"{name} cannot be read ({error})") from None


def _manifest_entry(folder: Path, part: str, ref: str) -> dict:
    """The manifest's entry of `part`, every field checked: a WeightsError naming the field
    that is missing or of the wrong type (never a KeyError)."""
    path = _inside(folder, MANIFEST, MANIFEST, ref)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(ref, f"no {MANIFEST}: not a byol-ray weights folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WeightsError(ref, f"{MANIFEST} is damaged ({error})") from None
    parts = manifest.get("parts") if isinstance(manifest, dict) else None
    if not isinstance(parts, dict):
        raise WeightsError(ref, f"{MANIFEST} field parts is missing or not an object")
    if part not in parts:
        raise WeightsError(ref, f"holds no {part} weights (it has: {', '.join(map(str, parts))})")
    entry = parts[part]
    if not isinstance(entry, dict):
        raise WeightsError(ref, f"{MANIFEST} field parts.{part} is not an object")
    for key, kind, what in (("file", str, "a file name"), ("bytes", int, "a byte count"),
                            ("sha256", str, "a hex digest")):
        value = entry.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or value in ("", None):
            raise WeightsError(ref, f"{MANIFEST} field parts.{part}.{key} is "
                                    f"{'missing' if value is None else repr(value)}; "
                                    f"expected {what}")
    return entry


def _inside(folder: Path, name: str, field: str, ref: str) -> Path:
    """`folder / name`, refused (WeightsError naming `field`) unless it lies inside `folder`:
    no absolute path, no `..`, no symlink that leads out."""
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise WeightsError(ref, f"{field} is {name!r}; expected a file name inside the "
                                "weights folder (no absolute path or '..')")
    path = folder / relative
    root = folder.resolve()
    if not path.resolve().is_relative_to(root):
        raise WeightsError(ref, f"{field} {name!r} is a symlink to {path.resolve()}, outside "
                                "the weights folder")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
