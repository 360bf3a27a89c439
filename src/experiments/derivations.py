"""The assignments' closed forms as code, each checked against autograd in tests/test_derivations.py.

Where an assignment is wrong, the function follows the correct maths and its docstring says so.
"""

import torch
import torch.nn.functional as F
from torch import nn


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis (PyTorch's formula).

    floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1; assignment 0 writes the same
    formula once without the final "- 1" inside the floor, which is wrong for stride > 1.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a transposed convolution along one axis (PyTorch's formula)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv1d(signal: torch.Tensor, kernel: torch.Tensor, mode: str = "full") -> torch.Tensor:
    """1-D convolution (kernel flipped) of assignment 2 Q3: "full" (n+k-1), "valid" (n-k+1) or "same" (n)."""
    n, k = signal.shape[-1], kernel.shape[-1]
    padding = {"full": k - 1, "valid": 0, "same": (k - 1) // 2}
    if mode not in padding:
        raise ValueError(f"mode must be full, valid or same, got {mode!r}")
    out = F.conv1d(signal.reshape(1, 1, n), kernel.flip(-1).reshape(1, 1, k), padding=padding[mode])
    out = out.reshape(-1)
    return out[:n] if mode == "same" else out


def batchnorm_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Training-mode batch norm over dim 0 with the biased variance (assignment 0 Q2)."""
    mean = x.mean(0)
    var = x.var(0, unbiased=False)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def batchnorm_backward(
    grad_out: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dL/dx, dL/dgamma, dL/dbeta) of training-mode batch norm, assignment 0 Q2's boxed result:

    dL/dx_i = gamma / (m sqrt(var + eps)) * (m g_i - sum_j g_j - xhat_i sum_j g_j xhat_j).
    """
    m = x.shape[0]
    inv_std = 1.0 / torch.sqrt(x.var(0, unbiased=False) + eps)
    x_hat = (x - x.mean(0)) * inv_std
    grad_beta = grad_out.sum(0)
    grad_gamma = (grad_out * x_hat).sum(0)
    grad_x = gamma * inv_std / m * (m * grad_out - grad_beta - x_hat * grad_gamma)
    return grad_x, grad_gamma, grad_beta


class _BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps):  # untyped: torch.autograd.Function's own signature
        ctx.save_for_backward(x, gamma)
        ctx.eps = eps
        return batchnorm_forward(x, gamma, beta, eps)

    @staticmethod
    def backward(ctx, grad_out):
        x, gamma = ctx.saved_tensors
        grad_x, grad_gamma, grad_beta = batchnorm_backward(grad_out, x, gamma, ctx.eps)
        return grad_x, grad_gamma, grad_beta, None


class ManualBatchNorm1d(nn.Module):
    """BatchNorm1d whose backward pass is `batchnorm_backward`; running statistics for evaluation."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.weight * (x - self.running_mean) / torch.sqrt(self.running_var + self.eps) + self.bias
        with torch.no_grad():
            self.running_mean.lerp_(x.mean(0), self.momentum)
            self.running_var.lerp_(x.var(0, unbiased=True), self.momentum)  # as torch.nn.BatchNorm1d
        return _BatchNormFunction.apply(x, self.weight, self.bias, self.eps)


def softmax_jacobian(z: torch.Tensor) -> torch.Tensor:
    """d softmax(z) / dz = diag(s) - s s^T (assignment 0 Q3a, assignment 2 Q1 j-k), batched over leading dims."""
    s = torch.softmax(z, dim=-1)
    return torch.diag_embed(s) - s.unsqueeze(-1) * s.unsqueeze(-2)


def softmax_cross_entropy_grad(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient of the batch-mean cross-entropy w.r.t. the logits: (softmax - onehot) / N.

    `target` holds class indices (N,) or one-hot / probability rows (N, K).
    """
    onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype) if target.dim() == 1 else target
    return (torch.softmax(logits, dim=-1) - onehot) / logits.shape[0]


def covariance(X: torch.Tensor) -> torch.Tensor:
    centred = X - X.mean(0)
    return centred.T @ centred / X.shape[0]


def pca_trace_minimiser(X: torch.Tensor, k: int) -> torch.Tensor:
    """The Phi (d, k) minimising Trace(Phi^T Sigma Phi) subject to Phi^T Phi = I: the eigenvectors of
    the k smallest eigenvalues of the covariance (assignment 0 Q4b; PCA keeps the largest instead)."""
    _, vectors = torch.linalg.eigh(covariance(X))  # ascending eigenvalues
    return vectors[:, :k]


def pca_components(X: torch.Tensor, k: int) -> torch.Tensor:
    """The usual PCA basis: eigenvectors of the k largest eigenvalues (maximises the same trace)."""
    _, vectors = torch.linalg.eigh(covariance(X))
    return vectors[:, -k:].flip(-1)


def tsne_kl(P: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) with t-SNE's Student-t similarities Q of the embedding Y (P symmetric, summing to 1)."""
    W = 1.0 / (1.0 + torch.cdist(Y, Y) ** 2)
    W = W - torch.diag_embed(torch.diagonal(W))
    Q = W / W.sum()
    mask = P > 0
    return (P[mask] * torch.log(P[mask] / Q[mask])).sum()


def tsne_gradient(P: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """dC/dY of t-SNE's KL: 4 sum_j (p_ij - q_ij)(y_i - y_j)(1 + ||y_i - y_j||^2)^-1.

    Assignment 3 s8b derives the Gaussian (SNE) version, without the (1 + d^2)^-1 factor of the Student-t.
    """
    attraction, repulsion, z = tsne_gradient_parts(P, Y, Y)
    return 4.0 * (attraction - repulsion / z)


def tsne_gradient_parts(
    P_rows: torch.Tensor, Y_rows: torch.Tensor, Y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradient's pieces for a chunk of points (P_rows: chunk x n, Y_rows: chunk x d), from one
    pass over the chunk's pairs.

    With w_ij = (1 + ||y_i - y_j||^2)^-1 and q_ij = w_ij / Z, the gradient row is
    4 (sum_j p_ij w_ij (y_i - y_j) - sum_j w_ij^2 (y_i - y_j) / Z). Returns the two sums and the chunk's
    share of Z, so that chunks can be summed before dividing. A point's own term vanishes in the sums
    (y_i - y_i = 0); in Z it is removed (w_ii = 1).
    """
    W = squared_distances(Y_rows, Y).add_(1.0).reciprocal_()  # in place: this block is the memory bill
    PW = P_rows * W
    attraction = PW.sum(1, keepdim=True) * Y_rows - PW @ Y
    repulsion, z = student_t_repulsion(W, Y_rows, Y)
    return attraction, repulsion, z - Y_rows.shape[0]


def student_t_repulsion(
    W: torch.Tensor, Y_rows: torch.Tensor, Y_cols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_j w_ij^2 (y_i - y_j) for a block W of Student-t weights (rows Y_rows against Y_cols), and sum W.

    W is squared in place. One product of W^2 with [Y_cols, 1] gives both the weighted sum of the y_j and
    the row sums.
    """
    z = W.sum()
    ones = torch.ones(Y_cols.shape[0], 1, dtype=Y_cols.dtype, device=Y_cols.device)
    sums = W.square_() @ torch.cat([Y_cols, ones], 1)
    return sums[:, -1:] * Y_rows - sums[:, :-1], z


def squared_distances(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 for all pairs, as |a|^2 + |b|^2 - 2 a.b (one matrix product, no square root)."""
    sq = torch.addmm((B * B).sum(1).unsqueeze(0), A, B.T, alpha=-2.0)
    return sq.add_((A * A).sum(1, keepdim=True)).clamp_(min=0.0)


def soft_threshold(x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """prox of t||.||_1 (assignment 3 s9a): sign(x) max(|x| - t, 0)."""
    return torch.sign(x) * torch.clamp(x.abs() - t, min=0)


def is_prox_l1_optimal(x: torch.Tensor, z: torch.Tensor, t: float, atol: float = 1e-9) -> bool:
    """z = prox_{t||.||_1}(x) iff x - z lies in t times the subdifferential of ||.||_1 at z."""
    r = x - z
    on_support = z != 0
    ok_support = torch.allclose(r[on_support], t * torch.sign(z[on_support]), atol=atol)
    ok_zero = bool((r[~on_support].abs() <= t + atol).all())
    return ok_support and ok_zero
