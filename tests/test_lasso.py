"""ISTA / FISTA against scikit-learn's Lasso, the KKT conditions, and the bad inputs."""

import logging

import pytest
import torch
from sklearn.linear_model import Lasso

from experiments.lasso import MatrixOperator, first_iteration_within, lasso_gram, objective, objective_and_gap, solve


def problem(m=60, n=100, k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=g, dtype=torch.float64)
    A = A / A.norm(dim=0)
    x_true = torch.zeros(n, dtype=torch.float64)
    x_true[torch.randperm(n, generator=g)[: n // 10]] = torch.randn(n // 10, generator=g, dtype=torch.float64)
    b = A @ x_true + 0.01 * torch.randn(m, generator=g, dtype=torch.float64)
    if k:
        b = torch.stack([b] + [A @ torch.randn(n, generator=g, dtype=torch.float64) for _ in range(k - 1)], 1)
    return A, b


def lam_max(A, b):
    return float((A.T @ b).abs().max())


@pytest.mark.parametrize("method", ["ista", "fista"])
@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_reaches_scikit_learns_lasso_optimum(method, fraction):
    A, b = problem()
    lam = fraction * lam_max(A, b)
    result = solve(A, b, lam, method=method, max_iter=20000, tol=1e-10)
    assert result.converged
    # scikit-learn's Lasso minimises 1/(2 n_rows) ||b - Ax||^2 + alpha ||x||_1, so alpha = lam / n_rows
    sk = Lasso(alpha=lam / A.shape[0], fit_intercept=False, tol=1e-14, max_iter=200000).fit(A.numpy(), b.numpy())
    ours = objective(MatrixOperator(A), b.unsqueeze(1), result.x.unsqueeze(1), lam).item()
    theirs = objective(MatrixOperator(A), b.unsqueeze(1), torch.as_tensor(sk.coef_).unsqueeze(1), lam).item()
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert ours <= theirs * (1 + 1e-9)


def test_the_solution_satisfies_the_kkt_conditions():
    A, b = problem(seed=1)
    lam = 0.1 * lam_max(A, b)
    x = solve(A, b, lam, max_iter=20000, tol=1e-12).x
    correlation = A.T @ (b - A @ x)
    assert (correlation.abs() <= lam * (1 + 1e-6)).all()
    support = x.abs() > 1e-10
    assert support.any()
    assert torch.allclose(correlation[support], lam * torch.sign(x[support]), rtol=1e-5)


def test_a_batch_of_columns_is_solved_as_each_column_alone():
    A, B = problem(k=4, seed=2)
    lam = 0.2 * lam_max(A, B[:, 0])
    together = solve(A, B, lam, tol=1e-10, max_iter=5000).x
    for j in range(4):
        alone = solve(A, B[:, j], lam, tol=1e-10, max_iter=5000).x
        assert torch.allclose(together[:, j], alone, atol=1e-6)


class Convolution:
    """A 1-D 'same' convolution as an operator: A(x) = k * x, adjoint = correlation."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __call__(self, x):
        return torch.nn.functional.conv1d(x.T.unsqueeze(1), self.kernel.flip(-1).view(1, 1, -1), padding=1).squeeze(1).T

    def adjoint(self, y):
        return torch.nn.functional.conv1d(y.T.unsqueeze(1), self.kernel.view(1, 1, -1), padding=1).squeeze(1).T


def test_an_operator_gives_the_same_solution_as_its_matrix():
    kernel = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    n = 40
    matrix = torch.stack([Convolution(kernel)(torch.eye(n, dtype=torch.float64)[:, [i]])[:, 0] for i in range(n)], 1)
    signal = torch.zeros(n, dtype=torch.float64)
    signal[[5, 17, 30]] = torch.tensor([1.0, -2.0, 1.5], dtype=torch.float64)
    b = matrix @ signal
    via_matrix = solve(matrix, b, 0.01, tol=1e-10, max_iter=20000).x
    via_operator = solve(Convolution(kernel), b, 0.01, tol=1e-10, max_iter=20000, n_features=n).x
    assert torch.allclose(via_matrix, via_operator, atol=1e-6)


def test_backtracking_finds_the_same_optimum_without_knowing_l():
    A, b = problem(seed=3)
    lam = 0.1 * lam_max(A, b)
    known = solve(A, b, lam, tol=1e-10, max_iter=20000)
    searched = solve(A, b, lam, tol=1e-10, max_iter=20000, step="backtracking")
    assert searched.converged and searched.objective[-1] == pytest.approx(known.objective[-1].item(), rel=1e-8)


def test_fista_needs_fewer_iterations_than_ista_on_the_literatures_synthetic_lasso():
    A, b = problem(m=250, n=500, seed=4)
    lam = 0.1 * lam_max(A, b)
    best = solve(A, b, lam, tol=1e-14, max_iter=50000).objective[-1].item()
    iterations = {}
    for method in ("ista", "fista"):
        curve = solve(A, b, lam, method=method, tol=0.0, max_iter=3000).objective
        iterations[method] = first_iteration_within((curve - best) / best, 1e-6)
    assert iterations["fista"] is not None and iterations["ista"] is not None, "both reach 1e-6 within 3000"
    assert iterations["fista"] < iterations["ista"]


def test_a_level_never_reached_has_no_first_iteration():
    assert first_iteration_within([3.0, 2.0, 1.5], 1.0) is None, "not iteration 1, as np.argmax would say"
    assert first_iteration_within([3.0, 2.0, 1.0, 0.5], 1.0) == 3
    assert first_iteration_within(torch.tensor([0.5]), 1.0) == 1


def test_a_solver_that_runs_out_of_iterations_says_so(caplog):
    A, b = problem(seed=5)
    with caplog.at_level(logging.WARNING):
        result = solve(A, b, 0.01 * lam_max(A, b), method="ista", max_iter=5, tol=1e-12)
    assert not result.converged and result.n_iter == 5 and len(result.objective) == 5
    assert "without converging" in caplog.text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lam": -1.0}, "lam must be >= 0"),
        ({"max_iter": 0}, "max_iter"),
        ({"b": torch.tensor([1.0, float("nan")], dtype=torch.float64)}, "NaN or inf"),
        ({"b": torch.ones(7, dtype=torch.float64)}, "A is (60, 100) but b has 7 rows"),
        ({"A": torch.zeros(60, 100, dtype=torch.float64)}, "norm estimate is zero"),
        ({"method": "admm"}, "method='admm'"),
    ],
)
def test_bad_inputs_are_refused_by_name(kwargs, message):
    A, b = problem()
    args = {"A": A, "b": b, "lam": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        solve(args.pop("A"), args.pop("b"), args.pop("lam"), **args)


@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_the_gram_form_solves_every_column_to_its_gap_and_agrees_with_scikit_learn(fraction):
    from sklearn.decomposition import sparse_encode

    A, b = problem(m=40, n=90, k=25, seed=3)
    lam = fraction * lam_max(A, b)
    result = lasso_gram(A, b, lam, tol=1e-8, max_iter=20000, check_every=7)
    assert result.converged
    _, gaps = objective_and_gap(MatrixOperator(A), b, result.x, lam)  # recomputed from the residual itself
    assert float(gaps.max()) <= 1e-8
    sk = sparse_encode(b.T.numpy(), A.T.numpy(), algorithm="lasso_cd", alpha=lam, max_iter=100000)
    ours, theirs = (objective(MatrixOperator(A), b, x, lam) for x in (result.x, torch.as_tensor(sk.T)))
    assert torch.allclose(ours, theirs, rtol=1e-6)
    assert not torch.allclose(result.x[:, 0], result.x[:, 1])  # the columns were not mixed up when dropped


def test_the_gram_form_goes_on_from_a_warm_start_and_runs_all_iterations_with_tol_0():
    A, b = problem(k=6)
    lam = 0.1 * lam_max(A, b)
    solved = lasso_gram(A, b, lam, tol=1e-10, max_iter=20000)
    fixed = lasso_gram(A, b, lam, tol=0, max_iter=30)
    assert fixed.n_iter == 30 and not fixed.converged
    warm = lasso_gram(A, b, lam, tol=1e-10, max_iter=20000, x0=solved.x)
    assert warm.n_iter <= 10  # already optimal: stops at the first check
    single = lasso_gram(A, b[:, 2], lam, tol=1e-10, max_iter=20000)
    assert single.x.shape == (A.shape[1],) and torch.allclose(single.x, solved.x[:, 2], atol=1e-6)


def test_the_gram_form_that_runs_out_of_iterations_says_which_columns(caplog):
    A, b = problem(k=3)
    with caplog.at_level(logging.WARNING):
        result = lasso_gram(A, b, 0.01 * lam_max(A, b), tol=1e-12, max_iter=20)
    assert not result.converged and result.gap > 1e-12
    assert "columns above tol" in caplog.text


def test_in_float32_a_tol_below_what_it_resolves_stops_at_its_rounding_floor_and_says_so(caplog):
    g = torch.Generator().manual_seed(2)
    D = torch.randn(64, 128, generator=g, dtype=torch.float64)
    D /= D.norm(dim=0)
    codes = torch.randn(128, 500, generator=g, dtype=torch.float64) * (torch.rand(128, 500, generator=g) < 0.1)
    B = D @ codes + 0.05 * torch.randn(64, 500, generator=g, dtype=torch.float64)
    lam = 0.02 * lam_max(D, B)
    with caplog.at_level(logging.INFO):
        single = lasso_gram(D.float(), B.float(), lam, tol=1e-6, max_iter=5000)
    assert single.n_iter < 500, "it stops where float32 stops improving, not at max_iter"
    assert single.converged and 1e-6 < single.gap < 1e-4
    (line,) = [r.message for r in caplog.records if "stopped at the relative gap float32 can resolve" in r.message]
    assert "above tol 1e-06; float64 resolves smaller gaps" in line
    double = lasso_gram(D, B, lam, tol=1e-6, max_iter=5000)
    assert double.converged and double.gap <= 1e-6, "float64 reaches it"
    float64_objective = objective(MatrixOperator(D), B, double.x, lam).sum()
    float32_objective = objective(MatrixOperator(D), B, single.x.double(), lam).sum()
    assert float32_objective <= float64_objective * (1 + 1e-4), "as close to the optimum as its gaps say"


def test_the_gram_form_needs_a_matrix():
    A, b = problem()
    with pytest.raises(TypeError, match="needs A as a matrix"):
        lasso_gram(MatrixOperator(A), b, 0.1, tol=1e-6)


def test_short_work_draws_no_progress_bar(capsys):
    A, b = problem(k=4)
    solve(A, b, 0.1 * lam_max(A, b), tol=0, max_iter=200, progress="FISTA")  # far below the bar's 2 s delay
    lasso_gram(A, b, 0.1 * lam_max(A, b), tol=1e-6, progress="FISTA")
    assert capsys.readouterr().err == ""
