"""`make bench`: each figure as a ratio against a baseline measured in the same run, on this machine.

1. The nine-job latent_dims sweep on Fashion-MNIST: wall time with the model cache against cache=false.
2. Autoencoder training throughput: the Lightning module against a plain PyTorch loop of the same model.
3. The t-SNE stage: openTSNE against scikit-learn's TSNE on the same autoencoder codes (time and KL).

Writes outputs/bench/bench.md (the README's table) and bench.json. `--quick` runs it all on the digits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from experiments.data import Digits, FashionMNIST, ImageDataModule  # noqa: E402
from experiments.models.autoencoder import ConvAutoencoder  # noqa: E402
from experiments.reduce import OpenTSNE  # noqa: E402


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


def timed_sweep(out: Path, overrides: list[str]) -> float:
    """Wall time of one `python -m experiments ... -m` in a fresh cache folder."""
    shutil.rmtree(out, ignore_errors=True)
    cache = out / "cache"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "EXPERIMENTS_CACHE_DIR": str(cache)}
    args = [sys.executable, "-m", "experiments", "+sweep=latent_dims", f"hydra.sweep.dir={out / 'sweep'}", *overrides, "-m"]
    start = time.perf_counter()
    subprocess.run(args, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_sweep(out: Path, data: list[str]) -> dict:
    cached = timed_sweep(out / "cached", data)
    uncached = timed_sweep(out / "uncached", [*data, "cache=false"])
    return {"cached_s": cached, "uncached_s": uncached, "speedup": uncached / cached}


class EpochClock(pl.Callback):
    """Seconds of each training epoch, without Lightning's setup and teardown."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def lightning_epoch(data: ImageDataModule, seed: int) -> float:
    torch.manual_seed(seed)
    model = ConvAutoencoder(data.image_shape)
    clock = EpochClock()
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, callbacks=[clock], limit_val_batches=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=data.train_dataloader())
    return clock.seconds[0]


def plain_epoch(data: ImageDataModule, seed: int) -> float:
    torch.manual_seed(seed)
    model = ConvAutoencoder(data.image_shape)
    optimizer = model.configure_optimizers()
    model.train()
    start = time.perf_counter()
    for images, *_ in data.train_dataloader():
        loss = torch.nn.functional.mse_loss(model(images), images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def bench_throughput(data: ImageDataModule, repeats: int = 2) -> dict:
    """Best of `repeats` epochs each, alternating so that both see the same machine state."""
    lightning, plain = [], []
    for i in range(repeats):
        plain.append(plain_epoch(data, i))
        lightning.append(lightning_epoch(data, i))
    n = len(data.fit_images)
    return {
        "lightning_img_s": n / min(lightning),
        "plain_img_s": n / min(plain),
        "ratio": min(plain) / min(lightning),
    }


def bench_tsne(data: ImageDataModule, n_points: int) -> dict:
    from sklearn.manifold import TSNE

    torch.manual_seed(0)
    model = ConvAutoencoder(data.image_shape)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, limit_val_batches=0, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=data.train_dataloader())
    with torch.no_grad():
        codes = model.eval().encode(data.eval_images[:n_points]).numpy().astype(np.float64)
    start = time.perf_counter()
    ours = OpenTSNE(2, n_iter=750, random_state=0)
    ours.fit_transform(codes)
    opentsne_s = time.perf_counter() - start
    start = time.perf_counter()
    sk = TSNE(2, perplexity=30.0, max_iter=750, init="pca", random_state=0, n_jobs=-1)
    sk.fit_transform(codes)
    sklearn_s = time.perf_counter() - start
    return {
        "points": len(codes),
        "opentsne_s": opentsne_s,
        "sklearn_s": sklearn_s,
        "speedup": sklearn_s / opentsne_s,
        "opentsne_kl": ours.kl_divergence_,
        "sklearn_kl": float(sk.kl_divergence_),
    }


def table(results: dict, where: str) -> str:
    s, t, k = results["sweep"], results["throughput"], results["tsne"]
    rows = [
        ("latent_dims sweep, 9 jobs: model cache vs cache=false (wall time)",
         f"{s['speedup']:.2f}x faster", f"{s['cached_s']:.0f} s vs {s['uncached_s']:.0f} s"),
        ("autoencoder training: Lightning module vs plain PyTorch loop (images/s)",
         f"{t['ratio']:.2f} of plain", f"{t['lightning_img_s']:.0f} vs {t['plain_img_s']:.0f} img/s"),
        (f"t-SNE of {k['points']} codes: openTSNE vs scikit-learn TSNE (time; KL)",
         f"{k['speedup']:.2f}x faster", f"{k['opentsne_s']:.1f} s vs {k['sklearn_s']:.1f} s; KL {k['opentsne_kl']:.3f} vs {k['sklearn_kl']:.3f}"),
    ]
    lines = [f"Machine: {results['machine']}. Data: {where}. {results['date']}.", "",
             "| figure | ratio | absolute |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the digits instead of Fashion-MNIST, to check the script")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_overrides = ["data=digits", "trainer.max_epochs=2", "plots.max_points=500"] if args.quick else []
    data = Digits() if args.quick else FashionMNIST()
    data.setup()
    where = "scikit-learn digits (--quick)" if args.quick else "Fashion-MNIST (60k fit, 10k eval), default config"
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(f"machine: {results['machine']}", flush=True)
    results["throughput"] = bench_throughput(data)
    print("throughput:", results["throughput"], flush=True)
    results["tsne"] = bench_tsne(data, n_points=min(5000, len(data.eval_images)))
    print("tsne:", results["tsne"], flush=True)
    results["sweep"] = bench_sweep(out, data_overrides)
    print("sweep:", results["sweep"], flush=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results, where)
    (out / "bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
