"""Exact t-SNE in torch against openTSNE, and its pieces against their definitions."""

import math
import warnings

import numpy as np
import pytest
import torch

from experiments.reduce import OpenTSNE
from experiments.tsne import (
    ExactObjective,
    ExactTSNE,
    SampledObjective,
    SampledTSNE,
    conditional_affinities,
    joint_affinities,
    kl_divergence,
    sparse_joint_affinities,
)


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


@pytest.mark.gpu
def test_exact_tsne_on_the_gpu_matches_the_cpu():
    X, _ = blobs(200)
    cpu = ExactTSNE(2, n_iter=300, random_state=0, dtype="float64").fit_transform(X)
    gpu = ExactTSNE(2, n_iter=300, random_state=0, dtype="float64", accelerator="gpu").fit_transform(X)
    assert np.allclose(cpu, gpu, atol=1e-6)


def test_sparse_affinities_over_all_neighbours_are_the_exact_ones_and_otherwise_sum_to_one():
    X = torch.as_tensor(blobs(40)[0], dtype=torch.float64)
    P = sparse_joint_affinities(X, perplexity=20.0, chunk_size=7).to_dense()  # 3 x 20 neighbours: all 39
    assert torch.allclose(P, joint_affinities(X, 20.0, chunk_size=40), atol=1e-12)
    X = torch.as_tensor(blobs(300)[0], dtype=torch.float64)
    P = sparse_joint_affinities(X, perplexity=5.0, chunk_size=64)
    dense = P.to_dense()
    assert torch.allclose(dense, dense.T) and dense.sum().item() == pytest.approx(1.0)
    assert P.values().numel() <= 2 * 300 * 15 and torch.all(dense.diagonal() == 0)


def sampled_objective(P, n_samples, refresh_every=5, seed=0):
    return SampledObjective(P, n_samples, refresh_every, 64, torch.Generator().manual_seed(seed))


def test_with_every_point_sampled_the_gradient_and_kl_are_the_exact_ones_for_the_same_p():
    X, _ = blobs(200)
    P = sparse_joint_affinities(torch.as_tensor(X, dtype=torch.float64), 10.0, 64)
    Y = torch.randn(200, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    exact = ExactObjective(P.to_dense(), 64)
    sampled = sampled_objective(P, n_samples=200)
    for exaggeration, early in ((12.0, True), (1.0, False)):
        assert torch.allclose(sampled.gradient(Y, exaggeration, early), exact.gradient(Y, exaggeration, early),
                              rtol=1e-9, atol=1e-12)
    assert sampled.kl(Y) == pytest.approx(exact.kl(Y), rel=1e-10)


def test_the_sampled_far_repulsion_is_unbiased_and_exact_at_its_anchor():
    X, _ = blobs(300)
    P = sparse_joint_affinities(torch.as_tensor(X, dtype=torch.float64), 5.0, 64)
    Y = torch.randn(300, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 4
    objective = sampled_objective(P, n_samples=30)
    far, z = objective.far_exact(Y, objective.weights(Y))
    draws = [objective.far_sample(Y, torch.randperm(300, generator=objective.generator)[:30]) for _ in range(400)]
    mean = torch.stack([f for f, _ in draws]).mean(0)
    one_draw_error = (draws[0][0] - far).norm() / far.norm()
    assert (mean - far).norm() / far.norm() < one_draw_error / 8  # ~1/sqrt(400) of one draw's error
    assert np.mean([zz for _, zz in draws]) == pytest.approx(z, rel=0.01)
    # After the exaggeration phase the sample corrects an exact pass: at that pass's Y it adds nothing.
    late = objective.gradient(Y, 1.0, early=False)
    dense = ExactObjective(P.to_dense(), 64).gradient(Y, 1.0, early=False)
    assert torch.allclose(late, dense, rtol=1e-9, atol=1e-12)


def test_sampled_tsne_reaches_the_exact_kl_in_8d_within_two_percent_and_separates_the_blobs():
    X, labels = blobs(600, dim=12, centres=5)
    exact = ExactTSNE(8, perplexity=30, random_state=0)
    exact.fit_transform(X)
    sampled = SampledTSNE(8, perplexity=30, n_samples=100, random_state=0)
    embedding = sampled.fit_transform(X)
    kl = kl_divergence(exact.affinities_, torch.as_tensor(embedding, dtype=torch.float32), 512)  # under the exact P
    assert kl <= exact.kl_divergence_ * 1.02  # 1.004 here; sampling without the exact passes: 1.11
    from sklearn.cluster import KMeans

    from experiments.metrics import cluster_accuracy

    predicted = KMeans(5, n_init=10, random_state=0).fit_predict(embedding)
    assert cluster_accuracy(labels, predicted) > 0.95


@pytest.mark.gpu
def test_sampled_tsne_on_the_gpu_reaches_the_cpus_kl():
    X, _ = blobs(400)
    cpu = SampledTSNE(8, n_iter=300, n_samples=64, random_state=0, dtype="float64")
    gpu = SampledTSNE(8, n_iter=300, n_samples=64, random_state=0, dtype="float64", accelerator="gpu")
    cpu.fit_transform(X)
    gpu.fit_transform(X)
    assert gpu.affinities_.device.type == "cuda" and gpu.kl_divergence_ == pytest.approx(cpu.kl_divergence_, rel=1e-3)


def test_a_read_only_array_is_embedded_without_a_warning():
    X = np.random.default_rng(0).normal(size=(60, 5))
    X.setflags(write=False)  # as a memmap or a shared array comes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Y = ExactTSNE(2, perplexity=5, n_iter=50, random_state=0, dtype="float64").fit_transform(X)
    assert Y.shape == (60, 2) and np.isfinite(Y).all()
