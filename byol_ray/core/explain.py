"""`byol-ray show-config --explain`: every config field with its value, meaning and limits."""

from __future__ import annotations

import json
import re

from pydantic.fields import FieldInfo

from byol_ray.core.config import Allowed, Config, leaves

_TYPES = {bool: "true, false", int: "any integer", float: "any number", str: "any text"}


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
