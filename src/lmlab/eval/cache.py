"""A result cache keyed by (model fingerprint, eval set, settings): one JSON file per key.

The fingerprint names what the weights are, not just what they are called: an alias with its
package version, a folder with the sizes and modification times of its files, a tiny model
with its preset. Retraining into the same run folder therefore misses the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def fingerprint(ref: str) -> str:
    """A string that changes when the weights behind ``ref`` change."""
    from importlib.metadata import PackageNotFoundError, version

    from lmlab.models import resolve
    from lmlab.models.registry import ALIASES

    r = resolve(ref)
    if r.kind == "alias":
        try:
            v = version(ALIASES[r.ref].pip_name.split("==")[0])
        except PackageNotFoundError:
            v = "?"
        return f"alias:{r.ref}@{v}"
    if r.kind in ("tiny", "hub"):
        return f"{r.kind}:{r.path}"
    folder = Path(r.path).resolve()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    stamp = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    base = f"|base={fingerprint(r.base)}" if r.base else ""
    return f"{r.kind}:{folder}:{hashlib.sha256(stamp.encode()).hexdigest()[:16]}{base}"


def key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Cache:
    """``get(k)`` -> dict or None; ``put(k, value)`` writes atomically. ``folder=None``: off."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder else None

    def get(self, k: str) -> dict | None:
        if self.folder is None:
            return None
        f = self.folder / f"{k}.json"
        try:
            return json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, k: str, value: dict) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{k}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(value, default=str))
        os.replace(tmp, self.folder / f"{k}.json")
