"""What makes an interrupted sweep safe to run again: a sweep folder named by its command, finished
jobs skipped, training resumed from its last epoch, one W&B run id per job folder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from experiments.cache import cache_key
from experiments.errors import UserError

log = logging.getLogger(__name__)

# Settings that change where or how a job runs, not what it computes.
NOT_IN_CONFIG_HASH = {"resume", "cache", "cache_dir"}


def sweep_name(argv: list[str] | None = None) -> str:
    """A folder name for a multirun, from its command line: the same command finds the same folder.

    Hydra's own settings (launcher, sweep folder) and `resume` are left out, so running the same sweep on
    another launcher, or with resume=false, still names the same folder.
    """
    args = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    args = [a for a in args if not a.lstrip("+~").startswith(("hydra", "resume="))]
    readable = ",".join(args).replace("/", "_") or "default"
    readable = "".join(c if c.isalnum() or c in "=,._+-" else "_" for c in readable)[:80]
    return f"{readable}-{hashlib.sha1(' '.join(args).encode()).hexdigest()[:8]}"


def config_hash(cfg_container: dict[str, Any]) -> str:
    return cache_key({k: v for k, v in cfg_container.items() if k not in NOT_IN_CONFIG_HASH})


def finished_results(job_dir: Path, expected_hash: str) -> dict[str, Any] | None:
    """The job folder's results.json if the job already finished with this config; else None.

    Results of another config in the same folder are an error: resuming over them would mix two sweeps.
    """
    path = job_dir / "results.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    if results.get("config_hash") != expected_hash:
        raise UserError(
            f"resume: {job_dir} holds the results of a different config; choose another hydra.sweep.dir "
            "(or resume=false to overwrite it)"
        )
    return results


def stable_run_id(job_dir: Path) -> str:
    """The job folder's W&B run id: a job run again resumes its W&B run instead of starting a duplicate."""
    return hashlib.sha1(str(job_dir.resolve()).encode()).hexdigest()[:16]


class EpochCheckpoint(pl.Callback):
    """Saves the whole training state after every epoch, atomically, so a killed job resumes from it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # the whole state; rank 0 writes it under DDP, with a barrier
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


def resumable_checkpoint(path: Path, resume: bool) -> Path | None:
    if resume and path.exists():
        log.info("resuming training from %s", path)
        return path
    return None

