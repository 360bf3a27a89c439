"""`make bench`: each figure as a ratio against a baseline measured in the same run, on this machine.
Literature figures stand beside the ratio as references, never as its baseline.

1. sweep: the nine-job latent_dims sweep on Fashion-MNIST, wall time with the model cache vs cache=false.
2. throughput: autoencoder training, the Lightning module vs a plain PyTorch loop of the same model (on the CPU,
   and on the GPU too where one is visible).
3. tsne: the t-SNE stage, openTSNE vs scikit-learn's TSNE on the same autoencoder codes (time and KL).
4. mlp: the default model=mlp on raw pixels against scikit-learn's MLPClassifier trained as long on the same
   images (test accuracy), and manual vs autograd gradients (s/epoch).
5. tsne_exact: reducer=tsne_exact vs openTSNE on 5,000 and 10,000 codes (time, and KL under the exact P).
   tsne_sampled: reducer=tsne_sampled into 8 dimensions on 10,000 codes vs openTSNE into 2 (time) and
   tsne_exact into 8 (KL under the exact P, k-means accuracy).
6. joblib: the latent_dims sweep on hydra/launcher=joblib (n_jobs=2) vs the basic launcher.
7. ista: the Lasso solver's iterations (ISTA vs FISTA) and its batched speed against scikit-learn.
8. deblur: task=deblur on the 256x256 camera: FISTA's iterations to 1e-4 and 1e-6 of F* against ISTA's
   (20,000 more iterations estimate F*), objectives at 100 vs 1000 iterations, seconds per 100 iterations
   (float64 and float32; on the GPU too where one is visible).
10. help: `python -m experiments --help` against `python -c "import hydra"` (wall time).
9. lista: the default model=lista job: code error after 16 layers vs 16 iterations of ISTA and FISTA.
11. umap: reducer=umap (exact neighbours, experiments.umap_exact) vs umap-learn's own UMAP on every image's code
   of N2D's dense autoencoder, each in a fresh process as a job runs it (time; the eval rows' GMM accuracy).

Writes outputs/bench/bench.md (the README's table) and bench.json. `--quick` runs it all on the digits;
`--only mlp,tsne_exact` re-measures some sections and keeps the others from the last bench.json, each with
the machine and date it was measured on. A level never reached prints "not reached", never a number.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from experiments.console import LIGHTNING_INFO, quiet_library_warnings
from experiments.data import Digits, FashionMNIST, ImageDataModule, batches
from experiments.models.autoencoder import ConvAutoencoder
from experiments.reduce import OpenTSNE


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
    # the sweep's nine PCA jobs (its t-SNE row is one slow job that no launcher or cache speeds up)
    args = [sys.executable, "-m", "experiments", "+sweep=latent_dims", "+sweep/latent_dims=glob(pca*)",
            f"hydra.sweep.dir={out / 'sweep'}", *overrides, "-m"]
    start = time.perf_counter()
    subprocess.run(args, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_joblib(out: Path, data: list[str]) -> dict:
    """The same sweep (fresh cache each) on the basic launcher and on joblib with two workers."""
    basic = timed_sweep(out / "basic", data)
    parallel = timed_sweep(out / "joblib", [*data, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    return {"basic_s": basic, "joblib_s": parallel, "speedup": basic / parallel}


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
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()  # the epoch's last steps may still be queued on the GPU
        self.seconds.append(time.perf_counter() - self.start)


def lightning_epoch(data: ImageDataModule, seed: int, accelerator: str) -> float:
    torch.manual_seed(seed)
    model = ConvAutoencoder(data.image_shape)
    clock = EpochClock()
    trainer = pl.Trainer(
        max_epochs=1, accelerator=accelerator, devices=1, logger=False, callbacks=[clock], limit_val_batches=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=data.train_dataloader(), val_dataloaders=data.eval_dataloader())
    return clock.seconds[0]


def plain_epoch(data: ImageDataModule, seed: int, accelerator: str) -> float:
    torch.manual_seed(seed)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    model = ConvAutoencoder(data.image_shape).to(device)
    optimizer = model.configure_optimizers()
    model.train()
    start = time.perf_counter()
    for images, *_ in data.train_dataloader():
        images = images.to(device)
        loss = torch.nn.functional.mse_loss(model(images), images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()  # the last steps may still be queued, as for EpochClock
    return time.perf_counter() - start


def bench_throughput(data: ImageDataModule, repeats: int = 2) -> dict:
    """Best of `repeats` epochs each, alternating so that both see the same machine state; on the CPU, and on
    the GPU where one is visible."""
    result = {}
    for accelerator in ["cpu"] + (["gpu"] if torch.cuda.is_available() else []):
        lightning, plain = [], []
        for i in range(repeats):
            plain.append(plain_epoch(data, i, accelerator))
            lightning.append(lightning_epoch(data, i, accelerator))
        n = len(data.fit_images)
        result[accelerator] = {"lightning_img_s": n / min(lightning), "plain_img_s": n / min(plain),
                               "ratio": min(plain) / min(lightning)}
    return result


def bench_tsne(data: ImageDataModule, n_points: int) -> dict:
    from sklearn.manifold import TSNE

    codes = trained_codes(data, n_points)
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


def cli_results(out: Path, overrides: list[str]) -> dict:
    """results.json of one `python -m experiments` job."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    args = [sys.executable, "-m", "experiments", f"hydra.run.dir={out}", "logger=none", *overrides]
    subprocess.run(args, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())


def bench_mlp(out: Path, data_overrides: list[str], data: ImageDataModule) -> dict:
    from sklearn.neural_network import MLPClassifier as SklearnMLP
    from sklearn.preprocessing import StandardScaler

    from experiments.models.mlp import MLPClassifier

    data.setup()
    results = cli_results(out / "mlp", ["model=mlp", *data_overrides])
    # The baseline: scikit-learn's MLPClassifier, the same layer, optimiser, standardised pixels and epochs.
    scaler = StandardScaler().fit(data.fit_images.flatten(1).numpy())
    start = time.perf_counter()
    baseline = SklearnMLP(hidden_layer_sizes=(512,), learning_rate_init=1e-3, batch_size=256,
                          max_iter=len(results["curves"]), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: stopped at max_iter, as asked
        baseline.fit(scaler.transform(data.fit_images.flatten(1).numpy()), data.fit_labels)
    sklearn_s = time.perf_counter() - start
    sklearn_acc = float(baseline.score(scaler.transform(data.eval_images.flatten(1).numpy()), data.eval_labels))
    x = data.fit_images.flatten(1)
    y = torch.from_numpy(data.fit_labels)
    epoch_s = {}
    for gradients in ("autograd", "manual", "autograd", "manual"):  # alternated, best of two each
        torch.manual_seed(0)
        model = MLPClassifier(x.shape[1], 10, hidden_dims=(512,), optimizer="adam", lr=1e-3, gradients=gradients)
        optimizer = model.configure_optimizers()
        start = time.perf_counter()
        for xb, yb in batches((x, y), 256, shuffle=True, seed=0):
            total, _ = model.objective(model(xb), yb)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        epoch_s[gradients] = min(epoch_s.get(gradients, float("inf")), time.perf_counter() - start)
    return {
        "test_acc": results["test_acc"],
        "sklearn_test_acc": sklearn_acc,
        "sklearn_fit_s": sklearn_s,
        "epochs": len(results["curves"]),
        "fit_s": results["seconds"]["fit"],
        "autograd_epoch_s": epoch_s["autograd"],
        "manual_epoch_s": epoch_s["manual"],
        "manual_over_autograd": epoch_s["manual"] / epoch_s["autograd"],
    }


def trained(model_class: type[pl.LightningModule], data: ImageDataModule, epochs: int) -> pl.LightningModule:
    """A model of `model_class` (seed 0) trained for `epochs` on the fit images, quietly, in eval mode."""
    torch.manual_seed(0)
    model = model_class(data.image_shape)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, limit_val_batches=0,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=data.train_dataloader(), val_dataloaders=data.eval_dataloader())
    return model.eval()


def trained_codes(data: ImageDataModule, n_points: int) -> np.ndarray:
    """Codes of the first eval images under an autoencoder trained for two epochs."""
    model = trained(ConvAutoencoder, data, epochs=2)
    with torch.no_grad():
        return model.encode(data.eval_images[:n_points]).numpy().astype(np.float64)


def n2d_codes(data: ImageDataModule, epochs: int) -> np.ndarray:
    """Every fit image's code, then every eval image's, under N2D's dense autoencoder trained for `epochs`."""
    from experiments.models.dense_autoencoder import DenseAutoencoder

    model = trained(DenseAutoencoder, data, epochs)
    with torch.no_grad():
        return model.encode(torch.cat([data.fit_images, data.eval_images])).numpy()


# One UMAP in a process of its own, as a job runs it (numba compiles its functions in each): N2D's settings.
UMAP_RUN = """
import sys, time, numpy as np
from importlib import import_module
module, name = sys.argv[1].rsplit(".", 1)
codes = np.load(sys.argv[2])
start = time.perf_counter()
reducer = getattr(import_module(module), name)(n_components=10, n_neighbors=20, min_dist=0.0, random_state=0, n_jobs=1)
np.save(sys.argv[3], reducer.fit_transform(codes))
print(time.perf_counter() - start)
"""


def bench_umap(data: ImageDataModule, out: Path, epochs: int) -> dict:
    """reducer=umap's class against umap-learn's own on the same codes: seconds from import to embedding, and the
    accuracy of a full-covariance GMM (10 components, N2D's clusterer) on the eval images' rows."""
    from sklearn.mixture import GaussianMixture

    from experiments.metrics import cluster_accuracy

    np.save(out / "umap_codes.npy", codes := n2d_codes(data, epochs))
    n_eval = len(data.eval_images)
    result = {"points": len(codes), "code_size": codes.shape[1], "epochs": epochs}
    for key, target in (("exact", "experiments.umap_exact.UMAP"), ("umap_learn", "umap.UMAP")):
        embedding_file = out / f"umap_{key}.npy"
        done = subprocess.run([sys.executable, "-c", UMAP_RUN, target, out / "umap_codes.npy", embedding_file],
                              cwd=REPO, check=True, capture_output=True, text=True,
                              env=os.environ | {"PYTHONPATH": str(REPO / "src")})
        rows = np.load(embedding_file)[-n_eval:]
        clusters = GaussianMixture(10, covariance_type="full", random_state=0).fit_predict(rows)
        result |= {f"{key}_s": float(done.stdout.split()[-1]),
                   f"{key}_acc": cluster_accuracy(data.eval_labels, clusters)}
    return result | {"speedup": result["umap_learn_s"] / result["exact_s"]}


def kmeans_accuracy(embedding: np.ndarray, labels: np.ndarray) -> float:
    """Clustering accuracy of k-means (10 clusters) on an embedding of the first len(embedding) images."""
    from sklearn.cluster import KMeans

    from experiments.metrics import cluster_accuracy

    return cluster_accuracy(labels[: len(embedding)], KMeans(10, n_init=10, random_state=0).fit_predict(embedding))


def bench_tsne_exact(codes: np.ndarray, labels: np.ndarray, sizes: list[int]) -> list[dict]:
    from experiments.tsne import ExactTSNE, kl_divergence

    rows = []
    for n in sizes:
        start = time.perf_counter()
        exact = ExactTSNE(2, n_iter=750, random_state=0, accelerator="auto")  # the GPU where one is visible
        exact_embedding = exact.fit_transform(codes[:n])
        exact_s = time.perf_counter() - start
        start = time.perf_counter()
        fast = OpenTSNE(2, n_iter=750, random_state=0)
        embedding = fast.fit_transform(codes[:n])
        fast_s = time.perf_counter() - start
        fast_kl_exact_p = kl_divergence(exact.affinities_, torch.as_tensor(embedding, dtype=exact.affinities_.dtype,
                                                                           device=exact.affinities_.device), 2048)
        rows.append({
            "points": n, "exact_s": exact_s, "opentsne_s": fast_s, "exact_kl": exact.kl_divergence_,
            "opentsne_kl_exact_p": fast_kl_exact_p, "opentsne_kl_own": fast.kl_divergence_,
            "kl_ratio": exact.kl_divergence_ / fast_kl_exact_p,
            "exact_kmeans_acc": kmeans_accuracy(exact_embedding, labels),
            "opentsne_kmeans_acc": kmeans_accuracy(embedding, labels),
            "device": "cuda" if torch.cuda.is_available() and exact.accelerator != "cpu" else "cpu",
        })
        print("tsne_exact:", rows[-1], flush=True)
    return rows


def bench_tsne_sampled(codes: np.ndarray, labels: np.ndarray) -> dict:
    """reducer=tsne_sampled into 8 dimensions against openTSNE into 2 (time) and tsne_exact into 8 (KL under
    the exact P, and k-means accuracy), on the same codes."""
    from experiments.tsne import ExactTSNE, SampledTSNE, kl_divergence

    def timed(reducer):
        start = time.perf_counter()
        embedding = reducer.fit_transform(codes)
        return embedding, time.perf_counter() - start

    opentsne, opentsne_s = timed(OpenTSNE(2, random_state=0))
    sampled, sampled_s = timed(sampled_tsne := SampledTSNE(8, random_state=0, accelerator="auto"))
    exact, exact_s = timed(exact_tsne := ExactTSNE(8, random_state=0, accelerator="auto"))
    P = exact_tsne.affinities_
    sampled_kl = kl_divergence(P, torch.as_tensor(sampled, dtype=P.dtype, device=P.device), 256)
    return {
        "points": len(codes), "opentsne_2d_s": opentsne_s, "sampled_s": sampled_s, "exact_s": exact_s,
        "sampled_kl_exact_p": sampled_kl, "exact_kl": exact_tsne.kl_divergence_,
        "sampled_kl_own": sampled_tsne.kl_divergence_,
        "kl_ratio": sampled_kl / exact_tsne.kl_divergence_, "sampled_kmeans_acc": kmeans_accuracy(sampled, labels),
        "exact_kmeans_acc": kmeans_accuracy(exact, labels), "opentsne_kmeans_acc": kmeans_accuracy(opentsne, labels),
        "device": "cuda" if torch.cuda.is_available() and sampled_tsne.accelerator != "cpu" else "cpu",
    }


def bench_ista() -> dict:
    """The Lasso solver: iterations to 1e-6 relative suboptimality on the literature's synthetic problem,
    and the batched solver against scikit-learn on 1,000 and 10,000 problems of one dictionary."""
    from experiments.lasso import first_iteration_within, solve

    g = torch.Generator().manual_seed(0)
    A = torch.randn(250, 500, generator=g, dtype=torch.float64)
    A /= A.norm(dim=0)
    x_true = torch.zeros(500, dtype=torch.float64)
    x_true[torch.randperm(500, generator=g)[:50]] = torch.randn(50, generator=g, dtype=torch.float64)
    b = A @ x_true + 0.01 * torch.randn(250, generator=g, dtype=torch.float64)
    lam = 0.1 * float((A.T @ b).abs().max())
    best = solve(A, b, lam, tol=1e-15, max_iter=100000).objective.min().item()
    iterations = {}
    for method in ("ista", "fista"):
        curve = solve(A, b, lam, method=method, tol=0.0, max_iter=5000).objective
        iterations[method] = first_iteration_within((curve - best) / best, 1e-6)  # None: not reached

    batched = [batched_lasso(rows, atoms, problems, g, loop=problems == 1000 and atoms == 128)
               for rows, atoms, problems in ((64, 128, 1000), (64, 128, 10000), (100, 256, 1000))]
    return {"synthetic_iterations_ista": iterations["ista"], "synthetic_iterations_fista": iterations["fista"],
            "batched": batched}


def batched_lasso(rows: int, atoms: int, problems: int, g: torch.Generator, loop: bool) -> dict:
    """`problems` Lasso problems of one rows x atoms dictionary: lasso.lasso_gram (batched FISTA in Gram form, to
    a relative duality gap of 1e-4) against sparse_encode(lasso_cd) (and Lasso in a loop), best of 3 each."""
    from sklearn.decomposition import sparse_encode
    from sklearn.linear_model import Lasso

    from experiments.lasso import MatrixOperator, lasso_gram, objective

    D = torch.randn(atoms, rows, generator=g, dtype=torch.float64)  # scikit-learn's layout: atoms x features
    D /= D.norm(dim=1, keepdim=True)
    codes = torch.randn(problems, atoms, generator=g, dtype=torch.float64) * (torch.rand(problems, atoms, generator=g) < 0.1)
    X = codes @ D + 0.05 * torch.randn(problems, rows, generator=g, dtype=torch.float64)
    lam = 0.1 * float((X @ D.T).abs().max())
    operator, columns = MatrixOperator(D.T.contiguous()), X.T.contiguous()

    def total(code: torch.Tensor) -> float:
        return float(objective(operator, columns, code, lam).sum())

    def best_of_3(run):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
        return min(times), out

    sparse_encode_s, sk_codes = best_of_3(lambda: sparse_encode(X.numpy(), D.numpy(), algorithm="lasso_cd", alpha=lam,
                                                                max_iter=10000))
    gram_s, ours = best_of_3(lambda: lasso_gram(D.T.contiguous(), columns, lam, tol=1e-4, max_iter=20000))
    result = {"rows": rows, "atoms": atoms, "problems": problems, "gram_s": gram_s, "sparse_encode_s": sparse_encode_s,
              "gram_objective": total(ours.x), "sparse_encode_objective": total(torch.as_tensor(sk_codes.T))}
    if loop:
        start = time.perf_counter()
        loop_codes = np.stack([Lasso(alpha=lam / rows, fit_intercept=False, max_iter=10000).fit(D.T.numpy(), x).coef_
                               for x in X.numpy()])
        result |= {"lasso_loop_s": time.perf_counter() - start,
                   "lasso_loop_objective": total(torch.as_tensor(loop_codes.T))}
    return result


def bench_deblur(out: Path, quick: bool) -> dict:
    """The assignment's deblurring run, long enough to estimate F*, and its speed per dtype (and device)."""
    fista, reference = (1000, 1000) if quick else (5000, 20000)
    job = cli_results(out / "deblur", ["task=deblur", f"task.ista_iterations={fista}", f"task.fista_iterations={fista}",
                                       f"task.reference_iterations={reference}"])
    speed = {"float64_cpu": (job["seconds_per_100_iterations_ista"], job["seconds_per_100_iterations_fista"])}
    devices = ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])
    for accelerator in devices:
        for dtype in ("float32", "float64"):
            if (dtype, accelerator) == ("float64", "cpu"):
                continue
            short = cli_results(out / f"deblur_{dtype}_{accelerator}", [
                "task=deblur", f"task.dtype={dtype}", f"accelerator={accelerator}"])
            speed[f"{dtype}_{accelerator}"] = (short["seconds_per_100_iterations_ista"],
                                               short["seconds_per_100_iterations_fista"])
    keys = ("psnr_blurred", "psnr_ista", "psnr_fista", "objective_ista_at_1000", "objective_fista_at_100",
            "fista_iterations_to_1e-4", "fista_iterations_to_1e-6", "ista_iterations_to_1e-4", "ista_iterations_to_1e-6")
    return {**{k: job[k] for k in keys}, "seconds_per_100": speed, "fista_iterations": fista,
            "reference_iterations": reference}


def bench_help(repeats: int = 5) -> dict:
    """`python -m experiments --help` against `python -c "import hydra"`: best of `repeats` each, alternated."""
    def best(args: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    hydra_s, help_s = [], []
    for _ in range(repeats):
        hydra_s.append(best(["-c", "import hydra"]))
        help_s.append(best(["-m", "experiments", "--help"]))
    return {"help_s": min(help_s), "import_hydra_s": min(hydra_s), "ratio": min(help_s) / min(hydra_s)}


def bench_lista(out: Path, quick: bool) -> dict:
    """The default model=lista job (250x500 synthetic set, 16 layers)."""
    small = ["model.problem.train_size=1000", "model.problem.test_size=200", "trainer.max_epochs=3"] if quick else []
    job = cli_results(out / "lista", ["model=lista", *small])
    return {k: job[k] for k in ("nmse_db_lista", "nmse_db_ista", "nmse_db_fista", "layers",
                                "fista_iterations_to_match_lista", "ista_iterations_to_match_lista")} | {
        "fit_s": job["seconds"]["fit"], "targets_s": job["seconds"]["targets"]}


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


def section_rows(name: str, r: dict) -> list[tuple[str, str, str]]:
    """The table rows of one section's measurements: (figure, ratio against its in-run baseline, absolute)."""
    if name == "sweep":
        return [("latent_dims sweep, 9 jobs: model cache vs cache=false (wall time)", faster(r["speedup"]),
                 f"{r['cached_s']:.0f} s vs {r['uncached_s']:.0f} s")]
    if name == "throughput":
        on = {a: r[a] for a in ("cpu", "gpu") if a in r} or {"cpu": r}  # a bench.json from before the GPU rows
        return [(f"autoencoder training on the {a.upper()}: Lightning module vs plain PyTorch loop (images/s)",
                 f"{t['ratio']:.2f} of plain", f"{t['lightning_img_s']:.0f} vs {t['plain_img_s']:.0f} img/s")
                for a, t in on.items()]
    if name == "tsne":
        return [(f"t-SNE of {r['points']} codes: openTSNE vs scikit-learn TSNE (time; KL)", faster(r["speedup"]),
                 f"{r['opentsne_s']:.1f} s vs {r['sklearn_s']:.1f} s; KL {r['opentsne_kl']:.3f} vs {r['sklearn_kl']:.3f}")]
    if name == "mlp":
        rows = [("MLP epoch, gradients=manual vs autograd (s/epoch)", f"{r['manual_over_autograd']:.2f}x the time",
                 f"{seconds(r['manual_epoch_s'])} vs {seconds(r['autograd_epoch_s'])}")]
        if "sklearn_test_acc" in r:
            rows.insert(0, ((f"model=mlp on raw pixels, default config ({r['epochs']} epochs): test accuracy vs scikit-learn's "
                            f"MLPClassifier, same layer, optimiser and epochs (reference: 0.877 in the dataset's benchmark)"),
                            f"{r['test_acc'] / r['sklearn_test_acc']:.3f} of it",
                            f"{r['test_acc']:.4f} in {seconds(r['fit_s'])} vs {r['sklearn_test_acc']:.4f} in {seconds(r['sklearn_fit_s'])}"))
        return rows
    if name == "joblib":
        return [("latent_dims sweep, 9 jobs: joblib launcher (n_jobs=2, 1 thread each) vs basic launcher (wall time)",
                 faster(r["speedup"]), f"{r['joblib_s']:.0f} s vs {r['basic_s']:.0f} s")]
    if name == "ista":
        return [
            (("Lasso 250x500, lam = 0.1 lam_max: iterations to 1e-6 relative suboptimality, FISTA vs ISTA (references: "
             "61 and 135)"), iteration_ratio(r["synthetic_iterations_fista"], r["synthetic_iterations_ista"]),
             f"{reached(r['synthetic_iterations_fista'])} vs {reached(r['synthetic_iterations_ista'])}"),
        ] + [
            (f"{b['problems']:,} Lasso problems of one {b['rows']}x{b['atoms']} dictionary: batched FISTA in Gram form "
             "(lasso.lasso_gram) vs sparse_encode(lasso_cd)" + (" and vs Lasso in a loop" if "lasso_loop_s" in b else "")
             + " (time; objective)",
             f"{b['gram_s'] / b['sparse_encode_s']:.2f}x the time"
             + (f", {b['gram_s'] / b['lasso_loop_s']:.2f}x" if "lasso_loop_s" in b else ""),
             f"{b['gram_s']:.3f} s vs {b['sparse_encode_s']:.3f} s"
             + (f" vs {b['lasso_loop_s']:.2f} s" if "lasso_loop_s" in b else "")
             + f"; objective {b['gram_objective']:.4f} vs {b['sparse_encode_objective']:.4f}")
            for b in r["batched"]
        ]
    if name == "deblur":
        base = r["seconds_per_100"]["float64_cpu"]
        rows = [(("deblurring the 256x256 camera (lam 1e-5, Haar): FISTA's objective after 100 iterations vs ISTA's after "
                 "1,000"), f"{r['objective_fista_at_100'] / r['objective_ista_at_1000']:.3f} of it",
                 (f"{r['objective_fista_at_100']:.5f} vs {r['objective_ista_at_1000']:.5f}; PSNR blurred "
                 f"{r['psnr_blurred']:.2f} dB, ISTA {r['psnr_ista']:.2f} dB, FISTA {r['psnr_fista']:.2f} dB after "
                 f"{r['fista_iterations']:,}"))]
        for level in ("1e-4", "1e-6"):
            fista, ista = r[f"fista_iterations_to_{level}"], r.get(f"ista_iterations_to_{level}")
            rows.append(((f"deblurring: iterations to {level} relative suboptimality, FISTA vs ISTA (F* from "
                         f"{r['reference_iterations']:,} more; reference target for FISTA: within "
                         f"{'1,000' if level == '1e-4' else '5,000'})"), iteration_ratio(fista, ista),
                         f"{reached(fista)} vs {reached(ista)} (of {r['fista_iterations']:,})"))
        for setting, (ista_s, fista_s) in r["seconds_per_100"].items():
            if setting != "float64_cpu":
                rows.append(((f"deblurring 256x256: seconds per 100 FISTA iterations, {setting.replace('_', ' on ')} vs "
                             "float64 on cpu"), f"{fista_s / base[1]:.2f}x the time",
                             f"{fista_s:.3f} s vs {base[1]:.3f} s (ISTA: {ista_s:.3f} s vs {base[0]:.3f} s)"))
        return rows
    if name == "lista":
        return [((f"LISTA, {r['layers']} layers, vs {r['layers']} iterations of FISTA and ISTA (code NMSE against the true "
                 "x, 250x500 synthetic set)"), (f"{r['nmse_db_lista'] - r['nmse_db_fista']:+.2f} dB vs FISTA, "
                 f"{r['nmse_db_lista'] - r['nmse_db_ista']:+.2f} dB vs ISTA"),
                 (f"{r['nmse_db_lista']:.2f} vs {r['nmse_db_fista']:.2f} vs {r['nmse_db_ista']:.2f} dB; FISTA needs "
                 f"{reached(r['fista_iterations_to_match_lista'])} iterations and ISTA "
                 f"{reached(r['ista_iterations_to_match_lista'])} to match (training {r['fit_s']:.0f} s)"))]
    if name == "tsne_exact":
        return [((f"t-SNE of {e['points']} codes, 750 iterations: tsne_exact ({e['device']}) vs openTSNE (time; KL under "
                 "the exact P)"), f"{e['exact_s'] / e['opentsne_s']:.1f}x the time; KL {e['kl_ratio']:.3f} of it",
                 (f"{seconds(e['exact_s'])} vs {seconds(e['opentsne_s'])}; KL {e['exact_kl']:.3f} vs {e['opentsne_kl_exact_p']:.3f}; "
                 f"k-means acc {e['exact_kmeans_acc']:.3f} vs {e['opentsne_kmeans_acc']:.3f}")) for e in r["sizes"]]
    if name == "tsne_sampled":
        return [((f"t-SNE of {r['points']} codes into 8 dims: tsne_sampled ({r['device']}) vs openTSNE into 2 (time; "
                 "target: within 3x)"), f"{r['sampled_s'] / r['opentsne_2d_s']:.2f}x the time",
                 f"{seconds(r['sampled_s'])} vs {seconds(r['opentsne_2d_s'])}"),
                ((f"t-SNE of {r['points']} codes into 8 dims: tsne_sampled vs tsne_exact (KL under the exact P, target: "
                 "within 1.02; time; k-means accuracy)"),
                 f"KL {r['kl_ratio']:.3f} of it; tsne_exact takes {r['exact_s'] / r['sampled_s']:.1f}x its time",
                 (f"KL {r['sampled_kl_exact_p']:.3f} vs {r['exact_kl']:.3f}; "
                 f"{seconds(r['sampled_s'])} vs {seconds(r['exact_s'])}; "
                 f"k-means acc {r['sampled_kmeans_acc']:.3f} vs {r['exact_kmeans_acc']:.3f} (openTSNE 2-D: "
                 f"{r['opentsne_kmeans_acc']:.3f})"))]
    if name == "help":
        return [("`python -m experiments --help` vs `python -c \"import hydra\"` (wall time, best of 5; target: within 5x)",
                 f"{r['ratio']:.1f}x the time", f"{r['help_s']:.2f} s vs {r['import_hydra_s']:.2f} s")]
    if name == "umap":
        figure = (f"UMAP of {r['points']:,} N2D codes of size {r['code_size']} (dense autoencoder, {r['epochs']} "
                  "epochs), fresh processes: exact neighbours (reducer=umap) vs umap-learn's own search (time; GMM "
                  "accuracy)")
        absolute = (f"{r['exact_s']:.0f} s vs {r['umap_learn_s']:.0f} s; accuracy {r['exact_acc']:.4f} vs "
                    f"{r['umap_learn_acc']:.4f}")
        return [(figure, faster(r["speedup"]), absolute)]
    raise KeyError(name)


def table(results: dict) -> str:
    """The README's table. Each section keeps the machine, data and date it was measured on (`--only`
    re-measures some sections and leaves the others as they were)."""
    stamps = {(r["machine"], r["data"], r["date"]) for r in results.values()}
    rows = [(*row, f"{r['machine']}; {r['data']}; {r['date']}")
            for name in SECTIONS if (r := results.get(name)) for row in section_rows(name, r)]
    if len(stamps) == 1:
        machine, data, date = stamps.pop()
        lines = [f"Machine: {machine}. Data: {data}. {date}.", "", "| figure | ratio | absolute |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c, _ in rows]
    else:
        lines = ["| figure | ratio | absolute | measured on |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


SECTIONS = ("throughput", "tsne", "mlp", "tsne_exact", "tsne_sampled", "sweep", "ista", "joblib", "deblur", "lista",
            "help", "umap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the digits instead of Fashion-MNIST, to check the script")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    args = parser.parse_args()
    only = set(args.only.split(","))
    if unknown := only - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The Trainers built here (throughput, the t-SNE sections' codes) quiet, as the CLI's jobs are: Lightning's
    # device lines and tips (INFO), torch's LeafSpec notice. (Their eval loader is given and limit_val_batches=0
    # skips it, as the jobs' data module does, so Lightning does not warn of a missing validation loop.)
    logging.getLogger(LIGHTNING_INFO).setLevel(logging.WARNING)
    quiet_library_warnings()
    data_overrides = ["data=digits", "trainer.max_epochs=2", "plots.max_points=500"] if args.quick else []
    data = Digits(eval_fraction=0.3) if args.quick else FashionMNIST()
    data.setup()
    where = "scikit-learn digits (--quick)" if args.quick else "Fashion-MNIST (60k fit, 10k eval), default config"
    previous = out / "bench.json"
    results = json.loads(previous.read_text()) if previous.exists() and only != set(SECTIONS) else {}
    stamp = {"machine": machine(), "data": where, "date": time.strftime("%Y-%m-%d")}
    print(f"machine: {stamp['machine']}", flush=True)
    mlp_overrides = ["data=digits", "data.eval_fraction=0.3"] if args.quick else []
    sizes = [500, 1000] if args.quick else [5000, 10000]
    codes = functools.cache(lambda: trained_codes(data, max(sizes)))  # one model for both t-SNE sections
    measure = {
        "throughput": lambda: bench_throughput(data),
        "tsne": lambda: bench_tsne(data, n_points=min(5000, len(data.eval_images))),
        "mlp": lambda: bench_mlp(out, mlp_overrides, Digits(eval_fraction=0.3, seed=0) if args.quick else data),
        "tsne_exact": lambda: {"sizes": bench_tsne_exact(codes(), data.eval_labels, sizes)},
        "tsne_sampled": lambda: bench_tsne_sampled(codes(), data.eval_labels),
        "sweep": lambda: bench_sweep(out, data_overrides),
        "ista": bench_ista,
        "joblib": lambda: bench_joblib(out, data_overrides),
        "deblur": lambda: bench_deblur(out, args.quick),
        "lista": lambda: bench_lista(out, args.quick),
        "help": bench_help,
        "umap": lambda: bench_umap(data, out, epochs=1 if args.quick else 3),
    }
    for section in SECTIONS:
        if section in only:
            results[section] = {**measure[section](), **stamp}
            print(f"{section}:", results[section], flush=True)
    previous.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (out / "bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
