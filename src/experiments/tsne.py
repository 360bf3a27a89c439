"""t-SNE in torch, into any number of dimensions, on the CPU or a GPU.

openTSNE's fast methods embed into at most 2 (FFT) or, unreliably, 3 (Barnes-Hut) dimensions. Two
estimators here do not have that limit:

- `ExactTSNE` (reducer=tsne_exact) computes every pairwise term, in row chunks so that memory stays at
  the n x n affinities plus one chunk x n block. It follows van der Maaten's reference implementation:
  perplexity calibration by binary search, early exaggeration, momentum and gains. The reference.
- `SampledTSNE` (reducer=tsne_sampled) has openTSNE's sparse affinities (each point's 3 x perplexity
  nearest neighbours) and splits the repulsion in two: exactly over the neighbour graph, where the
  large terms are, and by sampling over all other pairs. A sample of a few hundred points is unbiased
  but noisy, and the noise costs a t-SNE after its exaggeration phase several percent of KL (measured:
  docs/jobs/cluster.md, on `reducer=tsne_sampled`). So after that phase the sample only estimates how the far-field repulsion
  changed since an exact pass every `refresh_every` iterations (a control variate, as in SVRG), whose
  error shrinks with the embedding's movement.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.utils import check_random_state

from experiments.accelerators import device_for
from experiments.console import progress_bar
from experiments.derivations import squared_distances, student_t_repulsion, tsne_gradient_parts
from experiments.reduce import TSNE_RULES, Rule, TSNEBase, number, word

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


class TorchTSNE(TSNEBase):
    """What the two torch estimators share: the parameters of the optimisation (ExactTSNE's are these),
    the PCA start and the gradient descent with momentum and gains. A subclass builds its `objective`."""

    parameter_rules: ClassVar[dict[str, Rule]] = {
        **TSNE_RULES,
        "early_exaggeration": number(Real, 1),
        "momentum": number(Real, 0, 1, bounds="left"),
        "min_gain": number(Real, 0),
        "accelerator": word("cpu", "gpu", "cuda", "auto"),
        "chunk_size": number(Integral, 1),
        "dtype": word("float32", "float64"),
    }

    KL_EVERY = 50  # iterations between the KL shown on the progress bar
    name = "t-SNE"

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
        chunk_size: int = 256,
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

    def objective(self, X: torch.Tensor, generator: torch.Generator) -> ExactObjective | SampledObjective:
        raise NotImplementedError

    def seed(self) -> int:
        if isinstance(self.random_state, Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def initial_embedding(self, X: torch.Tensor) -> torch.Tensor:
        """PCA of X, scaled so the first coordinate has std 1e-4 (as openTSNE does)."""
        centred = X - X.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        Y = centred @ v[: self.n_components].T
        if Y.shape[1] < self.n_components:  # fewer input dimensions than asked for: pad with noise
            generator = torch.Generator().manual_seed(self.seed())
            extra = torch.randn(X.shape[0], self.n_components - Y.shape[1], generator=generator).to(Y)
            Y = torch.cat([Y, extra * Y.std()], dim=1)
        return Y / Y[:, 0].std() * 1e-4

    def fit_transform(self, X: np.ndarray, y: None = None) -> np.ndarray:
        """Fit X into an embedded space and return it (n_samples, n_components)."""
        X = self.checked_input(X)
        n = len(X)
        device = device_for(self.accelerator)
        # A copy: X may be read-only (a memmap scikit-learn's checks pass on), and torch warns when it would share it
        X_t = torch.tensor(np.asarray(X), dtype=getattr(torch, self.dtype), device=device)
        objective = self.objective(X_t, torch.Generator().manual_seed(self.seed()))
        Y = self.initial_embedding(X_t)
        update = torch.zeros_like(Y)
        gains = torch.ones_like(Y)
        bar = progress_bar(self.n_iter, f"{self.name} of {n} points", enabled=self.verbose)
        for iteration in range(self.n_iter):
            early = iteration < self.early_exaggeration_iter
            exaggeration = self.early_exaggeration if early else 1.0
            # The gradient carries the factor 4, hence N / exaggeration / 4 (Belkina et al. 2019).
            rate = n / exaggeration / 4 if self.learning_rate == "auto" else float(self.learning_rate)
            grad = objective.gradient(Y, exaggeration, early)
            same_sign = torch.sign(grad) == torch.sign(update)
            gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_(min=self.min_gain)
            update = self.momentum * update - rate * gains * grad
            Y = Y + update
            bar.update()
            if self.verbose and (iteration + 1) % self.KL_EVERY == 0:
                bar.set_postfix(KL=f"{objective.kl(Y, estimate=True):.3f}", refresh=False)
        bar.close()
        self.kl_divergence_ = objective.kl(Y)
        log.info("%s: %d iterations, KL %.4f", self.name, self.n_iter, self.kl_divergence_)
        self.affinities_ = objective.P
        self.n_iter_ = self.n_iter
        self.embedding_ = Y.cpu().numpy().astype(np.float64)
        return self.embedding_


class ExactObjective:
    """KL(P || Q) and its gradient over all pairs, one row chunk at a time."""

    def __init__(self, P: torch.Tensor, chunk_size: int) -> None:
        self.P, self.chunk_size = P, chunk_size

    def gradient(self, Y: torch.Tensor, exaggeration: float, early: bool) -> torch.Tensor:
        """`derivations.tsne_gradient`, in one pass over the pairs."""
        P = self.P * exaggeration if exaggeration != 1.0 else self.P
        parts = [tsne_gradient_parts(P[rows], Y[rows], Y) for rows in row_chunks(Y.shape[0], self.chunk_size)]
        attraction, repulsion = torch.cat([a for a, _, _ in parts]), torch.cat([r for _, r, _ in parts])
        Z = sum(z for _, _, z in parts)
        return 4.0 * (attraction - repulsion / Z)

    def kl(self, Y: torch.Tensor, estimate: bool = False) -> float:
        return kl_divergence(self.P, Y, self.chunk_size)


class ExactTSNE(TorchTSNE):
    """t-SNE with exact gradients, a scikit-learn estimator: `fit_transform(X)`, then `embedding_`,
    `kl_divergence_` and `affinities_` (the joint P, dense)."""

    name = "exact t-SNE"

    def objective(self, X: torch.Tensor, generator: torch.Generator) -> ExactObjective:
        return ExactObjective(joint_affinities(X, self.perplexity, self.chunk_size), self.chunk_size)


def nearest_neighbours(X: torch.Tensor, k: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's k nearest other points (n x k indices) and their squared distances, exactly."""
    n = X.shape[0]
    indices = torch.empty(n, k, dtype=torch.long, device=X.device)
    distances = torch.empty(n, k, dtype=X.dtype, device=X.device)
    for rows in row_chunks(n, chunk_size):
        sq = squared_distances(X[rows], X)
        sq[torch.arange(sq.shape[0]), torch.arange(rows.start, rows.stop)] = float("inf")
        distances[rows], indices[rows] = sq.topk(k, dim=1, largest=False)
    return indices, distances


@contextmanager
def csr_beta_quiet() -> Iterator[None]:
    """Without torch's "Sparse CSR tensor support is in beta state" warning, on every CSR tensor made."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        yield


def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """An n x n CSR matrix on a pattern built here (so torch's invariant checks are not needed)."""
    with csr_beta_quiet():
        return torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)


def sparse_joint_affinities(X: torch.Tensor, perplexity: float, chunk_size: int) -> torch.Tensor:
    """openTSNE's affinities: p_{j|i} over each point's 3 x perplexity nearest neighbours, symmetrised
    (P_cond + P_cond^T) / 2n; a CSR matrix summing to 1."""
    n = X.shape[0]
    k = min(n - 1, int(3 * perplexity))
    neighbours, sq = nearest_neighbours(X, k, chunk_size)
    conditional = conditional_affinities(sq, perplexity)
    rows = torch.arange(n, device=X.device).repeat_interleave(k)
    P = torch.sparse_coo_tensor(torch.stack([rows, neighbours.flatten()]), conditional.flatten(), (n, n),
                                check_invariants=False)  # indices built here, in range
    with csr_beta_quiet():
        return ((P + P.t()).coalesce() * (1.0 / (2 * n))).to_sparse_csr()


class SampledObjective:
    """t-SNE's gradient with the sparse P: attraction and near repulsion over P's graph, exactly; the
    repulsion of all other pairs from `n_samples` points drawn each iteration, after the exaggeration
    phase as a correction to an exact pass every `refresh_every` iterations."""

    def __init__(self, P: torch.Tensor, n_samples: int, refresh_every: int, chunk_size: int,
                 generator: torch.Generator) -> None:
        self.P, self.n = P, P.shape[0]
        self.crow, self.col, self.p = P.crow_indices(), P.col_indices(), P.values()
        self.row = torch.repeat_interleave(torch.arange(self.n, device=P.device), self.crow.diff())
        self.n_samples, self.refresh_every, self.chunk_size = min(n_samples, self.n), refresh_every, chunk_size
        self.generator = generator
        self.anchor: tuple[torch.Tensor, torch.Tensor, float] | None = None  # Y0, far repulsion and far Z at Y0
        self.since_anchor = 0
        self.z = float("nan")  # the last estimate of Z, for the progress bar's KL

    def weights(self, Y: torch.Tensor) -> torch.Tensor:
        """w_ij = 1 / (1 + ||y_i - y_j||^2) on P's graph, in P's order."""
        sq = (Y * Y).sum(1)
        dots = torch.sparse.sampled_addmm(self.P, Y, Y.T, beta=0.0).values()
        return (sq[self.row] + sq[self.col] - 2 * dots).clamp_(min=0).add_(1).reciprocal_()

    def graph_sum(self, values: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """sum_j v_ij (y_i - y_j) over P's graph."""
        ones = torch.ones(self.n, 1, dtype=Y.dtype, device=Y.device)
        sums = csr(self.crow, self.col, values, self.n) @ torch.cat([Y, ones], 1)
        return sums[:, -1:] * Y - sums[:, :-1]

    def far_sample(self, Y: torch.Tensor, sample: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The repulsion and Z over the pairs off P's graph, estimated from the sampled points (unbiased:
        each sampled term scaled by n / n_samples, the sample's own and graph pairs removed)."""
        m = len(sample)
        W = squared_distances(Y, Y[sample]).add_(1).reciprocal_()
        W[sample, torch.arange(m, device=Y.device)] = 0
        # The graph pairs of the sampled points: P is symmetric, so its rows list them.
        starts, counts = self.crow[sample], self.crow[sample + 1] - self.crow[sample]
        first = torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts)
        members = self.col[first + torch.arange(int(counts.sum()), device=Y.device)]
        W[members, torch.repeat_interleave(torch.arange(m, device=Y.device), counts)] = 0
        repulsion, z = student_t_repulsion(W, Y, Y[sample])
        scale = self.n / m
        return repulsion * scale, float(z) * scale

    def far_exact(self, Y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The repulsion and Z over the pairs off P's graph, exactly: all pairs less the graph's (whose
        weights are `w`)."""
        repulsion, z = torch.empty_like(Y), 0.0
        for rows in row_chunks(self.n, self.chunk_size):
            W = squared_distances(Y[rows], Y).add_(1).reciprocal_()
            repulsion[rows], z_rows = student_t_repulsion(W, Y[rows], Y)  # a point's own term is 1 * 0
            z += float(z_rows) - W.shape[0]
        return repulsion - self.graph_sum(w * w, Y), z - float(w.sum())

    def gradient(self, Y: torch.Tensor, exaggeration: float, early: bool) -> torch.Tensor:
        w = self.weights(Y)
        sample = torch.randperm(self.n, generator=self.generator)[: self.n_samples].to(Y.device)  # drawn each time
        if early or self.n_samples == self.n:
            far, z_far = self.far_sample(Y, sample)
        elif self.anchor is None or self.since_anchor == self.refresh_every:  # exact here: the new anchor
            self.anchor, self.since_anchor = (Y, *self.far_exact(Y, w)), 1
            far, z_far = self.anchor[1], self.anchor[2]
        else:  # the exact far field at the anchor, moved by the sample's estimate of its change since then
            Y0, far0, z_far0 = self.anchor
            now, z_now = self.far_sample(Y, sample)
            then, z_then = self.far_sample(Y0, sample)
            far, z_far = far0 + now - then, z_far0 + z_now - z_then
            self.since_anchor += 1
        self.z = float(w.sum()) + z_far
        return 4.0 * (self.graph_sum(exaggeration * self.p * w - w * w / self.z, Y) - far / self.z)

    def kl(self, Y: torch.Tensor, estimate: bool = False) -> float:
        """KL(P || Q) = sum p log p - sum p log w + log Z, P's sum over its graph; Z the last estimate
        (`estimate`) or from an exact pass."""
        w = self.weights(Y)
        z = self.z if estimate else self.far_exact(Y, w)[1] + float(w.sum())
        return float(torch.special.xlogy(self.p, self.p).sum() - (self.p * torch.log(w)).sum()) + math.log(z)


class SampledTSNE(TorchTSNE):
    """t-SNE at openTSNE's pace in any number of dimensions, a scikit-learn estimator: sparse
    nearest-neighbour affinities and a sampled, exactly re-anchored repulsion (the module's docstring).
    `affinities_` is the joint P as a sparse CSR matrix."""

    parameter_rules: ClassVar[dict[str, Rule]] = {
        **TorchTSNE.parameter_rules,
        "n_samples": number(Integral, 1),
        "refresh_every": number(Integral, 1),
    }
    name = "sampled t-SNE"

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
        n_samples: int = 1024,
        refresh_every: int = 5,
        accelerator: str = "cpu",
        chunk_size: int = 256,
        dtype: str = "float32",
        random_state: int | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            n_components=n_components, perplexity=perplexity, n_iter=n_iter,
            early_exaggeration_iter=early_exaggeration_iter, early_exaggeration=early_exaggeration,
            learning_rate=learning_rate, momentum=momentum, min_gain=min_gain, accelerator=accelerator,
            chunk_size=chunk_size, dtype=dtype, random_state=random_state, verbose=verbose,
        )
        self.n_samples = n_samples
        self.refresh_every = refresh_every

    def objective(self, X: torch.Tensor, generator: torch.Generator) -> SampledObjective:
        P = sparse_joint_affinities(X, self.perplexity, self.chunk_size)
        return SampledObjective(P, self.n_samples, self.refresh_every, self.chunk_size, generator)
