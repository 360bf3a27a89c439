"""Exact t-SNE in torch against openTSNE, and its pieces against their definitions."""

import math

import numpy as np
import pytest
import torch

from experiments.reduce import OpenTSNE
from experiments.tsne import ExactTSNE, conditional_affinities, joint_affinities, kl_divergence


def blobs(n=300, dim=10, centres=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, centres, n)
    return rng.normal(size=(centres, dim))[labels] * 4 + rng.normal(size=(n, dim)), labels


def test_each_row_of_the_affinities_has_the_asked_perplexity():
    X = torch.as_tensor(blobs(120)[0], dtype=torch.float64)
    sq = torch.cdist(X, X) ** 2
    sq.fill_diagonal_(float("inf"))
    P = conditional_affinities(sq, perplexity=15.0)
    entropy = -(torch.special.xlogy(P, P)).sum(1)
    assert torch.allclose(entropy.exp(), torch.full((120,), 15.0, dtype=torch.float64), rtol=1e-4)
    assert torch.allclose(P.sum(1), torch.ones(120, dtype=torch.float64))


def test_joint_affinities_are_symmetric_sum_to_one_and_do_not_depend_on_chunking():
    X = torch.as_tensor(blobs(50)[0], dtype=torch.float64)
    P = joint_affinities(X, 10.0, chunk_size=7)
    assert torch.allclose(P, P.T) and P.sum().item() == pytest.approx(1.0)
    assert torch.all(P.diagonal() == 0)
    assert torch.allclose(P, joint_affinities(X, 10.0, chunk_size=50))


def test_chunked_kl_matches_the_dense_definition():
    from experiments.derivations import tsne_kl

    X = torch.as_tensor(blobs(40)[0], dtype=torch.float64)
    P = joint_affinities(X, 8.0, chunk_size=40)
    Y = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert kl_divergence(P, Y, chunk_size=9) == pytest.approx(tsne_kl(P, Y).item(), rel=1e-10)


def test_exact_tsne_reaches_openTSNEs_kl_in_2d_and_separates_the_blobs():
    X, labels = blobs(400)
    ours = ExactTSNE(2, perplexity=30, n_iter=750, random_state=0, dtype="float64")
    embedding = ours.fit_transform(X)
    theirs = OpenTSNE(2, perplexity=30, n_iter=750, random_state=0, negative_gradient_method="bh")
    other = theirs.fit_transform(X)
    # the same measure for both: KL under the exact affinities
    P = ours.affinities_
    their_kl = kl_divergence(P, torch.as_tensor(other, dtype=torch.float64), 512)
    assert ours.kl_divergence_ <= their_kl * 1.05
    from sklearn.cluster import KMeans

    from experiments.metrics import cluster_accuracy

    predicted = KMeans(4, n_init=10, random_state=0).fit_predict(embedding)
    assert cluster_accuracy(labels, predicted) > 0.95


def test_exact_tsne_embeds_into_more_than_three_dimensions():
    X, _ = blobs(150)
    reducer = ExactTSNE(8, perplexity=20, n_iter=300, random_state=0)
    embedding = reducer.fit_transform(X)
    assert embedding.shape == (150, 8) and np.isfinite(embedding).all()
    assert math.isfinite(reducer.kl_divergence_) and reducer.kl_divergence_ < 2.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_exact_tsne_on_the_gpu_matches_the_cpu():
    X, _ = blobs(200)
    cpu = ExactTSNE(2, n_iter=300, random_state=0, dtype="float64").fit_transform(X)
    gpu = ExactTSNE(2, n_iter=300, random_state=0, dtype="float64", accelerator="gpu").fit_transform(X)
    assert np.allclose(cpu, gpu, atol=1e-6)
