"""Bench sections on the Lasso solvers: ISTA against FISTA and the batched solver against scikit-learn (ista), the
deblurring job (deblur), and learned ISTA against ISTA and FISTA (lista)."""

from __future__ import annotations

import time

import numpy as np
import torch
from common import Context, Row, Section, cli_results, iteration_ratio, reached


def ista(context: Context) -> dict:
    """The Lasso solver: iterations to 1e-6 relative suboptimality on the literature's synthetic problem,
    and the batched solver against scikit-learn on 1,000 and 10,000 problems of one dictionary."""
    from experiments.lasso import first_iteration_within, solve

    g = torch.Generator().manual_seed(0)
    A = torch.randn(250, 500, generator=g, dtype=torch.float64)
    A /= A.norm(dim=0)
    x_true = torch.zeros(500, dtype=torch.float64)
    x_true[torch.randperm(500, generator=g)[:50]] = torch.randn(50, generator=g, dtype=torch.float64)
    b = A @ x_true + 0.01 * torch.randn(250, generator=g, dtype=torch.float64)
    lam = 0.1 * float((A.T @ b).abs().max())
    best = solve(A, b, lam, tol=1e-15, max_iter=100000).objective.min().item()
    iterations = {}
    for method in ("ista", "fista"):
        curve = solve(A, b, lam, method=method, tol=0.0, max_iter=5000).objective
        iterations[method] = first_iteration_within((curve - best) / best, 1e-6)  # None: not reached

    batched = [batched_lasso(rows, atoms, problems, g, loop=problems == 1000 and atoms == 128)
               for rows, atoms, problems in ((64, 128, 1000), (64, 128, 10000), (100, 256, 1000))]
    return {"synthetic_iterations_ista": iterations["ista"], "synthetic_iterations_fista": iterations["fista"],
            "batched": batched}


def best_of_3(run):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return min(times), out


def batched_lasso(rows: int, atoms: int, problems: int, g: torch.Generator, loop: bool) -> dict:
    """`problems` Lasso problems of one rows x atoms dictionary: lasso.lasso_gram (batched FISTA in Gram form, to
    a relative duality gap of 1e-4) against sparse_encode(lasso_cd) (and Lasso in a loop), best of 3 each."""
    from sklearn.decomposition import sparse_encode
    from sklearn.linear_model import Lasso

    from experiments.lasso import MatrixOperator, lasso_gram, objective

    D = torch.randn(atoms, rows, generator=g, dtype=torch.float64)  # scikit-learn's layout: atoms x features
    D /= D.norm(dim=1, keepdim=True)
    codes = torch.randn(problems, atoms, generator=g, dtype=torch.float64) * (torch.rand(problems, atoms, generator=g) < 0.1)
    X = codes @ D + 0.05 * torch.randn(problems, rows, generator=g, dtype=torch.float64)
    lam = 0.1 * float((X @ D.T).abs().max())
    operator, columns = MatrixOperator(D.T.contiguous()), X.T.contiguous()

    def total(code: torch.Tensor) -> float:
        return float(objective(operator, columns, code, lam).sum())

    sparse_encode_s, sk_codes = best_of_3(lambda: sparse_encode(X.numpy(), D.numpy(), algorithm="lasso_cd", alpha=lam,
                                                                max_iter=10000))
    gram_s, ours = best_of_3(lambda: lasso_gram(D.T.contiguous(), columns, lam, tol=1e-4, max_iter=20000))
    result = {"rows": rows, "atoms": atoms, "problems": problems, "gram_s": gram_s, "sparse_encode_s": sparse_encode_s,
              "gram_objective": total(ours.x), "sparse_encode_objective": total(torch.as_tensor(sk_codes.T))}
    if loop:
        start = time.perf_counter()
        loop_codes = np.stack([Lasso(alpha=lam / rows, fit_intercept=False, max_iter=10000).fit(D.T.numpy(), x).coef_
                               for x in X.numpy()])
        result |= {"lasso_loop_s": time.perf_counter() - start,
                   "lasso_loop_objective": total(torch.as_tensor(loop_codes.T))}
    return result


def ista_rows(r: dict) -> list[Row]:
    rows = [(("Lasso 250x500, lam = 0.1 lam_max: iterations to 1e-6 relative suboptimality, FISTA vs ISTA (references: "
              "61 and 135)"), iteration_ratio(r["synthetic_iterations_fista"], r["synthetic_iterations_ista"]),
             f"{reached(r['synthetic_iterations_fista'])} vs {reached(r['synthetic_iterations_ista'])}")]
    for b in r["batched"]:
        loop = "lasso_loop_s" in b
        rows.append((f"{b['problems']:,} Lasso problems of one {b['rows']}x{b['atoms']} dictionary: batched FISTA in "
                     "Gram form (lasso.lasso_gram) vs sparse_encode(lasso_cd)" + (" and vs Lasso in a loop" if loop else "")
                     + " (time; objective)",
                     f"{b['gram_s'] / b['sparse_encode_s']:.2f}x the time"
                     + (f", {b['gram_s'] / b['lasso_loop_s']:.2f}x" if loop else ""),
                     f"{b['gram_s']:.3f} s vs {b['sparse_encode_s']:.3f} s" + (f" vs {b['lasso_loop_s']:.2f} s" if loop else "")
                     + f"; objective {b['gram_objective']:.4f} vs {b['sparse_encode_objective']:.4f}"))
    return rows


def deblur(context: Context) -> dict:
    """The assignment's deblurring run, long enough to estimate F*, and its speed per dtype (and device)."""
    out = context.out
    fista, reference = (1000, 1000) if context.quick else (5000, 20000)
    job = cli_results(out / "deblur", ["task=deblur", f"task.ista_iterations={fista}", f"task.fista_iterations={fista}",
                                       f"task.reference_iterations={reference}"])
    speed = {"float64_cpu": (job["seconds_per_100_iterations_ista"], job["seconds_per_100_iterations_fista"])}
    for accelerator in ["cpu"] + (["gpu"] if torch.cuda.is_available() else []):
        for dtype in ("float32", "float64"):
            if (dtype, accelerator) == ("float64", "cpu"):
                continue
            short = cli_results(out / f"deblur_{dtype}_{accelerator}", [
                "task=deblur", f"task.dtype={dtype}", f"accelerator={accelerator}"])
            speed[f"{dtype}_{accelerator}"] = (short["seconds_per_100_iterations_ista"],
                                               short["seconds_per_100_iterations_fista"])
    keys = ("psnr_blurred", "psnr_ista", "psnr_fista", "objective_ista_at_1000", "objective_fista_at_100",
            "fista_iterations_to_1e-4", "fista_iterations_to_1e-6", "ista_iterations_to_1e-4", "ista_iterations_to_1e-6")
    return {**{k: job[k] for k in keys}, "seconds_per_100": speed, "fista_iterations": fista,
            "reference_iterations": reference}


def deblur_rows(r: dict) -> list[Row]:
    base = r["seconds_per_100"]["float64_cpu"]
    rows = [(("deblurring the 256x256 camera (lam 1e-5, Haar): FISTA's objective after 100 iterations vs ISTA's after "
              "1,000"), f"{r['objective_fista_at_100'] / r['objective_ista_at_1000']:.3f} of it",
             (f"{r['objective_fista_at_100']:.5f} vs {r['objective_ista_at_1000']:.5f}; PSNR blurred "
              f"{r['psnr_blurred']:.2f} dB, ISTA {r['psnr_ista']:.2f} dB, FISTA {r['psnr_fista']:.2f} dB after "
              f"{r['fista_iterations']:,}"))]
    for level in ("1e-4", "1e-6"):
        fista, ista_n = r[f"fista_iterations_to_{level}"], r.get(f"ista_iterations_to_{level}")
        rows.append(((f"deblurring: iterations to {level} relative suboptimality, FISTA vs ISTA (F* from "
                      f"{r['reference_iterations']:,} more; reference target for FISTA: within "
                      f"{'1,000' if level == '1e-4' else '5,000'})"), iteration_ratio(fista, ista_n),
                     f"{reached(fista)} vs {reached(ista_n)} (of {r['fista_iterations']:,})"))
    for setting, (ista_s, fista_s) in r["seconds_per_100"].items():
        if setting != "float64_cpu":
            rows.append(((f"deblurring 256x256: seconds per 100 FISTA iterations, {setting.replace('_', ' on ')} vs "
                          "float64 on cpu"), f"{fista_s / base[1]:.2f}x the time",
                         f"{fista_s:.3f} s vs {base[1]:.3f} s (ISTA: {ista_s:.3f} s vs {base[0]:.3f} s)"))
    return rows


def lista(context: Context) -> dict:
    """The default task=lista job (250x500 synthetic set, 16 layers)."""
    small = ["task.problem.train_size=1000", "task.problem.test_size=200", "trainer.max_epochs=3"] if context.quick else []
    job = cli_results(context.out / "lista", ["task=lista", *small])
    return {k: job[k] for k in ("nmse_db_lista", "nmse_db_ista", "nmse_db_fista", "layers",
                                "fista_iterations_to_match_lista", "ista_iterations_to_match_lista")} | {
        "fit_s": job["seconds"]["fit"], "targets_s": job["seconds"]["targets"]}


def lista_rows(r: dict) -> list[Row]:
    return [((f"LISTA, {r['layers']} layers, vs {r['layers']} iterations of FISTA and ISTA (code NMSE against the true "
              "x, 250x500 synthetic set)"), (f"{r['nmse_db_lista'] - r['nmse_db_fista']:+.2f} dB vs FISTA, "
                                             f"{r['nmse_db_lista'] - r['nmse_db_ista']:+.2f} dB vs ISTA"),
             (f"{r['nmse_db_lista']:.2f} vs {r['nmse_db_fista']:.2f} vs {r['nmse_db_ista']:.2f} dB; FISTA needs "
              f"{reached(r['fista_iterations_to_match_lista'])} iterations and ISTA "
              f"{reached(r['ista_iterations_to_match_lista'])} to match (training {r['fit_s']:.0f} s)"))]


SECTIONS = {"ista": Section(ista, ista_rows), "deblur": Section(deblur, deblur_rows), "lista": Section(lista, lista_rows)}
