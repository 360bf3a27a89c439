"""What task=cluster draws and tabulates, in plots/ and in W&B, in the data's language (its class names): the
originals over their reconstructions, a dictionary's atoms, 2-D views of the codes and of what was clustered, the
confusion matrix of classes by matched clusters, and the assignments and codes tables.

A cluster is shown by the class the accuracy matches it to (`metrics.matched_classes`): it takes that class's
colour, and the confusion matrix orders the clusters by it, so a cluster that is its class looks like it and a
mistake stands out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.decomposition import PCA

from experiments import plots
from experiments.cache import Cache, Entry
from experiments.fingerprint import settings_key
from experiments.metrics import examples_of_different_classes, matched_classes
from experiments.models.protocols import Atoms
from experiments.reduce import OpenTSNE
from experiments.tracking import Tracker
from experiments.training import Job


@dataclass
class Classes:
    """The eval images' labels in words: each class's name and each cluster's matched class (None without labels)."""

    labels: np.ndarray | None
    names: dict[int, str]  # class -> name
    matched: dict[int, int]  # cluster -> class

    def name(self, label: int | None) -> str | None:
        return None if label is None else self.names.get(label, str(label))

    def cluster_class(self, cluster: int) -> str | None:
        """The name of the class a cluster is matched to (None: unmatched, or no labels)."""
        return self.name(self.matched.get(cluster))


def draw(job: Job, model: pl.LightningModule, model_key: str, codes: np.ndarray, reconstructions: np.ndarray | None,
         mse: np.ndarray | None, reduced: np.ndarray, clusters: np.ndarray) -> None:
    """Every figure and table of a cluster job (figures only where plots.enabled): the eval images' `codes`, their
    `reconstructions` and errors (`mse`) where the model decodes, their `reduced` embedding and their `clusters`."""
    cfg, tracker, data = job.cfg, job.tracker, job.data
    labels = data.eval_labels
    classes = Classes(labels, {} if labels is None else {int(c): data.class_name(int(c)) for c in np.unique(labels)},
                      {} if labels is None else matched_classes(labels, clusters))
    label_of = [None] * len(clusters) if labels is None else [int(label) for label in labels]
    tracker.log_table("assignments", ["id", "label", "class", "cluster", "cluster_class"],
                      [[i, label_of[i], classes.name(label_of[i]), int(c), classes.cluster_class(int(c))]
                       for i, c in enumerate(clusters)], csv=False)
    if mse is not None:
        log_reconstructions(tracker, data.eval_images.numpy(), classes, reconstructions, mse, cfg.plots.reconstructions)
    if isinstance(model, Atoms):  # a dictionary's atoms are images: show them
        tracker.log_figure("atoms", plots.image_grid_figure, model.atoms().cpu().numpy(), "dictionary atoms")
    views = EmbeddingViews(codes, cfg.plots.max_points, cfg.seed, job.cache, model_key)
    log_embeddings(tracker, views, cfg.plots.tsne, reduced, classes, clusters, job.choices.get("reducer"))
    if labels is not None:
        log_confusion(tracker, classes, clusters)
    # The codes themselves (a sample), one vector per row: W&B's embedding projector maps this column.
    tracker.log_table("codes", ["index", "class", "cluster", "code"],
                      [[int(i), classes.name(label_of[i]), int(clusters[i]), codes[i].tolist()] for i in views.sample],
                      csv=False)


def log_reconstructions(tracker: Tracker, images: np.ndarray, classes: Classes, reconstructions: np.ndarray,
                        mse: np.ndarray, count: int) -> None:
    labels = classes.labels
    ids = examples_of_different_classes(labels, len(mse), count)
    originals = images[ids]
    captions = [f"#{i} " + ("" if labels is None else f"{classes.name(int(labels[i]))} ") + f"MSE {mse[i]:.4f}"
                for i in ids]
    tracker.log_figure("reconstructions", plots.reconstruction_figure, originals, reconstructions[ids], captions)
    stacked = [np.concatenate([originals[k], reconstructions[i]], axis=1) for k, i in enumerate(ids)]
    tracker.log_images("reconstructions_panel", [plots.to_displayable(s) for s in stacked], captions)


def log_confusion(tracker: Tracker, classes: Classes, clusters: np.ndarray) -> None:
    """Classes by clusters, the clusters in the order of their matched classes (unmatched last), names on both
    axes: plots/confusion_matrix.png and the same image in W&B."""
    order = sorted(classes.names)  # the classes, by label
    columns = sorted(np.unique(clusters).tolist(),
                     key=lambda k: (k not in classes.matched, order.index(classes.matched.get(k, order[0])), k))
    row = {c: i for i, c in enumerate(order)}
    column = {k: j for j, k in enumerate(columns)}
    truth = [row[int(label)] for label in classes.labels]
    confusion = np.zeros((len(order), len(columns)), dtype=np.int64)
    np.add.at(confusion, (truth, [column[int(k)] for k in clusters]), 1)
    names = [classes.names[c] for c in order]
    headers = [f"{k} → {classes.cluster_class(k) or 'unmatched'}" for k in columns]
    # As a figure (an image in W&B too), not W&B's confusion-matrix chart: a chart's table goes to the run's
    # history, where wandb leet charts its row and column counts as if they were scores.
    tracker.log_figure("confusion_matrix", plots.confusion_figure, confusion, names, headers, "cluster → its class",
                       "classes by clusters (eval images)")


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

    def reduced(self, embedding: np.ndarray) -> np.ndarray:
        """The sample's rows of what was clustered: itself in 2-D, else its first two principal components."""
        rows = embedding[self.sample]
        return rows if rows.shape[1] == 2 else PCA(2, random_state=self.seed).fit_transform(rows)


def log_embeddings(tracker: Tracker, views: EmbeddingViews, with_tsne: bool, reduced: np.ndarray, classes: Classes,
                   clusters: np.ndarray, reducer_name: str | None) -> None:
    """2-D views: PCA and t-SNE of the codes, and of what was clustered (the reducer's embedding), as figures and
    one explorable table (none without figures)."""
    if views.codes.shape[1] < 2 or not tracker.figures:
        return
    titles: dict[str, Any] = {"pca": ("PCA of the codes", views.pca)}
    if with_tsne:
        titles["tsne"] = ("t-SNE of the codes", views.tsne)
    if reduced.shape[1] >= 2:
        pcs = "" if reduced.shape[1] == 2 else f", its first 2 of {reduced.shape[1]} principal components"
        titles["reduced"] = (f"what was clustered ({reducer_name}{pcs})", lambda: views.reduced(reduced))
        if reduced.shape[1] == 2:  # the reducer's own 2-D view of the codes: not drawn twice
            titles.pop(reducer_name, None)
    sample, labels = views.sample, classes.labels
    rows = []
    for method, (title, make) in titles.items():
        coords = make()
        tracker.log_figure(f"embedding/{method}", plots.embedding_figure, coords,
                           None if labels is None else labels[sample], clusters[sample], title, classes.names,
                           classes.matched)
        rows += [[method, int(i), float(x), float(y), None if labels is None else classes.name(int(labels[i])),
                  int(clusters[i]), classes.cluster_class(int(clusters[i]))] for i, (x, y) in zip(sample, coords)]
    tracker.log_table("embedding_2d", ["method", "index", "x", "y", "class", "cluster", "cluster_class"], rows)
