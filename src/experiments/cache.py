"""A cache of trained models keyed by everything that shapes them, safe for parallel jobs."""

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

TrainedModel = dict[str, Any]  # {"state_dict": ..., "history": [...]}, loadable with weights_only=True


def cache_key(parts: dict[str, Any]) -> str:
    """A short hash of plain config values (dicts, lists, numbers, strings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class ModelCache:
    """Trained models on disk, one file per key.

    A per-key file lock makes parallel jobs that need the same model train it once: the first trains,
    the others wait and load. Entries are written whole (temporary file, then rename) or not at all.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def get_or_train(self, key: str, train: Callable[[], TrainedModel]) -> tuple[TrainedModel, bool]:
        """Return (the trained model, whether it came from the cache)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        with FileLock(str(path) + ".lock"):
            if path.exists():
                try:
                    return torch.load(path, map_location="cpu", weights_only=True), True
                except Exception as e:  # noqa: BLE001 - an unreadable entry is retrained, not fatal
                    log.warning("cache: unreadable entry %s (%s); training again", path, e)
            trained = train()
            save_model(trained, path)
            return trained, False


def save_model(trained: TrainedModel, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(trained, tmp)
