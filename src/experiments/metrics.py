"""Scores: clustering accuracy (Hungarian matching), NMI, ARI, a Kaggle-style split, reconstruction error, and a
k-nearest-neighbour probe of the codes."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors


def contingency(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Counts of (cluster, class) pairs; labels of any values are mapped to 0..k-1 first."""
    _, classes = np.unique(y_true, return_inverse=True)
    _, clusters = np.unique(y_pred, return_inverse=True)
    table = np.zeros((clusters.max() + 1, classes.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, classes), 1)
    return table


def cluster_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes (Hungarian algorithm).

    With more clusters than classes the unmatched clusters count as wrong, and with fewer the
    unmatched classes do, so the score never rewards splitting or merging.
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise ValueError("cluster_accuracy of an empty set")
    table = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(y_true))


def matched_classes(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, int]:
    """Each cluster's class under the one-to-one matching that `cluster_accuracy` scores (Hungarian algorithm), as
    {cluster: class} in the labels' own values; with more clusters than classes the unmatched ones are absent."""
    classes, class_index = np.unique(np.asarray(y_true).ravel(), return_inverse=True)
    clusters, cluster_index = np.unique(np.asarray(y_pred).ravel(), return_inverse=True)
    table = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(table, (cluster_index, class_index), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(clusters[r]): int(classes[c]) for r, c in zip(rows, cols)}


def public_private_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two fixed halves of range(n), shuffled by `seed`, like a Kaggle leaderboard's public/private sets."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def clustering_scores(y_true: np.ndarray, y_pred: np.ndarray, seed: int) -> dict[str, float]:
    """acc, nmi and ari on the whole eval set; public and private accuracy on its two halves.

    nmi is scikit-learn's normalized_mutual_info_score with the arithmetic mean of the two entropies as the
    normaliser, I(Y; C) / ((H(Y) + H(C)) / 2): the definition N2D and most deep-clustering papers report
    (some use the geometric mean, which gives slightly different figures).
    """
    public, private = public_private_split(len(y_true), seed)
    return {
        "public_score": cluster_accuracy(y_true[public], y_pred[public]),
        "private_score": cluster_accuracy(y_true[private], y_pred[private]),
        "acc": cluster_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic")),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }


def knn_accuracy(codes: np.ndarray, labels: np.ndarray, k: int = 20) -> float | None:
    """Leave-one-out accuracy of a vote among each code's `k` nearest other codes (Euclidean; a tie goes to the
    class listed first): how far the representation's neighbourhoods follow the classes, whatever a reducer and
    a clusterer then make of them. A probe that reads the labels, as representation learning's kNN accuracy
    does; None with fewer than two codes."""
    codes, labels = np.asarray(codes).reshape(len(codes), -1), np.asarray(labels).ravel()
    if len(codes) != len(labels):
        raise ValueError(f"{len(codes)} codes but {len(labels)} labels")
    if len(codes) < 2:
        return None
    _, classes = np.unique(labels, return_inverse=True)
    # Without a query, scikit-learn returns each point's neighbours other than itself.
    neighbours = NearestNeighbors(n_neighbors=min(k, len(codes) - 1)).fit(codes).kneighbors(return_distance=False)
    votes = np.zeros((len(codes), classes.max() + 1), dtype=np.int64)
    np.add.at(votes, (np.arange(len(codes))[:, None], classes[neighbours]), 1)
    return float((votes.argmax(axis=1) == classes).mean())


def per_image_mse(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Mean squared error of each image against its reconstruction."""
    diff = (images - reconstructions).reshape(len(images), -1)
    return np.mean(diff**2, axis=1)


def examples_of_different_classes(labels: np.ndarray | None, n_images: int, count: int) -> list[int]:
    """Indices of the first image of each of the first `count` classes met (first images without labels)."""
    if labels is None:
        return list(range(min(count, n_images)))
    seen: dict[int, int] = {}
    for index, label in enumerate(labels.tolist()):
        if label not in seen:
            seen[label] = index
            if len(seen) == count:
                break
    return list(seen.values())


def top_k_error(scores: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is not among the k highest scores (assignment 3 s7)."""
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(1.0 - (top == y_true[:, None]).any(axis=1).mean())
