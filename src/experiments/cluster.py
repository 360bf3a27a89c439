"""Clusterers: scikit-learn's KMeans and AgglomerativeClustering are used as they are; a Gaussian
mixture calls its cluster count n_components, so it gets a one-line adapter."""

from __future__ import annotations

from sklearn.mixture import GaussianMixture


def gaussian_mixture(n_clusters: int, **kwargs) -> GaussianMixture:
    """A GaussianMixture with `n_clusters` components (it has fit_predict like the other clusterers)."""
    return GaussianMixture(n_components=n_clusters, **kwargs)
