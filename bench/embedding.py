"""Bench sections on the reducers: openTSNE against scikit-learn's TSNE (tsne), the torch t-SNEs against openTSNE
(tsne_exact, tsne_sampled), and reducer=umap's exact neighbours against umap-learn's own search (umap)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import torch
from common import REPO, Context, Row, Section, faster, kmeans_accuracy, seconds, trained, trained_codes

from experiments.data import ImageDataModule
from experiments.reduce import OpenTSNE


def tsne(context: Context) -> dict:
    from sklearn.manifold import TSNE

    codes = trained_codes(context.data, min(5000, len(context.data.eval_images)))
    start = time.perf_counter()
    ours = OpenTSNE(2, n_iter=750, random_state=0)
    ours.fit_transform(codes)
    opentsne_s = time.perf_counter() - start
    start = time.perf_counter()
    sk = TSNE(2, perplexity=30.0, max_iter=750, init="pca", random_state=0, n_jobs=-1)
    sk.fit_transform(codes)
    sklearn_s = time.perf_counter() - start
    return {"points": len(codes), "opentsne_s": opentsne_s, "sklearn_s": sklearn_s, "speedup": sklearn_s / opentsne_s,
            "opentsne_kl": ours.kl_divergence_, "sklearn_kl": float(sk.kl_divergence_)}


def tsne_rows(r: dict) -> list[Row]:
    return [(f"t-SNE of {r['points']} codes: openTSNE vs scikit-learn TSNE (time; KL)", faster(r["speedup"]),
             f"{r['opentsne_s']:.1f} s vs {r['sklearn_s']:.1f} s; KL {r['opentsne_kl']:.3f} vs {r['sklearn_kl']:.3f}")]


def tsne_exact(context: Context) -> dict:
    from experiments.tsne import ExactTSNE, kl_divergence

    codes, labels, rows = context.codes(), context.data.eval_labels, []
    for n in [500, 1000] if context.quick else [5000, 10000]:
        start = time.perf_counter()
        exact = ExactTSNE(2, n_iter=750, random_state=0, accelerator="auto")  # the GPU where one is visible
        exact_embedding = exact.fit_transform(codes[:n])
        exact_s = time.perf_counter() - start
        start = time.perf_counter()
        fast = OpenTSNE(2, n_iter=750, random_state=0)
        embedding = fast.fit_transform(codes[:n])
        fast_s = time.perf_counter() - start
        P = exact.affinities_
        fast_kl_exact_p = kl_divergence(P, torch.as_tensor(embedding, dtype=P.dtype, device=P.device), 2048)
        rows.append({
            "points": n, "exact_s": exact_s, "opentsne_s": fast_s, "exact_kl": exact.kl_divergence_,
            "opentsne_kl_exact_p": fast_kl_exact_p, "opentsne_kl_own": fast.kl_divergence_,
            "kl_ratio": exact.kl_divergence_ / fast_kl_exact_p,
            "exact_kmeans_acc": kmeans_accuracy(exact_embedding, labels),
            "opentsne_kmeans_acc": kmeans_accuracy(embedding, labels),
            "device": "cuda" if torch.cuda.is_available() and exact.accelerator != "cpu" else "cpu",
        })
        print("tsne_exact:", rows[-1], flush=True)
    return {"sizes": rows}


def tsne_exact_rows(r: dict) -> list[Row]:
    return [((f"t-SNE of {e['points']} codes, 750 iterations: tsne_exact ({e['device']}) vs openTSNE (time; KL under "
              "the exact P)"), f"{e['exact_s'] / e['opentsne_s']:.1f}x the time; KL {e['kl_ratio']:.3f} of it",
             (f"{seconds(e['exact_s'])} vs {seconds(e['opentsne_s'])}; KL {e['exact_kl']:.3f} vs "
              f"{e['opentsne_kl_exact_p']:.3f}; k-means acc {e['exact_kmeans_acc']:.3f} vs "
              f"{e['opentsne_kmeans_acc']:.3f}")) for e in r["sizes"]]


def tsne_sampled(context: Context) -> dict:
    """reducer=tsne_sampled into 8 dimensions against openTSNE into 2 (time) and tsne_exact into 8 (KL under
    the exact P, and k-means accuracy), on the same codes."""
    from experiments.tsne import ExactTSNE, SampledTSNE, kl_divergence

    codes, labels = context.codes(), context.data.eval_labels

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


def tsne_sampled_rows(r: dict) -> list[Row]:
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


def umap(context: Context) -> dict:
    """reducer=umap's class against umap-learn's own on the same codes: seconds from import to embedding, and the
    accuracy of a full-covariance GMM (10 components, N2D's clusterer) on the eval images' rows."""
    from sklearn.mixture import GaussianMixture

    from experiments.metrics import cluster_accuracy

    data, out, epochs = context.data, context.out, 1 if context.quick else 3
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


def umap_rows(r: dict) -> list[Row]:
    figure = (f"UMAP of {r['points']:,} N2D codes of size {r['code_size']} (dense autoencoder, {r['epochs']} "
              "epochs), fresh processes: exact neighbours (reducer=umap) vs umap-learn's own search (time; GMM "
              "accuracy)")
    absolute = (f"{r['exact_s']:.0f} s vs {r['umap_learn_s']:.0f} s; accuracy {r['exact_acc']:.4f} vs "
                f"{r['umap_learn_acc']:.4f}")
    return [(figure, faster(r["speedup"]), absolute)]


SECTIONS = {"tsne": Section(tsne, tsne_rows), "tsne_exact": Section(tsne_exact, tsne_exact_rows),
            "tsne_sampled": Section(tsne_sampled, tsne_sampled_rows), "umap": Section(umap, umap_rows)}
