"""A backport of Hydra's fix for its slow config loading (hydra PR #2928: merged upstream after 1.3.8, the
latest release).

Hydra deep-copies its config repository for every config group it looks up (`--help` lists them all: 113
copies) and with it the ConfigStore singleton, that is every installed plugin's structured configs: a
second of `--help`'s 1.4 s on 2 cores. Upstream's structured config source now looks the singleton up
instead of holding it; here a deep copy of the store is the store itself, to the same effect. Safe because
`ConfigStore.load` hands out deep copies of its nodes, so nothing changes the store through a copy.
"""

from __future__ import annotations

from typing import Any


def share_config_store() -> None:
    """Make copies of Hydra's config repository share the one ConfigStore (call before Hydra composes)."""
    from hydra.core.config_store import ConfigStore

    def itself(store: ConfigStore, memo: dict[int, Any]) -> ConfigStore:
        return store

    ConfigStore.__deepcopy__ = itself  # type: ignore[attr-defined]
