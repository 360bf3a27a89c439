"""ISTA and FISTA for the Lasso F(x) = 1/2 ||b - A x||^2 + lam ||x||_1 (assignment 3 s9), in torch.

`A` is a matrix or any linear operator with `A(x)` and `A.adjoint(y)`; `b` is one signal (m,) or a batch of
columns (m, k), all solved at once, on whatever device the tensors are on. Mind the conventions of other
references: Beck and Teboulle (2009) and pylops write ||A x - b||^2 without the 1/2, so their lambda is
twice ours; scikit-learn's Lasso scales the squared error by 1 / (2 n_rows), so alpha = lam / n_rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from experiments.console import progress_bar
from experiments.derivations import soft_threshold

log = logging.getLogger(__name__)


class LinearOperator(Protocol):
    """What `solve` needs of A: A(x) and its adjoint, on columns (n, k) -> (m, k) and back."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def adjoint(self, y: torch.Tensor) -> torch.Tensor: ...


class MatrixOperator:
    """A dense matrix as a LinearOperator."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix @ x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.matrix.T @ y


@dataclass
class LassoResult:
    x: torch.Tensor  # (n,) or (n, k) like b
    objective: torch.Tensor  # F summed over the columns, one value per iteration (after its step)
    n_iter: int
    converged: bool
    gap: float  # the last relative duality gap (or relative change of x, with stop="change")


def objective(A: LinearOperator, b: torch.Tensor, x: torch.Tensor, lam: float) -> torch.Tensor:
    """F per column: 1/2 ||b - A x||^2 + lam ||x||_1."""
    return objective_and_gap(A, b, x, lam, with_gap=False)[0]


def objective_and_gap(
    A: LinearOperator, b: torch.Tensor, x: torch.Tensor, lam: float, with_gap: bool = True,
    Ax: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """F per column and, with `with_gap`, the relative duality gap per column, from one residual r = b - A x
    (`Ax`, when the caller has it already).

    The dual point is theta = r / max(1, ||A^T r||_inf / lam).
    """
    r = b - (A(x) if Ax is None else Ax)
    r_sq = (r * r).sum(0)
    primal = 0.5 * r_sq + lam * x.abs().sum(0)
    if not with_gap:
        return primal, None
    return primal, relative_gap(primal, (b * r).sum(0), r_sq, A.adjoint(r).abs().amax(0), lam)


def relative_gap(primal: torch.Tensor, b_dot_r: torch.Tensor, r_sq: torch.Tensor, correlation: torch.Tensor,
                 lam: float) -> torch.Tensor:
    """(F - D) / F per column at the dual point theta = r / max(1, ||A^T r||_inf / lam), from the residual's
    b.r, ||r||^2 and ||A^T r||_inf (`correlation`): D(theta) = b.theta - ||theta||^2 / 2."""
    scale = torch.clamp(correlation / lam, min=1.0) if lam > 0 else torch.ones_like(primal)
    dual = b_dot_r / scale - 0.5 * r_sq / (scale * scale)
    return (primal - dual) / torch.clamp(primal, min=torch.finfo(primal.dtype).tiny)


def lipschitz_constant(A: LinearOperator, n: int, like: torch.Tensor, iterations: int = 100) -> float:
    """||A||^2 (the largest eigenvalue of A^T A) by power iteration."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(n, 1, generator=generator, dtype=like.dtype).to(like.device)  # one column, as x is held
    estimate = 0.0
    for _ in range(iterations):
        w = A.adjoint(A(v))
        estimate = float(torch.linalg.vector_norm(w))
        if estimate == 0.0:
            break
        v = w / estimate
    return estimate


def solve(
    A: torch.Tensor | LinearOperator,
    b: torch.Tensor,
    lam: float,
    *,
    method: str = "fista",
    max_iter: int = 1000,
    tol: float = 1e-8,
    x0: torch.Tensor | None = None,
    step: float | str | None = None,
    stop: str = "gap",
    n_features: int | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    progress: str | None = None,
) -> LassoResult:
    """Minimise 1/2 ||b - A x||^2 + lam ||x||_1 by ISTA or FISTA.

    step: None for 1/L with L = ||A||^2 by power iteration, a number for a fixed step, or "backtracking"
    (Beck and Teboulle's line search, for when L is unknown). stop: "gap" stops when every column's
    relative duality gap is below `tol`, "change" when ||x_k - x_{k-1}|| / ||x_k|| is; `tol=0` runs all
    `max_iter` iterations (the gap is then computed once, at the end). `n_features` is x's length, needed
    only when A is an operator and no x0 is given. `callback(iteration, x)` sees every iterate (curves).
    `progress` names a progress bar (shown when the run lasts more than 2 s, with the objective).
    """
    operator = MatrixOperator(A) if isinstance(A, torch.Tensor) else A
    check_inputs(A, b, lam, method, max_iter, tol, stop, x0, n_features)
    single = b.dim() == 1
    b2 = b.unsqueeze(1) if single else b
    n = A.shape[1] if isinstance(A, torch.Tensor) else (x0.shape[0] if x0 is not None else n_features)
    x = torch.zeros(n, b2.shape[1], dtype=b.dtype, device=b.device) if x0 is None else (x0.unsqueeze(1) if single else x0).clone()
    L = initial_lipschitz(operator, n, b2, step)
    iterate = ProximalGradient(x, operator(x))
    history, gap, converged = [], float("inf"), False
    bar = progress_bar(max_iter, progress or "", enabled=progress is not None)
    for iteration in range(1, max_iter + 1):
        L, change = iterate.step(operator, b2, lam, L, method == "fista", step == "backtracking")
        if callback is not None:
            callback(iteration, iterate.x[:, 0] if single else iterate.x)
        with_gap = stop == "gap" and (tol > 0 or iteration == max_iter)
        primal, relative_gap = objective_and_gap(operator, b2, iterate.x, lam, with_gap=with_gap, Ax=iterate.Ax)
        history.append(float(primal.sum()))
        gap = float(relative_gap.max()) if relative_gap is not None else change
        bar.update()
        if progress is not None and iteration % 50 == 0:
            bar.set_postfix(objective=f"{history[-1]:.6g}", refresh=False)
        if tol > 0 and gap <= tol:
            converged = True
            break
    bar.close()
    measure = "relative gap" if stop == "gap" else "relative change"
    if tol <= 0:
        log.debug("%s ran its %d iterations (tol=0); final %s %.3g", method, max_iter, measure, gap)
    elif not converged:
        log.warning("%s stopped after %d iterations without converging: %s %.3g > tol %.3g", method, max_iter,
                    measure, gap, tol)
    x_out = iterate.x[:, 0] if single else iterate.x
    return LassoResult(x_out, torch.tensor(history, dtype=torch.float64), iteration, converged, gap)


def initial_lipschitz(operator: LinearOperator, n: int, b: torch.Tensor, step: float | str | None) -> float:
    """The first L (the step is 1/L): ||A||^2 by power iteration (step None), 1 to start a line search
    ("backtracking"), or 1/step."""
    if step == "backtracking":
        return 1.0
    if step is not None:
        return 1.0 / float(step)
    L = lipschitz_constant(operator, n, b)
    if L == 0.0:
        raise ValueError("A: its norm estimate is zero (an all-zero operator); nothing to solve")
    return L


@dataclass
class ProximalGradient:
    """ISTA's or FISTA's iterate x with A x beside it, and FISTA's extrapolated point y (A y) and momentum t.

    A y = A x_k + beta (A x_k - A x_{k-1}) by linearity: one application of A and one of its adjoint per
    iteration (two of A without it)."""

    x: torch.Tensor
    Ax: torch.Tensor
    t: float = 1.0

    def __post_init__(self) -> None:
        self.y, self.Ay = self.x.clone(), self.Ax

    def step(self, operator: LinearOperator, b: torch.Tensor, lam: float, L: float, fista: bool,
             backtracking: bool) -> tuple[float, float]:
        """One iteration from y (FISTA) or x (ISTA); returns L (doubled by the line search until the step is
        short enough, with `backtracking`) and the relative change of x."""
        point, A_point = (self.y, self.Ay) if fista else (self.x, self.Ax)
        residual = A_point - b
        grad = operator.adjoint(residual)
        f_point = 0.5 * float((residual * residual).sum())
        while True:
            x_new = soft_threshold(point - grad / L, lam / L)
            Ax_new = operator(x_new)  # the line search's test and the next iteration both need it
            if not backtracking or sufficient_decrease(b, f_point, point, x_new, Ax_new, grad, L):
                break
            L *= 2.0
        if fista:
            t_new = (1 + (1 + 4 * self.t * self.t) ** 0.5) / 2
            beta = (self.t - 1) / t_new
            self.y, self.Ay = x_new + beta * (x_new - self.x), Ax_new + beta * (Ax_new - self.Ax)
            self.t = t_new
        change = float(torch.linalg.vector_norm(x_new - self.x)
                       / torch.clamp(torch.linalg.vector_norm(x_new), min=1e-300))
        self.x, self.Ax = x_new, Ax_new
        return L, change


def first_iteration_within(values: Sequence[float] | torch.Tensor, level: float) -> int | None:
    """The first iteration (1-based) whose value is at most `level`; None when no iteration gets there.

    (np.argmax of a boolean array returns 0 when nothing is True: a solver that never converged would
    pass as converging at iteration 1.)
    """
    for iteration, value in enumerate(values.tolist() if isinstance(values, torch.Tensor) else values, start=1):
        if value <= level:
            return iteration
    return None


def sufficient_decrease(
    b: torch.Tensor, f_y: float, y: torch.Tensor, x: torch.Tensor, Ax: torch.Tensor, grad: torch.Tensor, L: float
) -> bool:
    """Beck and Teboulle's test: f(x) <= f(y) + <grad f(y), x - y> + L/2 ||x - y||^2, for f = 1/2||b - A.||^2."""
    r = b - Ax
    d = x - y
    return bool(0.5 * (r * r).sum() <= f_y + (grad * d).sum() + 0.5 * L * (d * d).sum() + 1e-12 * abs(f_y))


def check_inputs(
    A: object, b: torch.Tensor, lam: float, method: str, max_iter: int, tol: float, stop: str, x0: torch.Tensor | None,
    n_features: int | None,
) -> None:
    if method not in ("ista", "fista"):
        raise ValueError(f"method={method!r} is not one of ista, fista")
    if stop not in ("gap", "change"):
        raise ValueError(f"stop={stop!r} is not one of gap, change")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0 (0: run all max_iter iterations), got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if b.dim() not in (1, 2):
        raise ValueError(f"b must be a signal (m,) or a batch of columns (m, k), got shape {tuple(b.shape)}")
    if not torch.isfinite(b).all():
        raise ValueError("b contains NaN or inf values")
    if isinstance(A, torch.Tensor):
        if A.dim() != 2 or A.shape[0] != b.shape[0]:
            raise ValueError(f"A is {tuple(A.shape)} but b has {b.shape[0]} rows; A must be (m, n) with m = len(b)")
    elif x0 is None and n_features is None:
        raise ValueError("A is an operator: give x0 or n_features so the length of x is known")


def lasso_gram(
    A: torch.Tensor,
    B: torch.Tensor,
    lam: float,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
    check_every: int = 10,
    x0: torch.Tensor | None = None,
    progress: str | None = None,
) -> LassoResult:
    """Many Lasso problems of one matrix A (m, n), the columns of B (m, k), by FISTA in Gram form.

    A^T A and A^T B are formed once, so an iteration costs one n x n by n x k product whatever m is. Each
    column's momentum restarts when it points uphill (O'Donoghue and Candes's gradient restart), which
    cuts FISTA's iterations on the Lasso by about three here. Every `check_every` iterations the relative
    duality gap of each column is computed (from Gram quantities) and the columns below `tol` leave the
    batch. `tol=0` runs all `max_iter` iterations. Same objective, conventions and result as `solve`, but the
    result's `objective` holds F summed over the columns at the checks only.

    A column whose gap is at the floor its dtype can resolve leaves the batch too, however small `tol` is:
    the gap comes from ||b||^2 - 2 c.x + x.Gx, and rounding leaves it uncertain by up to ROUNDING_FLOOR x eps x
    ||b||^2 / F (float32: 1e-6 to 1e-4 relative); a column within that and no lower than at the last check has
    stopped improving. (Before, tol=1e-6 in float32 ran to max_iter: 19 s instead of 0.16 s for 1,000 problems of
    64x128.) The log says in one line how many stopped there, and how high.
    """
    if not isinstance(A, torch.Tensor):
        raise TypeError("lasso_gram needs A as a matrix (use solve for a linear operator)")
    check_inputs(A, B, lam, "fista", max_iter, tol, "gap", x0, None)
    if check_every < 1:
        raise ValueError(f"check_every must be at least 1, got {check_every}")
    single = B.dim() == 1
    B2 = B.unsqueeze(1) if single else B
    X0 = None if x0 is None else (x0.unsqueeze(1) if single else x0)
    batch = GramBatch(A, B2, lam, X0)
    history, converged = [], False
    bar = progress_bar(max_iter, progress or "", enabled=progress is not None)
    for iteration in range(1, max_iter + 1):
        batch.step()
        bar.update()
        if (tol > 0 and iteration % check_every == 0) or iteration == max_iter:
            history.append(batch.check(tol))
            bar.set_postfix(columns_left=len(batch.active), refresh=False)
            if len(batch.active) == 0:
                converged = True
                break
    bar.close()
    batch.report(tol, converged, iteration)
    x_out = batch.X[:, 0] if single else batch.X
    return LassoResult(x_out, torch.tensor(history, dtype=torch.float64), iteration, converged, float(batch.gap.max()))


# A column's relative gap is resolved to within ROUNDING_FLOOR x eps x ||b||^2 / F in its dtype (measured: up to
# 9.3 eps ||b||^2 / F on problems of 64x128 to 250x500 at lam 0.005 to 0.1 of lam_max, float32).
ROUNDING_FLOOR = 16


class GramBatch:
    """FISTA with gradient restart on the columns of B still being solved (`active`), in Gram form; `X` holds every
    column's latest x, `gap` its latest relative duality gap, `floored` whether it stopped at its rounding floor."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor, lam: float, X0: torch.Tensor | None) -> None:
        self.G, C = A.T @ A, A.T @ B
        b_sq = (B * B).sum(0)
        L = float(torch.linalg.eigvalsh(self.G.double())[-1])
        if L == 0.0:
            raise ValueError("A: its norm is zero (an all-zero matrix); nothing to solve")
        self.lam, self.step_size, self.threshold = lam, 1.0 / L, lam / L
        self.X = torch.zeros_like(C) if X0 is None else X0.clone().to(C)
        self.active = torch.arange(C.shape[1], device=C.device)
        self.x, self.y, self.c, self.b_sq = self.X.clone(), self.X.clone(), C, b_sq
        self.t = torch.ones(C.shape[1], dtype=C.dtype, device=C.device)
        self.gap = torch.full_like(b_sq, float("inf"))
        self.floored = torch.zeros_like(b_sq, dtype=torch.bool)
        self.eps = torch.finfo(C.dtype).eps

    def step(self) -> None:
        """One FISTA iteration of every active column."""
        x, y, t = self.x, self.y, self.t
        z = torch.addmm(y, self.G, y, alpha=-self.step_size).add_(self.c, alpha=self.step_size)  # y - (G y - c) / L
        x_new = soft_threshold(z, self.threshold)
        uphill = ((y - x_new) * (x_new - x)).sum(0) > 0
        t = torch.where(uphill, torch.ones_like(t), t)
        t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        self.y = x_new + ((t - 1) / t_new) * (x_new - x)
        self.x, self.t = x_new, t_new

    def check(self, tol: float) -> float:
        """Every active column's gap; those at or below `tol`, or at their rounding floor, leave the batch.
        Returns F summed over the active columns."""
        primal, gap = gram_objective_and_gap(self.G, self.c, self.b_sq, self.x, self.lam)
        previous = self.gap[self.active]
        self.gap[self.active], self.X[:, self.active] = gap, self.x
        if tol > 0:
            # Near its floor a column's gap only jitters: it stops there once a check finds it no lower
            floor = ROUNDING_FLOOR * self.eps * self.b_sq / torch.clamp(primal, min=torch.finfo(primal.dtype).tiny)
            floored = (gap > tol) & (gap <= floor) & (gap >= previous)
            self.floored[self.active] = floored
            keep = ~((gap <= tol) | floored)
            self.active, self.x, self.y = self.active[keep], self.x[:, keep], self.y[:, keep]
            self.t, self.c, self.b_sq = self.t[keep], self.c[:, keep], self.b_sq[keep]
        return float(primal.sum())

    def report(self, tol: float, converged: bool, iterations: int) -> None:
        """One line when columns stopped at their rounding floor, one when some did not converge."""
        if self.floored.any():
            log.info("fista (Gram form): %d of %d columns stopped at the relative gap %s can resolve (up to %.3g), "
                     "above tol %.3g; float64 resolves smaller gaps", int(self.floored.sum()), len(self.gap),
                     str(self.X.dtype).removeprefix("torch."), float(self.gap[self.floored].max()), tol)
        if tol > 0 and not converged:
            log.warning("fista (Gram form) stopped after %d iterations without converging: %d of %d columns above "
                        "tol %.3g (largest relative gap %.3g)", iterations, len(self.active), len(self.gap), tol,
                        float(self.gap.max()))


def gram_objective_and_gap(
    G: torch.Tensor, c: torch.Tensor, b_sq: torch.Tensor, x: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """F and the relative duality gap per column from G = A^T A, c = A^T b and ||b||^2 (as objective_and_gap,
    without forming the residual: b.r = ||b||^2 - c.x, ||r||^2 = ||b||^2 - 2 c.x + x.Gx, A^T r = c - G x)."""
    Gx = G @ x
    cx = (c * x).sum(0)
    r_sq = torch.clamp(b_sq - 2 * cx + (x * Gx).sum(0), min=0)
    primal = 0.5 * r_sq + lam * x.abs().sum(0)
    return primal, relative_gap(primal, b_sq - cx, r_sq, (c - Gx).abs().amax(0), lam)
