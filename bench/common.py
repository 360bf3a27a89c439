"""What the bench's sections share: the machine's description, running the CLI, a trained model's codes, and
how figures are written in the table."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from experiments.data import ImageDataModule
from experiments.models.autoencoder import ConvAutoencoder

Row = tuple[str, str, str]  # (figure, ratio against its in-run baseline, absolute figures)


@dataclass
class Context:
    """What a section measures on: the data (Fashion-MNIST, or the digits with --quick) and where it writes."""

    data: ImageDataModule
    out: Path
    quick: bool
    codes: Callable[[], np.ndarray]  # one trained model's eval codes, shared by the t-SNE sections

    @property
    def data_overrides(self) -> list[str]:
        """A CLI job on the same data as `data`."""
        return ["data=digits", "trainer.max_epochs=2", "plots.max_points=500"] if self.quick else []


@dataclass(frozen=True)
class Section:
    """A section of the table: what it measures and how its measurements read as rows."""

    measure: Callable[[Context], dict]
    rows: Callable[[dict], list[Row]]


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} cores, {cpu}, {gpu}, torch {torch.__version__}"


def cli_results(out: Path, overrides: list[str]) -> dict:
    """results.json of one `python -m experiments` job."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    args = [sys.executable, "-m", "experiments", f"hydra.run.dir={out}", "logger=none", *overrides]
    subprocess.run(args, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())


def timed_sweep(out: Path, overrides: list[str]) -> float:
    """Wall time of one `python -m experiments ... -m` in a fresh cache folder."""
    shutil.rmtree(out, ignore_errors=True)
    cache = out / "cache"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "EXPERIMENTS_CACHE_DIR": str(cache)}
    # the sweep's nine PCA jobs (its t-SNE row is one slow job that no launcher or cache speeds up)
    args = [sys.executable, "-m", "experiments", "+sweep=latent_dims", "+sweep/latent_dims=glob(pca*)",
            f"hydra.sweep.dir={out / 'sweep'}", *overrides, "-m"]
    start = time.perf_counter()
    subprocess.run(args, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def trained(model_class: type[pl.LightningModule], data: ImageDataModule, epochs: int) -> pl.LightningModule:
    """A model of `model_class` (torch seed 0) trained for `epochs` on the fit images, quietly, in eval mode."""
    torch.manual_seed(0)
    model = model_class(data.image_shape)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, limit_val_batches=0,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=data.train_dataloader(), val_dataloaders=data.val_dataloader())
    return model.eval()


def trained_codes(data: ImageDataModule, n_points: int) -> np.ndarray:
    """Codes of the first eval images under an autoencoder trained for two epochs."""
    model = trained(ConvAutoencoder, data, epochs=2)
    with torch.no_grad():
        return model.encode(data.eval_images[:n_points]).numpy().astype(np.float64)


def kmeans_accuracy(embedding: np.ndarray, labels: np.ndarray) -> float:
    """Clustering accuracy of k-means (10 clusters) on an embedding of the first len(embedding) images."""
    from sklearn.cluster import KMeans

    from experiments.metrics import cluster_accuracy

    return cluster_accuracy(labels[: len(embedding)], KMeans(10, n_init=10, random_state=0).fit_predict(embedding))


def seconds(s: float) -> str:
    """Whole seconds from 10 s, tenths from 1 s, hundredths from 0.1 s (a GPU's t-SNE takes a second or two),
    milliseconds below (an MLP epoch on the digits)."""
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s" if s >= 1 else f"{s:.2f} s" if s >= 0.1 else f"{1000 * s:.0f} ms"


def faster(speedup: float) -> str:
    """A speed ratio in words that stay true either way: "2.42x faster", or "1.05x slower" below 1."""
    return f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"


def reached(n: int | None) -> str:
    return "not reached" if n is None else f"{n:,}"


def iteration_ratio(ours: int | None, baseline: int | None) -> str:
    if ours is None:
        return "not reached"
    if baseline is None:
        return f"{ours:,} vs not reached"
    return f"{ours / baseline:.2f}x the iterations"
