"""Reducers: scikit-learn's PCA is used as it is; openTSNE needs an adapter, because its `fit` returns an
embedding object rather than following scikit-learn's conventions.

`OpenTSNE` (here), `ExactTSNE` and `SampledTSNE` (tsne.py) are scikit-learn estimators in full:
`get_params`/`set_params`/`clone`, `fit` and `fit_transform`, `n_features_in_`, `embedding_`,
`get_feature_names_out`, and a place in a `Pipeline`. Like scikit-learn's TSNE they have no `transform`: t-SNE
embeds the points it was fit on. Their parameters are checked by `check_params` (`CheckedParams`, with
scikit-learn's public `check_scalar`), first thing in `fit` and in the cluster job's pre-flight.

`neighbour_mean` is what the cluster job does to the codes before any reducer (`task.smooth_neighbors`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import openTSNE
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils.validation import check_is_fitted, validate_data

from experiments.console import progress_bar

log = logging.getLogger(__name__)

Rule = Callable[[str, Any], None]  # (parameter name, value) -> None, or ValueError / TypeError naming it


def number(kind: type, low: float | None = None, high: float | None = None, bounds: str = "both",
           or_words: tuple[str, ...] = ()) -> Rule:
    """A whole (`Integral`) or real (`Real`) number within [low, high] (`bounds`: scikit-learn's
    include_boundaries), or one of `or_words`."""
    def rule(name: str, value: Any) -> None:
        if not (isinstance(value, str) and value in or_words):
            check_scalar(value, name, kind, min_val=low, max_val=high, include_boundaries=bounds)
    return rule


def word(*options: str) -> Rule:
    def rule(name: str, value: Any) -> None:
        if value not in options:
            raise ValueError(f"{name}={value!r} is not one of {', '.join(options)}")
    return rule


def flag(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} must be true or false")


def random_state(name: str, value: Any) -> None:
    try:
        check_random_state(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} must be None, a whole number or a numpy RandomState") from None


class CheckedParams:
    """An estimator of this package that checks its own parameters: `check_params()` raises ValueError or TypeError
    naming the first bad one. Its `fit` calls it first (scikit-learn's convention: nothing is checked in __init__),
    and the cluster job's pre-flight calls it before any training."""

    parameter_rules: ClassVar[dict[str, Rule]] = {}

    def check_params(self) -> None:
        for name, rule in self.parameter_rules.items():
            rule(name, getattr(self, name))


# The parameters every t-SNE estimator here shares.
TSNE_RULES: dict[str, Rule] = {
    "n_components": number(Integral, 1),
    "perplexity": number(Real, 0, bounds="neither"),
    "n_iter": number(Integral, 1),
    "early_exaggeration_iter": number(Integral, 0),
    "learning_rate": number(Real, 0, bounds="neither", or_words=("auto",)),
    "random_state": random_state,
    "verbose": flag,
}


def check_perplexity(perplexity: float, n_samples: int, setting: str = "perplexity") -> None:
    """t-SNE's neighbourhoods hold about 3 x perplexity points, so there must be more points than that."""
    if 3 * perplexity >= n_samples:
        raise ValueError(f"{setting}={perplexity:g} needs more than {3 * perplexity:g} points (3 x perplexity), "
                         f"got {n_samples}; use a perplexity below {n_samples / 3:g}")


def neighbour_graph(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each code's k nearest codes (euclidean, found exactly), itself first: (n, k + 1) indices and their distances
    (float32), nearest first; umap-learn's `precomputed_knn` takes it as it is."""
    # Queried with the points it was fitted to, the search lists each point (or an identical one) first
    distances, indices = NearestNeighbors(n_neighbors=k + 1).fit(codes).kneighbors(codes)
    return indices, distances.astype(np.float32)


def neighbour_mean(codes: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Each code replaced by the mean of itself and its `n_neighbors` nearest codes (euclidean, found exactly): a
    low-pass filter over the codes' neighbour graph, as graph convolutions propagate features (Wu et al. 2019),
    done before the reducer. It pulls each code towards its neighbourhood's, so the few neighbours of another
    class a code has weigh less (task.smooth_neighbors, docs/notebook.md). 0: the codes as they are."""
    if n_neighbors == 0:
        return codes
    log.info("each of %d codes averaged with its %d nearest", len(codes), n_neighbors)
    indices, _ = neighbour_graph(codes, n_neighbors)
    total = np.zeros_like(codes)
    for column in indices.T:  # a column at a time: no (n, k, d) array
        total += codes[column]
    return total / (n_neighbors + 1)


class KLProgress:
    """An openTSNE callback that moves a progress bar and shows the current KL divergence."""

    EVERY = 25  # iterations between calls

    def __init__(self, bar: object) -> None:
        self.bar = bar

    def __call__(self, iteration: int, error: float, embedding: object) -> bool:
        self.bar.update(self.EVERY)
        self.bar.set_postfix(KL=f"{error:.3f}", refresh=False)
        return False  # go on


class TSNEBase(CheckedParams, TransformerMixin, BaseEstimator):
    """What the t-SNE estimators share: `fit` through `fit_transform`, the input checks, the output's names."""

    def fit(self, X: np.ndarray, y: None = None) -> TSNEBase:
        """Fit X into an embedded space (`embedding_`)."""
        self.fit_transform(X)
        return self

    def checked_input(self, X: np.ndarray) -> np.ndarray:
        """X as float64 (n_samples, n_features), finite, with enough points for the perplexity."""
        self.check_params()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        check_perplexity(self.perplexity, len(X))
        return X

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The embedding's columns: opentsne0, opentsne1, ... (scikit-learn's naming of new features)."""
        check_is_fitted(self, "embedding_")
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.embedding_.shape[1])], dtype=object)


class OpenTSNE(TSNEBase):
    """t-SNE through openTSNE, with scikit-learn's `fit_transform` and iteration count.

    `n_iter` counts all iterations, the `early_exaggeration_iter` ones included, as scikit-learn's
    TSNE does (so n_iter=250 is the exaggeration phase alone). The final KL divergence is kept in
    `kl_divergence_`.
    """

    parameter_rules: ClassVar[dict[str, Rule]] = {
        **TSNE_RULES,
        "initialization": word("pca", "spectral", "random"),
        "negative_gradient_method": word("auto", "fft", "bh"),
        "n_jobs": number(Integral),
    }

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        n_iter: int = 750,
        early_exaggeration_iter: int = 250,
        learning_rate: float | str = "auto",
        initialization: str = "pca",
        negative_gradient_method: str = "auto",
        n_jobs: int = -1,
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.early_exaggeration_iter = early_exaggeration_iter
        self.learning_rate = learning_rate
        self.initialization = initialization
        self.negative_gradient_method = negative_gradient_method
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit_transform(self, X: np.ndarray, y: None = None) -> np.ndarray:
        """Fit X into an embedded space and return it (n_samples, n_components)."""
        X = self.checked_input(X)
        early = min(self.early_exaggeration_iter, self.n_iter)
        method = self.negative_gradient_method
        if method == "auto" and self.n_components > 2:
            method = "bh"  # openTSNE's FFT method embeds into at most 2 dimensions
        bar = progress_bar(self.n_iter, f"t-SNE of {len(X)} points", enabled=self.verbose)
        embedding = openTSNE.TSNE(
            n_components=self.n_components,
            perplexity=self.perplexity,
            learning_rate=self.learning_rate,
            early_exaggeration_iter=early,
            n_iter=self.n_iter - early,
            initialization=self.initialization,
            negative_gradient_method=method,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            callbacks=KLProgress(bar) if self.verbose else None,
            callbacks_every_iters=KLProgress.EVERY,
        ).fit(np.ascontiguousarray(X))
        bar.close()
        self.kl_divergence_ = float(embedding.kl_divergence)
        self.n_iter_ = self.n_iter
        self.embedding_ = np.asarray(embedding)
        return self.embedding_
