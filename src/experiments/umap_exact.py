"""umap-learn's UMAP with its nearest neighbours found exactly, by scikit-learn (reducer=umap).

umap-learn finds them exactly only below 4,096 points; above, it approximates them with pynndescent, whose
numba functions compile in every new process. For N2D's 70,000 codes of size 10 the approximate search took
33 s in a fresh process and scikit-learn's exact one 8 s (a k-d tree; a brute-force search for codes of more than
15 numbers), with the same clusters after it (docs/notebook.md). Above `EXACT_UP_TO` points, where the exact
search grows faster than the approximate one (16 s for 100,000 codes of size 10, 54 s for 200,000), umap-learn's
own search runs as before.

umap-learn checks its parameters only inside `fit`, after the rest of a job's work: `check_params` checks the ones a
config sets (`CheckedParams`), for the cluster job's pre-flight; `fit` still runs umap-learn's own checks.
"""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import umap
from sklearn.neighbors import NearestNeighbors
from umap.distances import named_distances

from experiments.reduce import CheckedParams, Rule, number, random_state

log = logging.getLogger(__name__)

# umap-learn's metrics that scikit-learn's NearestNeighbors computes the same way, without extra arguments.
EXACT_METRICS = frozenset({"euclidean", "l2", "manhattan", "l1", "taxicab", "chebyshev", "linfinity", "cosine",
                           "correlation"})
SKLEARN_NAMES = {"taxicab": "manhattan", "linfinity": "chebyshev"}


def metric(name: str, value: Any) -> None:
    if isinstance(value, str) and value not in named_distances:
        raise ValueError(f"{name}={value!r} is not one of umap-learn's metrics: use euclidean, cosine, manhattan, "
                         "correlation, ... (umap.distances.named_distances lists them)")


class UMAP(CheckedParams, umap.UMAP):
    """umap.UMAP, every parameter its own; only where the neighbours come from differs (see the module)."""

    EXACT_UP_TO = 100_000  # points
    parameter_rules: ClassVar[dict[str, Rule]] = {
        "n_neighbors": number(Integral, 2),
        "n_components": number(Integral, 1),
        "metric": metric,
        "min_dist": number(Real, 0),
        "spread": number(Real, 0, bounds="neither"),
        "learning_rate": number(Real, 0, bounds="neither"),
        "set_op_mix_ratio": number(Real, 0, 1),
        "local_connectivity": number(Real, 0, bounds="neither"),
        "negative_sample_rate": number(Integral, 0),
        "random_state": random_state,
    }

    def check_params(self) -> None:
        super().check_params()
        if self.n_epochs is not None:
            number(Integral, 0)("n_epochs", self.n_epochs)
        if self.min_dist > self.spread:
            raise ValueError(f"min_dist={self.min_dist} must not exceed spread={self.spread}")

    def fit(self, X: Any, y: Any = None, ensure_all_finite: bool = True, **kwargs: Any) -> UMAP:
        configured = self.precomputed_knn
        if configured[0] is not None:  # a graph the caller found (the cluster job's shared search)
            log.info("UMAP of %d codes on the neighbour graph given", len(X))
        elif self.searches_exactly(X):
            log.info("exact nearest neighbours of %d codes (scikit-learn)", len(X))
            search = NearestNeighbors(n_neighbors=self.n_neighbors, metric=SKLEARN_NAMES.get(self.metric, self.metric))
            distances, indices = search.fit(X).kneighbors(X)
            self.precomputed_knn = (indices, distances.astype(np.float32), None)
        else:
            return super().fit(X, y, ensure_all_finite, **kwargs)
        try:
            with warnings.catch_warnings():
                # its note that transform() needs umap-learn's own search index: our stages never call it
                warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
                return super().fit(X, y, ensure_all_finite, **kwargs)
        finally:
            self.precomputed_knn = configured  # the parameter as constructed (scikit-learn's clone reads it)

    def searches_exactly(self, X: Any) -> bool:
        """Dense input, a metric both libraries know, no neighbours given, and at most EXACT_UP_TO points."""
        return (isinstance(X, np.ndarray) and X.ndim == 2 and len(X) <= self.EXACT_UP_TO
                and isinstance(self.metric, str) and self.metric in EXACT_METRICS and not self.metric_kwds
                and self.precomputed_knn[0] is None and self.n_neighbors < len(X))
