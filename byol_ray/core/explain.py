"""`byol-ray show-config --explain`: every config field with its value, meaning and limits."""

from __future__ import annotations

import json
import re

from pydantic.fields import FieldInfo

from byol_ray.core.config import Allowed, Config, leaves

_TYPES = {bool: "true, false", int: "any integer", float: "any number", str: "any text"}
# The keys an ablation sets most, shown under every --set's help (all: show-config --explain).
COMMON_KEYS = ("method.name", "method.tau_base", "method.tau_schedule", "data.batch_size",
               "data.group_size", "model.encoder_norm", "model.projector_norm", "train.epochs",
               "augment.recipe", "scaling.num_workers")
SHORT = 110  # characters of a description --help shows whole; longer ones are cut


def allowed(info: FieldInfo) -> str:
    """What a field allows: its `Allowed` values, else what its type takes."""
    rule = info.json_schema_extra
    return rule.text if isinstance(rule, Allowed) else _TYPES.get(info.annotation, "any value")


def explain(cfg: Config) -> str:
    """Every field of `cfg` by section: `name = value` (JSON, as --set takes it), its
    description, its allowed values or range, and the paper section it cites [P ...]."""
    lines, last = [], ""
    for name, value, info in leaves(cfg):
        section, dot, _ = name.partition(".")
        if dot and section != last:
            last = section
            lines += ["", f"# {section}: {Config.model_fields[section].description}"]
        shown = json.dumps(list(value) if isinstance(value, tuple) else value)
        lines += [f"{name} = {shown}", f"    {info.description}", f"    allowed: {allowed(info)}"]
        lines += [f"    paper: {cited}" for cited in re.findall(r"\[P ([^]]+)]", info.description)]
    return "\n".join(lines)


def common_keys_help() -> str:
    """The `--set` keys of `COMMON_KEYS`, each with its description (cut short) and what it
    allows: the epilog of every command that takes --set, from the same schema as --explain."""
    fields = {name: info for name, _, info in leaves(Config())}
    lines = ["often set (every key: byol-ray show-config --preset P --explain):"]
    for name in COMMON_KEYS:
        text = fields[name].description
        if len(text) > SHORT:  # at the last word that fits
            text = text[:SHORT].rsplit(" ", 1)[0] + " ..."
        lines += [f"  {name}: {text}", f"      allowed: {allowed(fields[name])}"]
    return "\n".join(lines)
