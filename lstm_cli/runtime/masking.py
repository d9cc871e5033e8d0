"""Credentials never leave the process: user passwords in URIs are masked wherever a URI is
stored (params, tags, run names, artifacts, summaries) or shown (the terminal, errors).

    http://alice:s3cret@host:5000   ->  http://alice:***@host:5000
    postgresql://mlflow:pw@db/mlflow -> postgresql://mlflow:***@db/mlflow

MLflow reads credentials from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or
MLFLOW_TRACKING_TOKEN) too; the docs (docs/cluster.md, "Secrets") recommend those. Their values
are masked in error lines too (`mask_secrets`), should a library's error ever quote them.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MASK = "***"
# scheme://user:password@host : the password runs from the user's ':' to the last '@' before
# the host (as urllib reads it), so an unencoded '@' in it is masked too. Hydra escapes ':' as
# '\:' in the overrides it hands to sweep jobs: both forms are read.
_USERINFO = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*\\?://)(?P<user>[^/\s:@\\]*)(?P<colon>\\?:)"
    r"(?P<pw>[^/\s]*)@"
)


SECRET_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
MIN_SECRET = 4  # shorter values would mask ordinary words: such a password is no secret anyway


def mask(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}{m['colon']}{MASK}@", text)


def mask_secrets(text: str) -> str:
    """`text` (an error line or a traceback: what is shown, never a stored record, whose values
    a short password could match) with the value of every credential variable replaced by
    ***."""
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name, "")
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, MASK)
    return text


def shown(text: str) -> str:
    """`text` as a user may see it: every URI's password and credential variable's value
    masked."""
    return mask_secrets(mask(text))


def mask_files(paths: Iterable[Path]) -> None:
    """Mask the files `paths` in place (those that exist and hold a password): Hydra's record of
    a job (.hydra/*.yaml, a sweep's multirun.yaml) keeps the overrides as they were typed.
    Atomic: a reader sees the file whole, before or after."""
    for path in paths:
        try:
            text = path.read_text()
            if (hidden := mask(text)) != text:
                _replace(path, hidden)
        except (OSError, UnicodeDecodeError):  # gone, or not ours to write: left as it is
            continue


def _replace(path: Path, text: str) -> None:
    """`text` written over `path` atomically, through a temporary file of its own (the jobs of
    a sweep, on other machines too, share its multirun.yaml)."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def masked(value: Any) -> Any:
    """`value` masked if it is a string (params of any type pass through)."""
    return mask(value) if isinstance(value, str) else value


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`url` without its user and password, and those two (None when absent)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return bare, user, password
