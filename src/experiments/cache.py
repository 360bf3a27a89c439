"""A cache of trained models (and what is derived from them), keyed by everything that shapes them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from experiments.errors import UserError
from experiments.files import atomic_path, remove_stale_temporaries

log = logging.getLogger(__name__)

Entry = dict[str, Any]  # tensors, numbers, strings, lists and dicts: loadable with weights_only=True


class Cache:
    """Entries on disk, one file per key: trained models, and views of their codes.

    A per-key file lock makes parallel jobs that need the same entry compute it once: the first
    computes, the others wait and load. Entries are written whole (temporary file, fsync, then rename)
    or not at all, with the permissions the process's umask gives any new file, so a cache shared by a
    group (EXPERIMENTS_CACHE_DIR) is readable by the group.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def create(self) -> None:
        """Make the folder, or say in one line why it cannot be: before a job trains what it would store."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cache_dir={self.root}: cannot create it ({e.strerror}); choose another folder, "
                            "or cache=false") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise UserError(f"cache_dir={self.root}: this user cannot write there; choose another folder, "
                            "or cache=false")

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def partial_checkpoint(self, key: str) -> Path:
        """Where the training of entry `key` saves its state every epoch: a killed job run again, in this
        sweep or another that needs the same model, goes on from its last epoch."""
        return self.root / f"{key}.partial.ckpt"

    def load(self, key: str) -> Entry:
        return torch.load(self.path(key), map_location="cpu", weights_only=True)

    def get_or_compute(self, key: str, compute: Callable[[], Entry]) -> tuple[Entry, bool]:
        """Return (the entry, whether it came from the cache)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        lock_path = Path(str(path) + ".lock")
        with FileLock(str(lock_path)):
            if path.exists():
                try:
                    return self.load(key), True
                except Exception as e:  # noqa: BLE001 - an unreadable entry is recomputed, not fatal
                    log.warning("cache: unreadable entry %s (%s); computing it again", path, e)
            remove_stale_temporaries(path)
            entry = compute()
            save_entry(entry, path)
            # With the entry on disk the lock has done its work: whoever waits on it, or takes a new one,
            # finds the entry and loads it. Removing it keeps the folder to one file per entry.
            lock_path.unlink(missing_ok=True)
            return entry, False


def save_entry(entry: Entry, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(entry, tmp)
