"""Figures: 2-D embeddings coloured by label and by cluster, originals over reconstructions."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # no display here, and none needed to write PNGs

import matplotlib.colors
import matplotlib.lines
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

UNMATCHED = "#7f7f7f"  # a cluster no class was matched to (more clusters than classes)


def class_colours(classes: list[int]) -> dict[int, str]:
    """A colour per class, in the classes' order: tab10's ten, tab20's twenty, then evenly spaced hues."""
    n = len(classes)
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "hsv")
    return {c: matplotlib.colors.to_hex(cmap(i if n <= 20 else i / n)) for i, c in enumerate(classes)}


def embedding_figure(coords: np.ndarray, labels: np.ndarray | None, clusters: np.ndarray, title: str,
                     names: dict[int, str] | None = None, matched: dict[int, int] | None = None) -> Figure:
    """A 2-D scatter coloured by class (when known, its legend the classes' `names`) beside the same points coloured
    by cluster. A cluster takes the colour of the class it is `matched` to (the accuracy's one-to-one matching), so
    a cluster that is its class looks the same in both panels and a mistake stands out; an unmatched cluster is grey.
    Without labels the clusters have colours of their own."""
    panels = [("cluster", clusters)] if labels is None else [("class", labels), ("cluster", clusters)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    palette = class_colours(sorted(np.unique(labels if labels is not None else clusters).tolist()))
    for ax, (panel, values) in zip(axes[0], panels):
        entries = sorted(np.unique(values).tolist())
        if panel == "class" or labels is None:
            colour, legend = palette, {v: (names or {}).get(v, str(v)) for v in entries}
        else:
            colour = {k: palette.get((matched or {}).get(k), UNMATCHED) for k in entries}
            legend = {k: f"{k} → {(names or {}).get((matched or {}).get(k), 'unmatched')}" for k in entries}
        ax.scatter(coords[:, 0], coords[:, 1], c=[colour[v] for v in values.tolist()], s=3, alpha=0.7, linewidths=0)
        ax.set_title(f"{title}, by {panel}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(entries) <= 20:
            handles = [matplotlib.lines.Line2D([], [], marker="o", linestyle="", color=colour[v], label=legend[v])
                       for v in entries]
            ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
                      title="cluster → its class" if panel == "cluster" and labels is not None else panel)
    fig.tight_layout()
    return fig


def reconstruction_figure(originals: np.ndarray, reconstructions: np.ndarray, captions: list[str]) -> Figure:
    """Originals (top row) over their reconstructions (bottom row); images are (N, C, H, W) in [0, 1]."""
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for i in range(n):
        for row, images in enumerate((originals, reconstructions)):
            ax = axes[row, i]
            ax.imshow(to_displayable(images[i]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, i].set_title(captions[i], fontsize=7)
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("reconstruction")
    fig.tight_layout()
    return fig


def to_displayable(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for one channel, (H, W, C) for three."""
    return image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))


def confusion_figure(confusion: np.ndarray, rows: list[str], columns: list[str] | None = None,
                     xlabel: str = "predicted", title: str = "confusion matrix (eval images)") -> Figure:
    """Counts of (true class, column) with their names on both axes, rows normalised for the colours; the columns
    are predicted classes (a classifier), or clusters in the order of the classes they are matched to."""
    columns = rows if columns is None else columns
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(2 + 0.6 * len(columns), 1.5 + 0.45 * len(rows)))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def curves_figure(history: list[dict[str, float]]) -> Figure:
    """Loss and accuracy per epoch, train beside eval."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [row["epoch"] for row in history]
    for ax, metric in zip(axes, ("loss", "acc")):
        for split, key in (("train", f"train/{metric}_epoch" if metric == "loss" else "train/acc"), ("eval", f"val/{metric}")):
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    return fig


def loss_curves_figure(curves: dict[str, list[dict[str, float]]]) -> Figure:
    """Train and eval loss per epoch of every job of a sweep."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in zip(axes, ("train/loss_epoch", "val/loss"), ("train loss", "eval loss")):
        for job, history in sorted(curves.items()):
            ax.plot([row["epoch"] for row in history], [row.get(key) for row in history], marker=".", label=f"job {job}")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.set_yscale("log")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def scores_figure(labels: list[str], scores: list[float | None], score_name: str) -> Figure:
    """One bar per job, best first, as in the summary table."""
    values = [float("nan") if s is None else s for s in scores]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * len(labels)))
    ax.barh(range(len(labels)), values, color="tab:blue")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.4f}", va="center", fontsize=7)
    ax.set_xlabel(score_name)
    ax.set_xlim(0, max([v for v in values if not math.isnan(v)] + [1.0]) * 1.12)
    fig.tight_layout()
    return fig


def image_row_figure(images: list[np.ndarray], captions: list[str]) -> Figure:
    """Images (C, H, W) in [0, 1] side by side, each with its caption."""
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6), squeeze=False)
    for ax, image, caption in zip(axes[0], images, captions):
        ax.imshow(to_displayable(image), cmap="gray", vmin=0, vmax=1)
        ax.set_title(caption, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def solver_curves_figure(curves: dict[str, list[float]], optimum: float | None = None) -> Figure:
    """Objective (F(x_k) - F* when F* is known, else F(x_k)) and PSNR against iteration, one line per method."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in curves.items():
        method, steps = name.split("_", 1)[1].upper(), range(1, len(curve) + 1)
        if name.startswith("objective"):
            values = np.asarray(curve) if optimum is None else np.maximum(np.asarray(curve) - optimum, 1e-16)
            left.loglog(steps, values, label=method)
        else:
            right.semilogx(steps, curve, label=method)
    left.set(xlabel="iteration", ylabel="F(x_k)" if optimum is None else "F(x_k) - F*", title="objective")
    right.set(xlabel="iteration", ylabel="PSNR (dB)", title="PSNR of the restored image")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def image_grid_figure(images: np.ndarray, title: str) -> Figure:
    """Images (N, C, H, W) of any range in a square grid, each scaled to its own min..max."""
    n = len(images)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(0.9 * cols + 0.4, 0.9 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, images):
        low, high = image.min(), image.max()
        ax.imshow(to_displayable((image - low) / max(high - low, 1e-12)), cmap="gray", vmin=0, vmax=1)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def code_error_figure(curves: dict[str, list[float]], layers: int) -> Figure:
    """Code NMSE (dB) against iterations (ISTA, FISTA) and layers (LISTA), one panel per reference."""
    references = sorted({name.split("_vs_")[1] for name in curves})
    fig, axes = plt.subplots(1, len(references), figsize=(6 * len(references), 4.2), squeeze=False)
    for ax, reference in zip(axes[0], references):
        for name, curve in curves.items():
            method, against = name.split("_vs_")
            if against == reference:
                style = {"marker": "o", "markersize": 3} if method == "lista" else {}
                ax.plot(range(1, len(curve) + 1), curve, label=method.upper(), **style)
        ax.axvline(layers, color="grey", linestyle=":", label=f"T = {layers}")
        ax.set(xlabel="iterations (ISTA, FISTA) / layers (LISTA)", ylabel="NMSE (dB)",
               title=f"code error against the {'solver codes' if reference == 'solver' else 'true x'}")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
