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
from experiments.errors import UserError

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

    backtracking = step == "backtracking"
    if step is None:
        L = lipschitz_constant(operator, n, b2)
        if L == 0.0:
            raise UserError("A: its norm estimate is zero (an all-zero operator); nothing to solve")
    elif backtracking:
        L = 1.0
    else:
        L = 1.0 / float(step)

    # A x is kept beside x, and A y = A x_k + beta (A x_k - A x_{k-1}) by linearity: one application of A and
    # one of its adjoint per iteration (two of A without this).
    y, t = x.clone(), 1.0
    Ax = operator(x)
    Ay = Ax
    history, gap, converged = [], float("inf"), False
    bar = progress_bar(max_iter, progress or "", enabled=progress is not None)
    for iteration in range(1, max_iter + 1):
        point, A_point = (y, Ay) if method == "fista" else (x, Ax)
        residual = A_point - b2
        grad = operator.adjoint(residual)
        f_point = 0.5 * float((residual * residual).sum())
        while True:
            x_new = soft_threshold(point - grad / L, lam / L)
            Ax_new = operator(x_new)  # the line search's test and the next iteration both need it
            if not backtracking or sufficient_decrease(b2, f_point, point, x_new, Ax_new, grad, L):
                break
            L *= 2.0
        if method == "fista":
            t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
            beta = (t - 1) / t_new
            y, Ay = x_new + beta * (x_new - x), Ax_new + beta * (Ax_new - Ax)
            t = t_new
        change = float(torch.linalg.vector_norm(x_new - x) / torch.clamp(torch.linalg.vector_norm(x_new), min=1e-300))
        x, Ax = x_new, Ax_new
        if callback is not None:
            callback(iteration, x[:, 0] if single else x)
        with_gap = stop == "gap" and (tol > 0 or iteration == max_iter)
        primal, relative_gap = objective_and_gap(operator, b2, x, lam, with_gap=with_gap, Ax=Ax)
        history.append(float(primal.sum()))
        gap = float(relative_gap.max()) if relative_gap is not None else change
        bar.update()
        if progress is not None and iteration % 50 == 0:
            bar.set_postfix(objective=f"{history[-1]:.6g}", refresh=False)
        if tol > 0 and gap <= tol:
            converged = True
            break
    bar.close()
    if tol <= 0:
        log.debug("%s ran its %d iterations (tol=0); final %s %.3g", method, max_iter,
                 "relative gap" if stop == "gap" else "relative change", gap)
    elif not converged:
        log.warning("%s stopped after %d iterations without converging: %s %.3g > tol %.3g",
                    method, max_iter, "relative gap" if stop == "gap" else "relative change", gap, tol)
    x_out = x[:, 0] if single else x
    return LassoResult(x_out, torch.tensor(history, dtype=torch.float64), iteration, converged, gap)


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
        raise UserError(f"method={method!r} is not one of ista, fista")
    if stop not in ("gap", "change"):
        raise UserError(f"stop={stop!r} is not one of gap, change")
    if lam < 0:
        raise UserError(f"lam must be >= 0, got {lam}")
    if tol < 0:
        raise UserError(f"tol must be >= 0 (0: run all max_iter iterations), got {tol}")
    if max_iter < 1:
        raise UserError(f"max_iter must be at least 1, got {max_iter}")
    if b.dim() not in (1, 2):
        raise UserError(f"b must be a signal (m,) or a batch of columns (m, k), got shape {tuple(b.shape)}")
    if not torch.isfinite(b).all():
        raise UserError("b contains NaN or inf values")
    if isinstance(A, torch.Tensor):
        if A.dim() != 2 or A.shape[0] != b.shape[0]:
            raise UserError(f"A is {tuple(A.shape)} but b has {b.shape[0]} rows; A must be (m, n) with m = len(b)")
    elif x0 is None and n_features is None:
        raise UserError("A is an operator: give x0 or n_features so the length of x is known")


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
    """
    if not isinstance(A, torch.Tensor):
        raise UserError("lasso_gram needs A as a matrix (use solve for a linear operator)")
    check_inputs(A, B, lam, "fista", max_iter, tol, "gap", x0, None)
    if check_every < 1:
        raise UserError(f"check_every must be at least 1, got {check_every}")
    single = B.dim() == 1
    B2 = B.unsqueeze(1) if single else B
    G = A.T @ A
    C = A.T @ B2
    b_sq = (B2 * B2).sum(0)
    L = float(torch.linalg.eigvalsh(G.double())[-1])
    if L == 0.0:
        raise UserError("A: its norm is zero (an all-zero matrix); nothing to solve")
    step, threshold = 1.0 / L, lam / L

    X = torch.zeros_like(C) if x0 is None else (x0.unsqueeze(1) if single else x0).clone().to(C)
    active = torch.arange(C.shape[1], device=C.device)  # the batch's columns still being solved
    x, y, c, bb = X.clone(), X.clone(), C, b_sq
    t = torch.ones(C.shape[1], dtype=C.dtype, device=C.device)
    history, gap, converged = [], torch.full_like(b_sq, float("inf")), False
    bar = progress_bar(max_iter, progress or "", enabled=progress is not None)
    for iteration in range(1, max_iter + 1):
        z = torch.addmm(y, G, y, alpha=-step).add_(c, alpha=step)  # y - (G y - A^T b) / L
        x_new = soft_threshold(z, threshold)
        uphill = ((y - x_new) * (x_new - x)).sum(0) > 0
        t = torch.where(uphill, torch.ones_like(t), t)
        t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        y = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
        bar.update()
        last = iteration == max_iter
        if (tol > 0 and iteration % check_every == 0) or last:
            primal, column_gap = gram_objective_and_gap(G, c, bb, x, lam)
            history.append(float(primal.sum()))
            gap[active] = column_gap
            done = column_gap <= tol if tol > 0 else torch.zeros_like(column_gap, dtype=torch.bool)
            X[:, active] = x
            if done.any():
                keep = ~done
                active, x, y, t, c, bb = active[keep], x[:, keep], y[:, keep], t[keep], c[:, keep], bb[keep]
                bar.set_postfix(columns_left=len(active), refresh=False)
            if len(active) == 0:
                converged = True
                break
    bar.close()
    worst = float(gap.max())
    if tol > 0 and not converged:
        log.warning("fista (Gram form) stopped after %d iterations without converging: %d of %d columns above "
                    "tol %.3g (largest relative gap %.3g)", max_iter, len(active), C.shape[1], tol, worst)
    x_out = X[:, 0] if single else X
    return LassoResult(x_out, torch.tensor(history, dtype=torch.float64), iteration, converged, worst)


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
