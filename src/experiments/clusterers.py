"""Clusterers: scikit-learn's KMeans and AgglomerativeClustering are used as they are; a Gaussian
mixture calls its cluster count n_components, so it gets a one-line adapter.

`rebalance` is what the cluster job does to a partition after the clusterer (`task.rebalance_rounds`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture

from experiments.reduce import neighbour_graph

log = logging.getLogger(__name__)

# rebalance: the neighbours of each code that tell which small clusters are joined (docs/notebook.md).
REBALANCE_NEIGHBOURS = 15


def gaussian_mixture(n_clusters: int, **kwargs) -> GaussianMixture:
    """A GaussianMixture with `n_clusters` components (it has fit_predict like the other clusterers)."""
    return GaussianMixture(n_components=n_clusters, **kwargs)


def rebalance(labels: np.ndarray, codes: np.ndarray, embed: Callable[[np.ndarray], np.ndarray],
              split: Callable[[np.ndarray], np.ndarray], rounds: int, large: float = 1.3, small: float = 0.75,
              neighbors: int = REBALANCE_NEIGHBOURS, min_joined: float = 0.02, nearest: np.ndarray | None = None
              ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A partition repaired towards clusters of equal size: for data whose classes are of equal size, an assumption
    the caller states (the cluster job's task.size_prior=equal).

    A mixture fitted to an embedding spends clusters on a class's styles (bags with and without a handle, two
    islands) and leaves several classes that lie close together in one large cluster (pullovers, coats, shirts).
    Each round, while the largest cluster holds more than `large` times the mean cluster size and two clusters
    below `small` times it are joined in the codes' neighbour graph, the two most joined of those merge and the
    largest is split in two: its members' codes embedded again on their own (`embed`) and clustered in two
    (`split`). Two clusters are joined by the edges between them, from each code to its `neighbors` nearest,
    counted both ways, per code of the smaller cluster (0 to 2 x neighbors); below `min_joined` (0.02: about one
    such edge for every 50 codes of the smaller) they are islands, likelier two classes than one class's two styles.
    The halves of a split are not merged again in a later round (a round would undo the last). `nearest`: each
    code's nearest others, nearest first, where the caller has them (at least `neighbors` columns). Reads no labels.
    Returns the new labels and a record of each round; a largest cluster that `embed` or `split` refuses
    (ValueError, as scikit-learn's estimators refuse bad input) ends the repair there.
    """
    labels = np.array(labels)
    n_clusters = int(labels.max()) + 1
    mean_size = len(labels) / n_clusters
    if nearest is None:
        nearest = neighbour_graph(codes, neighbors)[0][:, 1:]  # not the code itself
    nearest = nearest[:, :neighbors]
    history: list[dict[str, Any]] = []
    halves_made: set[int] = set()
    for _ in range(rounds):
        sizes = np.bincount(labels, minlength=n_clusters)
        largest = int(np.argmax(sizes))
        smalls = [int(k) for k in np.flatnonzero(sizes < small * mean_size) if k not in halves_made]
        if sizes[largest] <= large * mean_size or len(smalls) < 2:
            break
        strength, kept, freed = most_joined(labels, nearest, sizes, smalls)
        if strength < min_joined:  # islands of different classes, likelier than a class's two styles
            break
        members = np.flatnonzero(labels == largest)
        try:
            halves = np.asarray(split(embed(codes[members])))
        except ValueError as e:  # a library's refusal (t-SNE's perplexity above a small cluster's size)
            log.warning("rebalance: stopped, cluster %d (%d codes) cannot be embedded on its own: %s", largest,
                        sizes[largest], e)
            break
        if len(np.unique(halves)) < 2:  # the split kept it whole: nothing to repair with
            break
        labels[labels == freed] = kept
        labels[members[halves == halves[0]]] = largest
        labels[members[halves != halves[0]]] = freed
        halves_made |= {largest, freed}
        history.append({"merged": [kept, freed], "merged_sizes": [int(sizes[kept]), int(sizes[freed])],
                        "joined": round(float(strength), 4), "split": largest, "split_sizes": [
                            int((halves == halves[0]).sum()), int((halves != halves[0]).sum())]})
        log.info("rebalance: clusters %d and %d merged (%d and %d codes, %.2f neighbour edges between them per code "
                 "of the smaller), cluster %d (%d codes) split into %d and %d", kept, freed, sizes[kept], sizes[freed],
                 strength, largest, sizes[largest], *history[-1]["split_sizes"])
    return labels, history


def most_joined(labels: np.ndarray, nearest: np.ndarray, sizes: np.ndarray, candidates: list[int]
                ) -> tuple[float, int, int]:
    """(joined, a, b) of the two `candidates` most joined in the neighbour graph: the edges between them (each code
    to each of its `nearest`), both ways, per code of the smaller."""
    n_clusters, neighbors = len(sizes), nearest.shape[1]
    edges = np.zeros((n_clusters, n_clusters))  # edges[a, b]: how many of a's codes' neighbours lie in b
    np.add.at(edges, (np.repeat(labels, neighbors), labels[nearest].ravel()), 1)
    joined = (edges + edges.T) / np.minimum.outer(sizes, sizes).clip(min=1)
    return max((joined[a, b], a, b) for i, a in enumerate(candidates) for b in candidates[i + 1:])
