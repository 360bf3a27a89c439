"""A cache of trained models (and what is derived from them), keyed by everything that shapes them."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from experiments.files import atomic_path

log = logging.getLogger(__name__)

Entry = dict[str, Any]  # tensors, numbers, strings, lists and dicts: loadable with weights_only=True


def cache_key(parts: dict[str, Any]) -> str:
    """A short hash of plain config values (dicts, lists, numbers, strings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class Cache:
    """Entries on disk, one file per key: trained models, and views of their codes.

    A per-key file lock makes parallel jobs that need the same entry compute it once: the first
    computes, the others wait and load. Entries are written whole (temporary file, then rename) or
    not at all.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> Entry:
        return torch.load(self.path(key), map_location="cpu", weights_only=True)

    def get_or_compute(self, key: str, compute: Callable[[], Entry]) -> tuple[Entry, bool]:
        """Return (the entry, whether it came from the cache)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        with FileLock(str(path) + ".lock"):
            if path.exists():
                try:
                    return self.load(key), True
                except Exception as e:  # noqa: BLE001 - an unreadable entry is retrained, not fatal
                    log.warning("cache: unreadable entry %s (%s); computing it again", path, e)
            entry = compute()
            save_entry(entry, path)
            return entry, False


def save_entry(entry: Entry, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(entry, tmp)
