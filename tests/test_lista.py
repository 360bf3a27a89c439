"""model=lista: LISTA starts as ISTA, learns to beat it at T steps, and the job reports the comparison."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers import check_job, history_keys, run_job

from experiments.errors import UserError
from experiments.jobs.lista import overcomplete_dct, random_patches, synthetic_problems
from experiments.lasso import solve
from experiments.models.learned_ista import LISTA, nmse_db

SMALL = ["task=lista", "model.layers=4", "task.problem.rows=50", "task.problem.atoms=100",
         "task.problem.train_size=2000", "task.problem.test_size=300", "model.lr=5e-4"]


@pytest.mark.parametrize("tied", [False, True])
def test_untrained_lista_is_exactly_ista_after_t_iterations(tied):
    problems = synthetic_problems(30, 60, 0.1, 0, 20, seed=1)
    model = LISTA(problems.dictionary, layers=5, lam=0.05, tied=tied)
    with torch.no_grad():
        layers = model(problems.test, all_layers=True)
    for t in (1, 5):
        ista = solve(problems.dictionary, problems.test, 0.05, method="ista", max_iter=t, tol=0).x
        torch.testing.assert_close(layers[t - 1], ista, atol=1e-5, rtol=1e-5)


def test_synthetic_problems_follow_the_literatures_recipe():
    problems = synthetic_problems(250, 500, 0.1, 300, 200, seed=0)
    A, x = problems.dictionary, problems.test_truth
    assert A.shape == (250, 500) and problems.train.shape == (250, 300) and x.shape == (500, 200)
    torch.testing.assert_close(A.norm(dim=0), torch.ones(500))
    assert 0.08 < float((x != 0).float().mean()) < 0.12
    torch.testing.assert_close(problems.test, A @ x)


def test_dct_dictionary_and_patches():
    D = overcomplete_dct(8, 256)
    assert D.shape == (64, 256)
    torch.testing.assert_close(D.norm(dim=0), torch.ones(256))
    assert torch.linalg.matrix_rank(D.double()) == 64, "the atoms span every patch"
    images = torch.arange(2 * 10 * 12, dtype=torch.float32).reshape(2, 1, 10, 12)
    patches = random_patches(images, 4, 7, torch.Generator().manual_seed(0))
    assert patches.shape == (16, 7)
    first = patches[:, 0].reshape(4, 4)
    assert torch.all(first[:, 1:] - first[:, :-1] == 1) and torch.all(first[1:] - first[:-1] == 12), "contiguous"
    with pytest.raises(UserError, match="must be a square"):
        overcomplete_dct(8, 200)
    with pytest.raises(UserError, match="patch_size=16 is larger"):
        random_patches(images, 16, 3, torch.Generator())


def test_nmse_db():
    truth = torch.ones(4, 3)
    assert nmse_db(truth * 1.1, truth) == pytest.approx(-20.0)


def test_lista_job_beats_ista_and_fista_at_t_steps_and_reports_it(tmp_path):
    job = run_job(tmp_path, *SMALL, "logger=wandb", figures=True)
    results = job.results
    assert results["kind"] == "lista" and (results["score"], results["score_direction"]) == ("nmse_db_lista", "min")
    assert job.score == results["nmse_db_lista"]
    assert results["scored_against"] == "truth" and results["targets_converged"] is True
    assert results["nmse_db_lista"] < min(results["nmse_db_ista"], results["nmse_db_fista"]) - 1.0, "by over 1 dB"
    assert results["fista_iterations_to_match_lista"] is None or results["fista_iterations_to_match_lista"] > 4
    with open(job.dir / "code_error.csv") as f:
        table = {(r["method"], r["against"]): float(r["nmse_db"]) for r in csv.DictReader(f)}
    assert table[("lista", "truth")] == pytest.approx(results["nmse_db_lista"], abs=1e-3)
    assert {("ista", "solver"), ("fista", "solver"), ("lista", "solver")} <= set(table)
    assert (job.dir / "plots" / "code_error.png").is_file()
    saved = torch.load(results["checkpoint"], weights_only=True)
    model = LISTA(saved["dictionary"], layers=4)
    model.load_state_dict(saved["state_dict"])  # the trained model, reloadable
    assert {"code_error_chart_table", "code_error", "val/nmse_db"} <= {k.split(".")[0] for k in history_keys(results["wandb_dir"])}


def test_lista_on_image_patches_is_scored_against_the_solver(tmp_path):
    job = run_job(tmp_path, "task=lista", "task.problem.kind=patches", "data=digits", "model.layers=3",
                  "task.problem.patch_size=4", "task.problem.atoms=64", "task.problem.train_size=1500",
                  "task.problem.test_size=200", "trainer.max_epochs=10", "logger=csv")
    results = job.results
    assert results["scored_against"] == "solver" and results["dictionary_shape"] == [16, 64]
    assert results["nmse_db_lista"] < results["nmse_db_ista"]


PATCHES = ["+recipe=lista_patches", "data=digits"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([*PATCHES, "task.target=truth"], "task.target='truth'.*synthetic"),
        ([*SMALL, "task.target=nothing"], "task.target='nothing'"),
        ([*SMALL, "task.problem.kind=nope"], "task.problem.kind='nope'"),
        ([*SMALL, "model.layers=0"], "model.layers must be at least 1"),
        ([*SMALL, "model.layers=abc"], "model.layers='abc': use a whole number"),
        ([*SMALL, "task.problem.rows=1.5"], "task.problem.rows=1.5: use a whole number"),
        ([*SMALL, "task.lam=-0.1"], "task.lam must be >= 0"),
        ([*SMALL, "model.lr=0"], "model.lr must be > 0"),
        ([*SMALL, "task.batch_size=0"], "task.batch_size must be at least 1"),
        ([*SMALL, "task.problem.train_size=0"], "train_size and test_size"),
        ([*SMALL, "task.problem.nonzeros=1.5"], "task.problem.nonzeros"),
        ([*SMALL, "task.problem.target_iterations=0"], "target_iterations"),
        ([*PATCHES, "task.problem.atoms=200"], "task.problem.atoms=200 must be a square"),
        ([*PATCHES, "task.problem.patch_size=17"], "task.problem.atoms=256 must be a square of at least"),
        ([*PATCHES, "task.problem.patch_size=12", "task.problem.atoms=576"], "patch_size=12 does not fit the 8x8"),
        (["model=autoencoder", "task=lista"], "task=lista trains learned ISTA"),
    ],
)
def test_bad_lista_settings_are_refused_by_the_check(overrides, message):
    with pytest.raises(UserError, match=message):
        check_job(*overrides)


def test_lista_can_learn_the_true_codes_as_in_the_literature(tmp_path):
    job = run_job(tmp_path, *SMALL, "task.target=truth", "logger=none")
    assert job.results["trained_on"] == "truth"
    assert job.results["nmse_db_lista"] < job.results["nmse_db_fista"] - 1.0
