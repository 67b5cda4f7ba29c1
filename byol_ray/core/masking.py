"""One rule for secrets in what byol-ray shows or stores: `mask(text)`.

A tracking URI, a storage URI or a dataset root may carry credentials, and byol-ray prints,
logs (MLflow params, tags, the `config.yaml` artifact) and raises text that holds them. Every
such place passes its text through `mask`, which replaces

- the password of a URI's userinfo (`postgresql+psycopg://mlflow:PASSWORD@db/...` ->
  `mlflow:***@`); a userinfo without a password is a token (`https://TOKEN@host`) and is masked
  whole; an S3 URI's userinfo (`s3://ACCESS_KEY:SECRET_KEY@bucket`) keeps only the key id, as
  AWS treats that as an identifier, not a secret;
- the value of a setting (`NAME=VALUE` in text, a config key) whose name says it is a secret
  (`SECRET_NAME`: `password`, `token`, `secret`, `signature`, `credential`, ...), and of a
  URI's query parameter named so or by the short names query strings use (`QUERY_SECRET_NAME`:
  `sig`, `key`, `api_key`, `access_key`, `auth`);

by `***`. The code that connects keeps the real value: only what is shown or stored is masked.
Pure (no torch, Ray or MLflow), so every layer may use it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

MASK = "***"
# A setting whose value is a secret, by its name (case-insensitive): passwords, secrets
# (`AWS_SECRET_ACCESS_KEY`, pyarrow's `secret_key`), tokens (OAuth `access_token`, AWS
# `X-Amz-Security-Token`), AWS SigV4's `X-Amz-Signature` / `X-Amz-Credential`.
SECRET_NAME = re.compile(r"(?i)passw(or)?d|pwd|secret|token|signature|credential")
# A URI query parameter holding a secret: those, and the short names of query strings (Azure
# SAS `sig`, API `key` / `api_key`, pyarrow's S3 `access_key`, `auth`); in free text
# `section.key=value` is no secret.
QUERY_SECRET_NAME = re.compile(
    r"(?i)passw(or)?d|pwd|secret|token|signature|credential|"
    r"^(sig|key|api_?key|access_?key|auth|authorization)$")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/?#@\s'\"]+)@")
_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&#\s'\"]+)=(?P<value>[^&#\s'\"]*)")
_SETTING = re.compile(r"(?P<lead>^|[\s,({\[])(?P<name>[A-Za-z_][\w.-]*)=(?P<value>[^\s,'\")}\]]+)")


def is_secret_name(name: str) -> bool:
    """Whether a setting or query parameter called `name` holds a secret."""
    return bool(SECRET_NAME.search(name))


def mask(text: str) -> str:
    """`text` with every credential a URI or `NAME=VALUE` in it carries replaced by `***`
    (see the module's rule); text without one is returned unchanged."""
    if not isinstance(text, str) or not text:
        return text
    text = _USERINFO.sub(_masked_userinfo, text)
    text = _PARAM.sub(lambda match: _masked_value(match, QUERY_SECRET_NAME), text)
    return _SETTING.sub(lambda match: _masked_value(match, SECRET_NAME), text)


def mask_tree(value: Any, name: str = "") -> Any:
    """A copy of a config dict / list (as `to_dict` gives) with every string masked, and the
    whole value of a key whose name says it is a secret (`tracking.password: ***`)."""
    if isinstance(value, dict):
        return {key: mask_tree(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_tree(item, name) for item in value)
    if isinstance(value, str):
        return MASK if value and name and is_secret_name(name) else mask(value)
    return value


def mask_record(record: logging.LogRecord) -> bool:
    """A logging filter (`handler.addFilter(mask_record)`): the record's message masked, so a
    log file holds no secret either."""
    message = record.getMessage()
    masked = mask(message)
    if masked != message:
        record.msg, record.args = masked, None
    return True


class MaskedStream:
    """A text stream (`sys.stdout`, `sys.stderr`) that masks every write; anything else (fileno,
    isatty, flush, ...) is the wrapped stream's."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        """Write `text` masked; returns len(text), as callers count what they wrote."""
        self.stream.write(mask(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        """Write each line masked."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextmanager
def masked_console() -> Iterator[None]:
    """While the context lasts, what this process prints to stdout and stderr is masked (the
    CLI's one place for its console lines, errors and Ray's forwarded output)."""
    before = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskedStream(sys.stdout), MaskedStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = before


def _masked_userinfo(match: re.Match) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    if MASK in userinfo:
        return match[0]
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:{MASK}" if colon else MASK
    return f"{scheme}://{shown}@"


def _masked_value(match: re.Match, names: re.Pattern) -> str:
    if not match["value"] or not names.search(match["name"]):
        return match[0]
    return f"{match['lead']}{match['name']}={MASK}"
