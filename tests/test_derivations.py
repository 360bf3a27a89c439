"""The assignments' closed forms against autograd and against worked examples."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.derivations import (
    ManualBatchNorm1d,
    batchnorm_backward,
    batchnorm_forward,
    conv1d,
    conv_output_size,
    conv_transpose_output_size,
    covariance,
    is_prox_l1_optimal,
    pca_components,
    pca_trace_minimiser,
    soft_threshold,
    softmax_cross_entropy_grad,
    softmax_jacobian,
    tsne_gradient,
    tsne_kl,
)

SHAPES = [(5, 3), (8, 1), (16, 7)]


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("stride, expected", [(2, 8), (3, 6), (4, 4), (5, 4)])
def test_conv_output_size_matches_assignment_0_worked_example(stride, expected):
    assert conv_output_size(16, kernel=1, stride=stride, padding=0) == expected


def test_conv_output_size_matches_assignment_2_layer_sizes():
    assert conv_output_size(128, kernel=8, stride=2, padding=3) == 64
    assert conv_output_size(64, kernel=2, stride=2) == 32  # 2x2 pooling
    assert conv_output_size(32, kernel=3, stride=1, padding=1) == 32


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", [(28, 3, 2, 1, 1), (17, 5, 3, 2, 1), (9, 3, 1, 0, 2)])
def test_size_formulas_agree_with_torch(size, kernel, stride, padding, dilation):
    x = torch.zeros(1, 1, size)
    conv = torch.nn.Conv1d(1, 1, kernel, stride, padding, dilation)
    assert conv(x).shape[-1] == conv_output_size(size, kernel, stride, padding, dilation)
    tconv = torch.nn.ConvTranspose1d(1, 1, kernel, stride, padding, output_padding=0, dilation=dilation)
    assert tconv(x).shape[-1] == conv_transpose_output_size(size, kernel, stride, padding, 0, dilation)




@pytest.mark.parametrize("mode, expected", [
    ("full", [0.25, 0.5, 1.5, 2.25, 3.0, 2.25, 1.5, 0.5, 0.25]),
    ("valid", [1.5, 2.25, 3.0, 2.25, 1.5]),
    ("same", [0.5, 1.5, 2.25, 3.0, 2.25, 1.5, 0.5]),
])
def test_conv1d_of_assignment_2_example(mode, expected):
    signal = torch.tensor([1, 1, 4, 4, 4, 1, 1], dtype=torch.float64)
    kernel = torch.full((3,), 0.25, dtype=torch.float64)
    assert conv1d(signal, kernel, mode).tolist() == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["full", "valid", "same"])
def test_conv1d_flips_the_kernel_like_numpy(mode):
    signal, kernel = rand(9, seed=1), rand(4, seed=2)
    expected = np.convolve(signal.numpy(), kernel.numpy(), mode=mode)
    if mode == "same":  # numpy centres "same" differently for even kernels; compare odd-length ones
        kernel = kernel[:3]
        expected = np.convolve(signal.numpy(), kernel.numpy(), mode=mode)
    assert np.allclose(conv1d(signal, kernel, mode).numpy(), expected)


@pytest.mark.parametrize("shape", SHAPES[:1] + SHAPES[2:])
def test_batchnorm_backward_matches_autograd(shape):
    x = rand(*shape).requires_grad_()
    gamma = rand(shape[1], seed=1).requires_grad_()
    beta = rand(shape[1], seed=2).requires_grad_()
    grad_out = rand(*shape, seed=3)
    batchnorm_forward(x, gamma, beta).backward(grad_out)
    ours = batchnorm_backward(grad_out, x.detach(), gamma.detach())
    for mine, auto in zip(ours, (x.grad, gamma.grad, beta.grad)):
        assert torch.allclose(mine, auto, atol=1e-10)


def test_manual_batchnorm_passes_gradcheck_and_matches_torch():
    x = rand(6, 4).requires_grad_()
    assert torch.autograd.gradcheck(ManualBatchNorm1d(4).double(), (x,))
    layer, reference = ManualBatchNorm1d(4).double(), torch.nn.BatchNorm1d(4).double()
    assert torch.allclose(layer(x), reference(x), atol=1e-10)
    assert torch.allclose(layer.running_var, reference.running_var)  # one training step each
    assert torch.allclose(layer.running_mean, reference.running_mean)
    layer.eval(), reference.eval()
    assert torch.allclose(layer(x), reference(x), atol=1e-10)


@pytest.mark.parametrize("shape", [(4,), (3, 5)])
def test_softmax_jacobian_matches_autograd(shape):
    z = rand(*shape)
    rows = z.reshape(-1, shape[-1])
    expected = torch.stack([torch.autograd.functional.jacobian(lambda v: torch.softmax(v, -1), r) for r in rows])
    assert torch.allclose(softmax_jacobian(z).reshape(-1, shape[-1], shape[-1]), expected, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_cross_entropy_grad_is_softmax_minus_onehot_over_n(shape):
    n, k = shape[0], max(shape[1], 2)
    logits = rand(n, k).requires_grad_()
    target = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(0))
    F.cross_entropy(logits, target).backward()
    assert torch.allclose(softmax_cross_entropy_grad(logits.detach(), target), logits.grad, atol=1e-12)
    onehot = F.one_hot(target, k).double()
    assert torch.allclose(softmax_cross_entropy_grad(logits.detach(), onehot), logits.grad, atol=1e-12)


def random_orthonormal(d, k, seed):
    q, _ = torch.linalg.qr(rand(d, k, seed=seed))
    return q


def test_pca_trace_minimiser_beats_every_random_orthonormal_basis():
    X = rand(200, 6) @ rand(6, 6, seed=1)  # correlated features
    sigma = covariance(X)
    phi = pca_trace_minimiser(X, 2)
    assert torch.allclose(phi.T @ phi, torch.eye(2, dtype=torch.float64), atol=1e-10)
    smallest = torch.trace(phi.T @ sigma @ phi)
    assert smallest == pytest.approx(torch.linalg.eigvalsh(sigma)[:2].sum().item())
    for seed in range(200):
        other = random_orthonormal(6, 2, seed + 10)
        assert torch.trace(other.T @ sigma @ other) >= smallest - 1e-9
    top = pca_components(X, 2)
    assert torch.trace(top.T @ sigma @ top) > torch.trace(phi.T @ sigma @ phi)


def random_affinities(n, seed=0):
    A = rand(n, n, seed=seed).abs()
    P = A + A.T
    P.fill_diagonal_(0)
    return P / P.sum()


@pytest.mark.parametrize("n, dim", [(5, 2), (12, 3), (20, 8)])
def test_tsne_gradient_matches_autograd_of_the_kl(n, dim):
    P = random_affinities(n)
    Y = rand(n, dim, seed=1).requires_grad_()
    tsne_kl(P, Y).backward()
    assert torch.allclose(tsne_gradient(P, Y.detach()), Y.grad, atol=1e-10)


def test_soft_threshold_is_the_prox_of_the_l1_norm():
    x = rand(50) * 2
    z = soft_threshold(x, 0.7)
    assert is_prox_l1_optimal(x, z, 0.7)
    assert not is_prox_l1_optimal(x, x, 0.7)
    # brute force: each coordinate minimises 1/2 (z - x)^2 + t |z| over a fine grid
    grid = torch.linspace(-6, 6, 120001, dtype=torch.float64)
    for xi, zi in zip(x[:5], z[:5]):
        objective = 0.5 * (grid - xi) ** 2 + 0.7 * grid.abs()
        assert grid[objective.argmin()].item() == pytest.approx(zi.item(), abs=1e-3)


def test_tsne_gradient_parts_of_chunks_assemble_the_full_gradient():
    from experiments.derivations import tsne_gradient_parts

    P = random_affinities(11, seed=3)
    Y = rand(11, 3, seed=4)
    parts = [tsne_gradient_parts(P[s], Y[s], Y) for s in (slice(0, 4), slice(4, 9), slice(9, 11))]
    Z = sum(z for _, _, z in parts)
    chunked = 4 * (torch.cat([a for a, _, _ in parts]) - torch.cat([r for _, r, _ in parts]) / Z)
    assert torch.allclose(chunked, tsne_gradient(P, Y), atol=1e-12)
