"""task=lista: Lasso problems (task.problem) -> the solver's codes -> train LISTA (model=lista) on them -> its code
error after T layers against ISTA's and FISTA's after T iterations."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from experiments import lasso, plots
from experiments.accelerators import device_for
from experiments.cache import save_entry
from experiments.data import ImageDataModule, batches
from experiments.errors import UserError, build, check_types, target_class
from experiments.jobs import MIN, JobKind
from experiments.models.learned_ista import LISTA, nmse_db
from experiments.training import Job, check_optimizer, check_trainer, train_model

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
        raise UserError(f"task.problem.atoms={atoms} must be a square of at least patch_size^2 "
                        f"({patch_size**2}) for the DCT dictionary, e.g. {4 * patch_size**2}")


def random_patches(images: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` size x size patches (first channel) at random places of random images, as columns."""
    _, _, height, width = images.shape
    if size > min(height, width):
        raise UserError(f"task.problem.patch_size={size} is larger than the {height}x{width} images")
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


def check(cfg: DictConfig, data: ImageDataModule | None) -> None:
    """Every setting of the problems, the targets and LISTA itself, before any solving or training."""
    target = target_class("model", cfg.model)
    if not (isinstance(target, type) and issubclass(target, LISTA)):
        raise UserError(f"task=lista trains learned ISTA, and {cfg.model._target_} is not it; use model=lista")
    task, problem = cfg.task, cfg.task.problem
    check_types(task, "task", whole=("batch_size",), real=("lam",))
    check_types(problem, "task.problem", whole=("train_size", "test_size", "target_iterations", "compare_iterations",
                                                "rows", "atoms", "patch_size"), real=("target_tol", "nonzeros"))
    if problem.kind not in PROBLEMS:
        raise UserError(f"task.problem.kind={problem.kind!r} is not one of {', '.join(PROBLEMS)}")
    if task.target not in TARGETS or (task.target == "truth" and problem.kind != "synthetic"):
        raise UserError(f"task.target={task.target!r}: use solver, or truth with task.problem.kind=synthetic")
    if task.lam < 0:
        raise UserError(f"task.lam must be >= 0, got {task.lam}")
    if task.batch_size < 1:
        raise UserError(f"task.batch_size must be at least 1, got {task.batch_size}")
    if min(problem.train_size, problem.test_size) < 1:
        raise UserError("task.problem.train_size and test_size must be at least 1")
    if min(problem.target_iterations, problem.compare_iterations) < 1 or problem.target_tol < 0:
        raise UserError("task.problem.target_iterations and compare_iterations must be at least 1, target_tol >= 0")
    rows = check_problem_size(problem, data)
    # LISTA itself, on a stand-in dictionary of the problems' shape (the real one is drawn in run)
    check_optimizer(build("model", cfg.model, dictionary=torch.eye(rows, problem.atoms), lam=task.lam))
    check_trainer(cfg.trainer)


def check_problem_size(problem: DictConfig, data: ImageDataModule | None) -> int:
    """The problems' sizes against each other (and the images'); returns the signals' length."""
    if problem.kind == "synthetic":
        if not 0 < problem.nonzeros <= 1:
            raise UserError(f"task.problem.nonzeros must be a fraction in (0, 1], got {problem.nonzeros}")
        if min(problem.rows, problem.atoms) < 1:
            raise UserError("task.problem.rows and atoms must be at least 1")
        return problem.rows
    assert data is not None
    check_dct_atoms(problem.patch_size, problem.atoms)
    _, _, height, width = data.fit_images.shape
    if not 1 <= problem.patch_size <= min(height, width):
        raise UserError(f"task.problem.patch_size={problem.patch_size} does not fit the {height}x{width} images")
    return problem.patch_size**2


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


@dataclass
class Targets:
    """What LISTA is trained on and scored against: the solver's codes or the true x."""

    train: torch.Tensor  # (n, N): what it learns to output for the training signals
    validation: torch.Tensor  # (n, N_test): its validation targets
    references: dict[str, torch.Tensor]  # "solver" (and "truth" where known) -> (n, N_test): what it is compared to
    converged: bool  # FISTA reached target_tol for every target it computed
    device: str  # where FISTA computed them


def run(job: Job, plan: None) -> dict[str, Any]:
    cfg, task = job.cfg, job.cfg.task
    device = device_for(cfg.trainer.accelerator)  # targets, training and comparisons all run there
    with job.timer("problems"):
        problems = make_problems(task.problem, job.data, cfg.seed)
    with job.timer("targets"):
        targets = solver_targets(problems, task, device)
    model = build("model", cfg.model, dictionary=problems.dictionary, lam=task.lam)
    with job.timer("fit"):
        history = train_model(
            cfg.trainer, model, job.tracker.logger, job.checkpoint(), cfg.resume,
            train_dataloaders=batches((problems.train.T, targets.train.T), task.batch_size, shuffle=True, seed=cfg.seed),
            val_dataloaders=batches((problems.test.T, targets.validation.T), 1024, shuffle=False),
        )
    checkpoint = job.dir / "model.pt"
    save_entry({"state_dict": model.state_dict(), "history": history, "dictionary": problems.dictionary}, checkpoint)
    with job.timer("compare"):
        curves = compare(problems, model, task, targets.references, device)
    results = comparison(curves, model.hparams.layers, list(targets.references))
    results |= {
        "layers": model.hparams.layers, "lam": task.lam, "problem": task.problem.kind, "trained_on": task.target,
        "dictionary_shape": list(problems.dictionary.shape), "train_size": task.problem.train_size,
        "test_size": task.problem.test_size, "tied": model.hparams.tied, "seed": cfg.seed,
        "final_val_loss": history[-1].get("val/loss") if history else None,
        "targets_converged": targets.converged, "model": job.choices.get("model"), "checkpoint": str(checkpoint),
        "devices": {"targets": targets.device, "compare": str(model.device)},  # where the stages ran
        "model_artifact": job.tracker.log_model(checkpoint, job.key, False, {"model": job.choices.get("model")}),
    }
    with job.timer("plots"):
        job.tracker.log_table("code_error", ["method", "iterations_or_layers", "against", "nmse_db"],
                              results.pop("rows"))
        job.tracker.log_figure("code_error", plots.code_error_figure, curves, model.hparams.layers)
        job.tracker.log_line_series("code_error_chart", curves, "code NMSE (dB) against iterations / layers",
                                    "iteration or layer")
    return results


def solver_targets(problems: LassoProblems, task: DictConfig, device: torch.device) -> Targets:
    """FISTA's codes of the test signals (and, with task.target=solver, of the training signals)."""
    test = solver_codes(problems, problems.test, task.lam, task.problem, device)
    references = {"solver": test.x.cpu(), **({"truth": problems.test_truth} if problems.test_truth is not None else {})}
    if task.target == "solver":
        train = solver_codes(problems, problems.train, task.lam, task.problem, device)
        return Targets(train.x.cpu(), references["solver"], references, test.converged and train.converged,
                       str(test.x.device))
    # the literature's supervised setting
    return Targets(problems.train_truth, problems.test_truth, references, test.converged, str(test.x.device))


def compare(problems: LassoProblems, model: LISTA, task: DictConfig, references: dict[str, torch.Tensor],
            device: torch.device) -> dict[str, list[float]]:
    """NMSE (dB) against each reference of ISTA's and FISTA's iterates and of LISTA's layers' outputs."""
    layers = model.hparams.layers
    curves = error_curves(problems, task.lam, task.problem.compare_iterations * layers, references, device)
    model.to(device).eval()
    with torch.no_grad():
        per_layer = model(problems.test.to(model.device), all_layers=True)
    for name, reference in references.items():
        curves[f"lista_vs_{name}"] = [nmse_db(z.cpu(), reference) for z in per_layer]
    return curves


def comparison(curves: dict[str, list[float]], layers: int, references: list[str]) -> dict[str, Any]:
    """The scores: each method's NMSE after `layers` steps against each reference; `nmse_db_*` against the truth
    where known, else the solver; how many iterations ISTA and FISTA take to match LISTA. `rows`: the table."""
    score = "truth" if "truth" in references else "solver"
    rows, results = [], {"scored_against": score}
    for method in ("lista", "ista", "fista"):
        for name in references:
            value = curves[f"{method}_vs_{name}"][layers - 1]
            rows.append([method, layers, name, round(value, 3)])
            results[f"{method}_nmse_db_vs_{name}"] = value
    results |= {f"nmse_db_{method}": results[f"{method}_nmse_db_vs_{score}"] for method in ("lista", "ista", "fista")}
    for method in ("ista", "fista"):  # how long the solvers take to do what T layers do
        results[f"{method}_iterations_to_match_lista"] = lasso.first_iteration_within(curves[f"{method}_vs_{score}"],
                                                                                      results["nmse_db_lista"])
    log.info("NMSE vs %s after %d: LISTA %.2f dB, ISTA %.2f dB, FISTA %.2f dB", score, layers,
             results["nmse_db_lista"], results["nmse_db_ista"], results["nmse_db_fista"])
    return results | {"rows": rows}


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
    reads=("model", "trainer", "task"),
    needs_data=lambda cfg: cfg.task.problem.kind == "patches",
    check=check,
    run=run,
    shown=("nmse_db_ista", "nmse_db_fista"),
)
