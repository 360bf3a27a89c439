"""Exact t-SNE in torch, into any number of dimensions, on the CPU or a GPU (reducer=tsne_exact).

openTSNE's fast methods embed into at most 2 (FFT) or, unreliably, 3 (Barnes-Hut) dimensions; this one
computes every pairwise term, in row chunks so that memory stays at the n x n affinities plus one
chunk x n block (10,000 points: about 0.4 GB in float32). It follows van der Maaten's reference
implementation: perplexity calibration by binary search, early exaggeration, momentum and gains.
"""

from __future__ import annotations

import logging
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from experiments.accelerators import device_for
from experiments.console import progress_bar
from experiments.derivations import tsne_gradient_parts
from experiments.reduce import TSNE_CONSTRAINTS, TSNEBase

log = logging.getLogger(__name__)


def row_chunks(n: int, chunk_size: int) -> list[slice]:
    return [slice(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def conditional_affinities(sq_dist: torch.Tensor, perplexity: float, steps: int = 64) -> torch.Tensor:
    """Rows p_{j|i} whose entropy is log(perplexity), by bisection on each row's precision beta.

    `sq_dist` holds squared distances with +inf on each point's own entry.
    """
    target = math.log(perplexity)
    low = torch.zeros(sq_dist.shape[0], 1, dtype=sq_dist.dtype, device=sq_dist.device)
    high = torch.full_like(low, float("inf"))
    beta = torch.ones_like(low)
    # Shift by each row's nearest neighbour so exp() does not underflow for far-apart points.
    shifted = sq_dist - sq_dist.min(1, keepdim=True).values
    for _ in range(steps):
        logits = -shifted * beta
        P = torch.softmax(logits, dim=1)
        entropy = -(P * torch.where(P > 0, torch.log(P), torch.zeros_like(P))).sum(1, keepdim=True)
        too_flat = entropy > target  # too many neighbours: sharpen (raise beta)
        low = torch.where(too_flat, beta, low)
        high = torch.where(too_flat, high, beta)
        beta = torch.where(torch.isinf(high), beta * 2, (low + high) / 2)
    return torch.softmax(-shifted * beta, dim=1)


def joint_affinities(X: torch.Tensor, perplexity: float, chunk_size: int) -> torch.Tensor:
    """Symmetric P = (P_cond + P_cond^T) / 2n, summing to 1, zero diagonal."""
    n = X.shape[0]
    P = torch.empty(n, n, dtype=X.dtype, device=X.device)
    for rows in row_chunks(n, chunk_size):
        sq = torch.cdist(X[rows], X) ** 2
        sq[torch.arange(sq.shape[0]), torch.arange(rows.start, rows.stop)] = float("inf")
        P[rows] = conditional_affinities(sq, perplexity)
    P = (P + P.T) / (2 * n)
    return P


def kl_divergence(P: torch.Tensor, Y: torch.Tensor, chunk_size: int) -> float:
    """KL(P || Q) = sum p log p - sum p log w + log Z, accumulated over row chunks."""
    n = Y.shape[0]
    p_log_p = torch.special.xlogy(P, P).sum()
    p_log_w, Z = torch.zeros((), dtype=Y.dtype, device=Y.device), -float(n)
    for rows in row_chunks(n, chunk_size):
        W = 1.0 / (1.0 + torch.cdist(Y[rows], Y) ** 2)
        Z = Z + W.sum()
        p_log_w = p_log_w + (P[rows] * torch.log(W)).sum()
    return float(p_log_p - p_log_w + torch.log(torch.as_tensor(Z)))


class ExactTSNE(TSNEBase):
    """t-SNE with exact gradients, a scikit-learn estimator: `fit_transform(X)`, then `embedding_`,
    `kl_divergence_` and `affinities_` (the joint P)."""

    _parameter_constraints: dict = {
        **TSNE_CONSTRAINTS,
        "early_exaggeration": [Interval(Real, 1, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "min_gain": [Interval(Real, 0, None, closed="left")],
        "accelerator": [StrOptions({"cpu", "gpu", "cuda", "auto"})],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions({"float32", "float64"})],
    }

    KL_EVERY = 50  # iterations between the KL shown on the progress bar (an extra pass over the pairs)

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        n_iter: int = 750,
        early_exaggeration_iter: int = 250,
        early_exaggeration: float = 12.0,
        learning_rate: float | str = "auto",
        momentum: float = 0.8,
        min_gain: float = 0.01,
        accelerator: str = "cpu",
        chunk_size: int = 2048,
        dtype: str = "float32",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.perplexity = perplexity
        self.n_iter = n_iter
        self.early_exaggeration_iter = early_exaggeration_iter
        self.early_exaggeration = early_exaggeration
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.min_gain = min_gain
        self.accelerator = accelerator
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def initial_embedding(self, X: torch.Tensor) -> torch.Tensor:
        """PCA of X, scaled so the first coordinate has std 1e-4 (as openTSNE does)."""
        centred = X - X.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        Y = centred @ v[: self.n_components].T
        if Y.shape[1] < self.n_components:  # fewer input dimensions than asked for: pad with noise
            seed = self.random_state if isinstance(self.random_state, Integral) else \
                check_random_state(self.random_state).randint(2**31 - 1)
            generator = torch.Generator().manual_seed(int(seed))
            extra = torch.randn(X.shape[0], self.n_components - Y.shape[1], generator=generator).to(Y)
            Y = torch.cat([Y, extra * Y.std()], dim=1)
        return Y / Y[:, 0].std() * 1e-4

    def fit_transform(self, X: np.ndarray, y: None = None) -> np.ndarray:
        """Fit X into an embedded space and return it (n_samples, n_components)."""
        X = self.checked_input(X)
        n = len(X)
        device = device_for(self.accelerator)
        dtype = getattr(torch, self.dtype)
        X_t = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
        P = joint_affinities(X_t, self.perplexity, self.chunk_size)
        Y = self.initial_embedding(X_t)
        update = torch.zeros_like(Y)
        gains = torch.ones_like(Y)
        bar = progress_bar(self.n_iter, f"exact t-SNE of {n} points", enabled=self.verbose)
        for iteration in range(self.n_iter):
            early = iteration < self.early_exaggeration_iter
            exaggeration = self.early_exaggeration if early else 1.0
            # The gradient carries the factor 4, hence N / exaggeration / 4 (Belkina et al. 2019).
            rate = n / exaggeration / 4 if self.learning_rate == "auto" else float(self.learning_rate)
            grad = self.gradient(P * exaggeration if early else P, Y)
            same_sign = torch.sign(grad) == torch.sign(update)
            gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_(min=self.min_gain)
            update = self.momentum * update - rate * gains * grad
            Y = Y + update
            bar.update()
            if self.verbose and (iteration + 1) % self.KL_EVERY == 0:
                bar.set_postfix(KL=f"{kl_divergence(P, Y, self.chunk_size):.3f}", refresh=False)
        bar.close()
        self.kl_divergence_ = kl_divergence(P, Y, self.chunk_size)
        log.info("tsne_exact: %d iterations, KL %.4f", self.n_iter, self.kl_divergence_)
        self.affinities_ = P
        self.n_iter_ = self.n_iter
        self.embedding_ = Y.cpu().numpy().astype(np.float64)
        return self.embedding_

    def gradient(self, P: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """`derivations.tsne_gradient`, one row chunk at a time, in one pass over the pairs."""
        parts = [tsne_gradient_parts(P[rows], Y[rows], Y) for rows in row_chunks(Y.shape[0], self.chunk_size)]
        attraction, repulsion = torch.cat([a for a, _, _ in parts]), torch.cat([r for _, r, _ in parts])
        Z = sum(z for _, _, z in parts)
        return 4.0 * (attraction - repulsion / Z)
