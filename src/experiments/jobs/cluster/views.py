"""What task=cluster draws and tabulates, in plots/ and in W&B: the originals over their reconstructions, a
dictionary's atoms, 2-D views of the codes, and the assignments and codes tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.decomposition import PCA

from experiments import plots
from experiments.cache import Cache, Entry
from experiments.fingerprint import settings_key
from experiments.metrics import examples_of_different_classes
from experiments.models.protocols import Atoms
from experiments.reduce import OpenTSNE
from experiments.tracking import Tracker
from experiments.training import Job


def draw(job: Job, model: pl.LightningModule, model_key: str, codes: np.ndarray, reconstructions: np.ndarray | None,
         mse: np.ndarray | None, reduced: np.ndarray, clusters: np.ndarray) -> None:
    """Every figure and table of a cluster job (figures only where plots.enabled): the eval images' `codes`, their
    `reconstructions` and errors (`mse`) where the model decodes, their `reduced` embedding and their `clusters`."""
    cfg, tracker, labels = job.cfg, job.tracker, job.data.eval_labels
    label_of = [None] * len(clusters) if labels is None else [int(label) for label in labels]
    tracker.log_table("assignments", ["id", "label", "cluster"],
                      [[i, label_of[i], int(c)] for i, c in enumerate(clusters)], csv=False)
    if mse is not None:
        log_reconstructions(tracker, job.data.eval_images.numpy(), labels, reconstructions, mse,
                            cfg.plots.reconstructions)
    if isinstance(model, Atoms):  # a dictionary's atoms are images: show them
        tracker.log_figure("atoms", plots.image_grid_figure, model.atoms().cpu().numpy(), "dictionary atoms")
    views = EmbeddingViews(codes, cfg.plots.max_points, cfg.seed, job.cache, model_key)
    log_embeddings(tracker, views, cfg.plots.tsne, reduced, labels, clusters, job.choices.get("reducer"))
    # The codes themselves (a sample), one vector per row: W&B's embedding projector maps this column.
    tracker.log_table("codes", ["index", "label", "cluster", "code"],
                      [[int(i), label_of[i], int(clusters[i]), codes[i].tolist()] for i in views.sample], csv=False)


def log_reconstructions(tracker: Tracker, images: np.ndarray, labels: np.ndarray | None, reconstructions: np.ndarray,
                        mse: np.ndarray, count: int) -> None:
    ids = examples_of_different_classes(labels, len(mse), count)
    originals = images[ids]
    captions = [(f"#{i} " if labels is None else f"#{i} class {labels[i]} ") + f"MSE {mse[i]:.4f}" for i in ids]
    tracker.log_figure("reconstructions", plots.reconstruction_figure, originals, reconstructions[ids], captions)
    stacked = [np.concatenate([originals[k], reconstructions[i]], axis=1) for k, i in enumerate(ids)]
    tracker.log_images("reconstructions_panel", [plots.to_displayable(s) for s in stacked], captions)


class EmbeddingViews:
    """2-D PCA and t-SNE views of a random sample of the codes.

    The t-SNE view is cached with the model (same model, same codes): jobs of a sweep that differ only
    after the encoder (reducer, clusterer) draw it once.
    """

    def __init__(self, codes: np.ndarray, max_points: int, seed: int, cache: Cache | None, model_key: str) -> None:
        rng = np.random.default_rng(seed)
        self.sample = np.sort(rng.choice(len(codes), size=min(max_points, len(codes)), replace=False))
        self.codes = codes[self.sample]
        self.seed = seed
        self.cache = cache
        self.key = settings_key({"model": model_key, "view": "tsne", "sample": len(self.sample)})

    def pca(self) -> np.ndarray:
        return PCA(2, random_state=self.seed).fit_transform(self.codes)

    def tsne(self) -> np.ndarray:
        def compute() -> Entry:
            perplexity = min(30.0, (len(self.codes) - 1) / 3.1)
            tsne = OpenTSNE(2, perplexity=perplexity, random_state=self.seed, n_jobs=torch.get_num_threads())
            return {"coords": torch.from_numpy(tsne.fit_transform(self.codes))}

        entry = compute() if self.cache is None else self.cache.get_or_compute(self.key, compute)[0]
        return entry["coords"].numpy()


def log_embeddings(tracker: Tracker, views: EmbeddingViews, with_tsne: bool, reduced: np.ndarray,
                   labels: np.ndarray | None, clusters: np.ndarray, reducer_name: str | None) -> None:
    """2-D PCA and t-SNE views of the codes, as figures and one explorable table (none without figures)."""
    if views.codes.shape[1] < 2 or not tracker.figures:
        return
    makers: dict[str, Any] = {"pca": views.pca, **({"tsne": views.tsne} if with_tsne else {})}
    if reduced.shape[1] == 2 and reducer_name in makers:
        makers[reducer_name] = lambda: reduced[views.sample]  # the reducer already made this view
    sample = views.sample
    rows = []
    for method, make in makers.items():
        coords = make()
        sample_labels = None if labels is None else labels[sample]
        title = f"{'PCA' if method == 'pca' else 't-SNE'} of the codes"
        tracker.log_figure(f"embedding/{method}", plots.embedding_figure, coords, sample_labels, clusters[sample],
                           title)
        rows += [
            [method, int(i), float(x), float(y), None if labels is None else int(labels[i]), int(clusters[i])]
            for i, (x, y) in zip(sample, coords)
        ]
    tracker.log_table("embedding_2d", ["method", "index", "x", "y", "label", "cluster"], rows)
