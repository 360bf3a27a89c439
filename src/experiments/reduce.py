"""Reducers: scikit-learn's PCA is used as it is; openTSNE needs an adapter, because its `fit`
returns an embedding object rather than following fit_transform."""

from __future__ import annotations

import numpy as np
import openTSNE


def check_tsne_settings(n_iter: int, perplexity: float, n_samples: int) -> None:
    """ValueErrors (reported as the reducer's one-line error) for settings no t-SNE can run with."""
    if n_iter < 1:
        raise ValueError(f"n_iter must be at least 1, got {n_iter}")
    if perplexity <= 0 or 3 * perplexity >= n_samples:
        raise ValueError(f"perplexity must be positive and below n_samples / 3 = {n_samples / 3:g}, got {perplexity}")


class OpenTSNE:
    """t-SNE through openTSNE, with scikit-learn's `fit_transform` and iteration count.

    `n_iter` counts all iterations, the `early_exaggeration_iter` ones included, as scikit-learn's
    TSNE does (so n_iter=250 is the exaggeration phase alone). The final KL divergence is kept in
    `kl_divergence_`.
    """

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

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        check_tsne_settings(self.n_iter, self.perplexity, len(X))
        early = min(self.early_exaggeration_iter, self.n_iter)
        method = self.negative_gradient_method
        if method == "auto" and self.n_components > 2:
            method = "bh"  # openTSNE's FFT method embeds into at most 2 dimensions
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
        ).fit(np.ascontiguousarray(X, dtype=np.float64))
        self.kl_divergence_ = float(embedding.kl_divergence)
        return np.asarray(embedding)
