"""Every stage runs where the user asked: encoding, scoring, LISTA's targets and comparisons, the deblurring
solver, also for a model from the cache (Lightning's teardown hands the model back on the CPU). The GPU twin
runs where there is a CUDA GPU and is skipped, with its reason, elsewhere."""

from __future__ import annotations

import pytest
from helpers import run_job

ACCELERATORS = [
    pytest.param("cpu", "cpu", id="cpu"),
    pytest.param("gpu", "cuda:0", id="gpu", marks=pytest.mark.gpu),
]
ON = {"cpu": ["accelerator=cpu"], "gpu": ["accelerator=gpu"]}


@pytest.mark.parametrize("accelerator, device", ACCELERATORS)
def test_each_stage_of_each_kind_runs_on_the_chosen_device(accelerator, device, tmp_path):
    on = ON[accelerator]
    small = ["data=digits", "data.fit_limit=300", "data.eval_limit=200", "trainer.max_epochs=1", "reducer=pca",
             "plots.tsne=false", "plots.reconstructions=2", "plots.max_points=50", "logger=none"]
    trained = run_job(tmp_path, *small, *on, name="trained").results
    cached = run_job(tmp_path, *small, *on, name="cached").results
    assert (trained["cache"], cached["cache"]) == ("miss", "hit")
    assert trained["devices"] == cached["devices"] == {"encode": device}

    classify = run_job(tmp_path, "task=classify", "data=digits", "data.eval_fraction=0.3", "trainer.max_epochs=1", "logger=none", *on,
                       name="classify").results
    assert classify["devices"] == {"score": device}

    lista = run_job(tmp_path, "task=lista", "model.layers=2", "task.problem.rows=20", "task.problem.atoms=40",
                    "task.problem.train_size=200", "task.problem.test_size=50", "trainer.max_epochs=1", "logger=none", *on,
                    name="lista").results
    assert lista["devices"] == {"targets": device, "compare": device}

    deblur = run_job(tmp_path, "task=deblur", "task.size=32", "task.ista_iterations=20", "task.fista_iterations=20",
                     "task.reference_iterations=20", "logger=none", *on, name="deblur").results
    assert deblur["devices"] == {"solve": device} and "fista_iterations_to_1e-4" in deblur  # F* ran there too
