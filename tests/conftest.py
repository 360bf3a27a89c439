"""Helpers for end-to-end tests: run `python -m experiments` as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    dir: Path

    @property
    def results(self) -> dict:
        return json.loads((self.dir / "results.json").read_text())


def run_cli(out_dir: Path, *overrides: str, multirun: bool = False, env: dict | None = None, cache: Path | None = None) -> Run:
    """Run the CLI with its output folder (run or sweep dir) at `out_dir` and W&B offline."""
    dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    args = [sys.executable, "-m", "experiments", f"{dir_key}={out_dir}", *overrides] + (["-m"] if multirun else [])
    inherited = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    environment = {
        **inherited,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "EXPERIMENTS_CACHE_DIR": str(cache or out_dir.parent / "cache"),
        **(env or {}),
    }
    done = subprocess.run(args, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    return Run(done.returncode, done.stdout, done.stderr, out_dir)


def two_class_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12, 12, 3) uint8 images of two obvious kinds (horizontal vs vertical stripes) and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    stripes = (np.arange(12) % 4 < 2).astype(np.float32)
    horizontal = np.repeat(stripes[:, None], 12, axis=1)
    images = np.where(labels[:, None, None] == 0, horizontal, horizontal.T)
    images = images[..., None] * rng.uniform(0.6, 1.0, size=(n, 1, 1, 3)) + rng.normal(0, 0.05, (n, 12, 12, 3))
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels


@pytest.fixture
def npy_files(tmp_path: Path) -> dict[str, str]:
    images, labels = two_class_images(120)
    paths = {"images": tmp_path / "images.npy", "labels": tmp_path / "labels.npy"}
    np.save(paths["images"], images)
    np.save(paths["labels"], labels)
    return {k: str(v) for k, v in paths.items()}


# Settings that keep a run on the digits small and quick.
QUICK = ["data=digits", "trainer.max_epochs=2", "plots.max_points=500"]
