"""task=lista (chosen by model=lista): Lasso problems -> the solver's codes -> train LISTA on them -> its code
error after T layers against ISTA's and FISTA's after T iterations."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from experiments import lasso, plots
from experiments.accelerators import device_for
from experiments.cache import save_entry
from experiments.data import ImageDataModule, batches
from experiments.errors import UserError, check_types
from experiments.jobs import MIN, JobKind
from experiments.models.learned_ista import LISTA, nmse_db
from experiments.training import Job, check_trainer, train_model

log = logging.getLogger(__name__)

@dataclass
class LassoProblems:
    """Signals b = A x as columns, for training and for the comparison; the true x where known."""

    dictionary: torch.Tensor  # A (m, n), unit-norm columns
    train: torch.Tensor  # (m, N)
    test: torch.Tensor  # (m, N_test)
    test_truth: torch.Tensor | None  # (n, N_test)
    train_truth: torch.Tensor | None = None  # (n, N)


def synthetic_problems(rows: int, atoms: int, nonzeros: float, train_size: int, test_size: int, seed: int) -> LassoProblems:
    """The LISTA literature's set: A Gaussian with unit-norm columns, x with a `nonzeros` fraction of N(0, 1)
    entries (Bernoulli-Gaussian), b = A x without noise."""
    generator = torch.Generator().manual_seed(seed)
    A = torch.randn(rows, atoms, generator=generator)
    A = A / A.norm(dim=0)
    size = train_size + test_size
    x = torch.randn(atoms, size, generator=generator) * (torch.rand(atoms, size, generator=generator) < nonzeros)
    b = A @ x
    return LassoProblems(A, b[:, :train_size], b[:, train_size:], x[:, train_size:], x[:, :train_size])


def overcomplete_dct(patch_size: int, atoms: int) -> torch.Tensor:
    """The overcomplete 2-D DCT dictionary of sparse-coding papers (Elad and Aharon 2006): the outer
    products of sqrt(atoms) sampled cosines per axis, DC removed from all but the first, unit-norm columns."""
    check_dct_atoms(patch_size, atoms)
    per_axis = math.isqrt(atoms)
    k = torch.arange(per_axis, dtype=torch.float64)
    one_d = torch.cos(torch.outer(torch.arange(patch_size, dtype=torch.float64), k) * math.pi / per_axis)
    one_d[:, 1:] -= one_d[:, 1:].mean(0)
    two_d = torch.einsum("ia,jb->ijab", one_d, one_d).reshape(patch_size**2, atoms)
    return (two_d / two_d.norm(dim=0)).float()


def check_dct_atoms(patch_size: int, atoms: int) -> None:
    per_axis = math.isqrt(atoms) if atoms >= 0 else 0
    if per_axis * per_axis != atoms or per_axis < patch_size:
        raise UserError(f"model.problem.atoms={atoms} must be a square of at least patch_size^2 "
                        f"({patch_size**2}) for the DCT dictionary, e.g. {4 * patch_size**2}")


def random_patches(images: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` size x size patches (first channel) at random places of random images, as columns."""
    _, _, height, width = images.shape
    if size > min(height, width):
        raise UserError(f"model.problem.patch_size={size} is larger than the {height}x{width} images")
    which = torch.randint(len(images), (count,), generator=generator)
    top = torch.randint(height - size + 1, (count,), generator=generator)
    left = torch.randint(width - size + 1, (count,), generator=generator)
    rows = (top[:, None] + torch.arange(size))[:, :, None]
    cols = (left[:, None] + torch.arange(size))[:, None, :]
    return images[which[:, None, None], 0, rows, cols].reshape(count, -1).T


def patch_problems(data: ImageDataModule, patch_size: int, atoms: int, train_size: int, test_size: int, seed: int) -> LassoProblems:
    """Patches of the fit images to train on, of the eval images to compare on, in the DCT dictionary."""
    generator = torch.Generator().manual_seed(seed)
    train = random_patches(data.fit_images, patch_size, train_size, generator)
    test = random_patches(data.eval_images, patch_size, test_size, generator)
    return LassoProblems(overcomplete_dct(patch_size, atoms), train, test, None)


PROBLEMS = ("synthetic", "patches")
TARGETS = ("solver", "truth")
# Keys of the model config that describe the problems and the training, not LISTA's own parameters.
JOB_KEYS = ("problem", "batch_size", "target")


def check(cfg: DictConfig, data: ImageDataModule | None) -> None:
    """Every setting of the problems, the targets and LISTA itself, before any solving or training."""
    if not issubclass(get_class(cfg.model._target_), LISTA):
        raise UserError(f"task=lista trains learned ISTA, and {cfg.model._target_} is not it; use model=lista")
    model, problem = cfg.model, cfg.model.problem
    check_types(model, "model", whole=("layers", "batch_size"), real=("lam", "lr"))
    check_types(problem, "model.problem", whole=("train_size", "test_size", "target_iterations", "compare_iterations",
                                                 "rows", "atoms", "patch_size"), real=("target_tol", "nonzeros"))
    if problem.kind not in PROBLEMS:
        raise UserError(f"model.problem.kind={problem.kind!r} is not one of {', '.join(PROBLEMS)}")
    if model.target not in TARGETS or (model.target == "truth" and problem.kind != "synthetic"):
        raise UserError(f"model.target={model.target!r}: use solver, or truth with model.problem.kind=synthetic")
    if model.layers < 1:
        raise UserError(f"model.layers must be at least 1, got {model.layers}")
    if model.lam < 0 or model.lr <= 0:
        raise UserError(f"model.lam must be >= 0 and model.lr > 0, got {model.lam} and {model.lr}")
    if model.batch_size < 1:
        raise UserError(f"model.batch_size must be at least 1, got {model.batch_size}")
    if min(problem.train_size, problem.test_size) < 1:
        raise UserError("model.problem.train_size and test_size must be at least 1")
    if min(problem.target_iterations, problem.compare_iterations) < 1 or problem.target_tol < 0:
        raise UserError("model.problem.target_iterations and compare_iterations must be at least 1, target_tol >= 0")
    check_trainer(cfg.trainer)
    if problem.kind == "synthetic":
        if not 0 < problem.nonzeros <= 1:
            raise UserError(f"model.problem.nonzeros must be a fraction in (0, 1], got {problem.nonzeros}")
        if min(problem.rows, problem.atoms) < 1:
            raise UserError("model.problem.rows and atoms must be at least 1")
    else:
        assert data is not None
        check_dct_atoms(problem.patch_size, problem.atoms)
        _, _, height, width = data.fit_images.shape
        if not 1 <= problem.patch_size <= min(height, width):
            raise UserError(f"model.problem.patch_size={problem.patch_size} does not fit the {height}x{width} images")


def make_problems(problem: DictConfig, data: ImageDataModule | None, seed: int) -> LassoProblems:
    if problem.kind == "synthetic":
        return synthetic_problems(problem.rows, problem.atoms, problem.nonzeros, problem.train_size,
                                  problem.test_size, seed)
    assert data is not None
    return patch_problems(data, problem.patch_size, problem.atoms, problem.train_size, problem.test_size, seed)


def solver_codes(problems: LassoProblems, signals: torch.Tensor, lam: float, problem: DictConfig,
                 device: torch.device) -> lasso.LassoResult:
    """The targets: batched FISTA in Gram form on `device`, each signal run to `target_tol` (relative duality
    gap); the codes stay on that device."""
    result = lasso.lasso_gram(problems.dictionary.to(device), signals.to(device), lam, max_iter=problem.target_iterations,
                             tol=problem.target_tol, progress=f"FISTA codes of {signals.shape[1]} signals")
    log.info("solver codes of %d signals: %d FISTA iterations, converged=%s", signals.shape[1], result.n_iter,
             result.converged)
    return result


def error_curves(problems: LassoProblems, lam: float, iterations: int, references: dict[str, torch.Tensor],
                 device: torch.device) -> dict[str, list[float]]:
    """NMSE (dB) of ISTA's and FISTA's iterates (run on `device`) against each reference, for iterations
    1..`iterations`."""
    curves: dict[str, list[float]] = {}
    on_device = {name: reference.to(device) for name, reference in references.items()}
    for method in ("ista", "fista"):
        errors = iterate_errors(problems, lam, method, iterations, on_device)
        curves |= {f"{method}_vs_{name}": curve for name, curve in errors.items()}
    return curves


def iterate_errors(problems: LassoProblems, lam: float, method: str, iterations: int,
                   references: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """One solver's NMSE (dB) against each reference, at every iteration."""
    errors: dict[str, list[float]] = {name: [] for name in references}

    def record(iteration: int, x: torch.Tensor) -> None:
        for name, reference in references.items():
            errors[name].append(nmse_db(x, reference))

    device = next(iter(references.values())).device
    lasso.solve(problems.dictionary.to(device), problems.test.to(device), lam, method=method, max_iter=iterations, tol=0,
               callback=record)
    return errors


def run(job: Job, plan: None) -> dict[str, Any]:
    cfg, timer, tracker = job.cfg, job.timer, job.tracker
    problem, lam, layers = cfg.model.problem, cfg.model.lam, cfg.model.layers
    device = device_for(cfg.trainer.accelerator)  # targets, training and comparisons all run there
    with timer("problems"):
        problems = make_problems(problem, job.data, cfg.seed)
    with timer("targets"):
        solved = {"test": solver_codes(problems, problems.test, lam, problem, device)}
        targets_device = str(solved["test"].x.device)
        test_targets = solved["test"].x.cpu()
        if cfg.model.target == "solver":
            solved["train"] = solver_codes(problems, problems.train, lam, problem, device)
            train_targets, val_targets = solved["train"].x.cpu(), test_targets
        else:  # the literature's supervised setting
            train_targets, val_targets = problems.train_truth, problems.test_truth

    model = instantiate(DictConfig({k: v for k, v in cfg.model.items() if k not in JOB_KEYS}), dictionary=problems.dictionary)
    with timer("fit"):
        history = train_model(
            cfg.trainer, model, tracker.logger, job.checkpoint(), cfg.resume,
            train_dataloaders=batches((problems.train.T, train_targets.T), cfg.model.batch_size, shuffle=True, seed=cfg.seed),
            val_dataloaders=batches((problems.test.T, val_targets.T), 1024, shuffle=False),
        )
    checkpoint = job.dir / "model.pt"
    save_entry({"state_dict": model.state_dict(), "history": history, "dictionary": problems.dictionary}, checkpoint)

    with timer("compare"):
        references = {"solver": test_targets, **({"truth": problems.test_truth} if problems.test_truth is not None else {})}
        curves = error_curves(problems, lam, problem.compare_iterations * layers, references, device)
        model.to(device).eval()
        with torch.no_grad():
            per_layer = model(problems.test.to(model.device), all_layers=True)
        for name, reference in references.items():
            curves[f"lista_vs_{name}"] = [nmse_db(z.cpu(), reference) for z in per_layer]

    score = "truth" if "truth" in references else "solver"
    rows, results = [], {}
    for method in ("lista", "ista", "fista"):
        for name in references:
            value = curves[f"{method}_vs_{name}"][layers - 1]
            rows.append([method, layers, name, round(value, 3)])
            results[f"{method}_nmse_db_vs_{name}"] = value
    lista_error = results[f"lista_nmse_db_vs_{score}"]
    results |= {f"nmse_db_{method}": results[f"{method}_nmse_db_vs_{score}"] for method in ("lista", "ista", "fista")}
    for method in ("ista", "fista"):  # how long the solvers take to do what T layers do
        results[f"{method}_iterations_to_match_lista"] = lasso.first_iteration_within(curves[f"{method}_vs_{score}"], lista_error)
    results |= {
        "layers": layers, "lam": lam, "problem": problem.kind, "trained_on": cfg.model.target, "scored_against": score,
        "dictionary_shape": list(problems.dictionary.shape), "train_size": problem.train_size,
        "test_size": problem.test_size, "tied": cfg.model.tied, "seed": cfg.seed,
        "final_val_loss": history[-1].get("val/loss") if history else None,
        "targets_converged": all(r.converged for r in solved.values()),  # FISTA reached target_tol
        "model": job.choices.get("model"), "checkpoint": str(checkpoint),
        "devices": {"targets": targets_device, "compare": str(model.device)},  # where the stages ran
    }

    results["model_artifact"] = tracker.log_model(checkpoint, job.key, False, {"model": job.choices.get("model")})

    with timer("plots"):
        tracker.log_table("code_error", ["method", "iterations_or_layers", "against", "nmse_db"], rows)
        tracker.log_figure("code_error", plots.code_error_figure, curves, layers)
        log_error_chart(tracker, curves)
    log.info("NMSE vs %s after %d: LISTA %.2f dB, ISTA %.2f dB, FISTA %.2f dB", score, layers, lista_error,
             results[f"ista_nmse_db_vs_{score}"], results[f"fista_nmse_db_vs_{score}"])
    return results


def log_error_chart(tracker: Any, curves: dict[str, list[float]]) -> None:
    """The curves as one W&B line chart (the panel that the code_error figure mirrors)."""
    if tracker.wandb_run is None:
        return
    import wandb

    names = list(curves)
    tracker.log({"code_error_chart": wandb.plot.line_series(
        xs=[list(range(1, len(curves[n]) + 1)) for n in names], ys=[curves[n] for n in names], keys=names,
        title="code NMSE (dB) against iterations / layers", xname="iteration or layer")})


KIND = JobKind(
    name="lista",
    tagged_by=("model",),
    # Code error in dB: lower is better.
    scores={"nmse_db_lista": MIN, "nmse_db_fista": MIN, "nmse_db_ista": MIN, "final_val_loss": MIN},
    columns=[
        ("LISTA NMSE (dB)", "nmse_db_lista"),
        ("FISTA NMSE (dB)", "nmse_db_fista"),
        ("ISTA NMSE (dB)", "nmse_db_ista"),
        ("layers", "layers"),
        ("problem", "problem"),
        ("against", "scored_against"),
        ("tied", "tied"),
        ("fista_iterations_to_match_lista", "fista_iterations_to_match_lista"),
        ("ista_iterations_to_match_lista", "ista_iterations_to_match_lista"),
    ],
    labelled_by=("layers", "problem"),
    needs_data=lambda cfg: OmegaConf.select(cfg, "model.problem.kind") == "patches",
    check=check,
    run=run,
    shown=("nmse_db_ista", "nmse_db_fista"),
)
