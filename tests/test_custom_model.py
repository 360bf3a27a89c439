"""Your own model, from outside the package: a LightningModule written against the README's interface section alone
(models/protocols.py), named by `model=custom model._target_=...`, trains, encodes, is clustered, scored and logged;
its own file is part of the code version, so editing it reruns its jobs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from helpers import QUICK, REPO, run_cli, run_job, wandb_summary

from experiments import fingerprint
from experiments.errors import UserError


def readme_model() -> str:
    """The model of the README's "Your own model" section, as a user would copy it."""
    section = (REPO / "README.md").read_text().split("## Your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def forget_code() -> None:
    """What this process knows of the code's files (each CLI run is a new process and reads them afresh): a test
    that adds a folder to the path, or edits a file, clears it, and the module another test imported from its own
    folder."""
    sys.modules.pop("my_models", None)
    for cached in (fingerprint.is_project_code, fingerprint.source_path, fingerprint.parsed, fingerprint.code_digest,
                   fingerprint.package_imports_closure):
        cached.cache_clear()


@pytest.fixture
def user_package(tmp_path: Path):
    """A folder outside src/ holding my_models.py, the README's model."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "my_models.py").write_text(readme_model())
    forget_code()
    yield folder
    forget_code()


CUSTOM = ["model=custom", "model._target_=my_models.TinyEncoder", "+model.width=12", "reducer=pca",
          "reducer.n_components=4", "plots.tsne=false"]


def test_your_own_model_runs_the_cluster_job_from_the_command_line(tmp_path, user_package):
    run = run_cli(tmp_path / "run", *QUICK, *CUSTOM, env={"PYTHONPATH": str(user_package)})
    assert run.returncode == 0, run.stderr
    results = run.results
    assert results["latent_dim"] == 12, "the code size is what its encode returns"
    assert results["acc"] > 0.3 and 0 < results["recon_mse"] < 0.2, "it declares a decoder: reconstructions"
    assert (run.dir / "plots" / "reconstructions.png").exists() and (run.dir / "plots" / "embedding_pca.png").exists()
    summary = wandb_summary(results["wandb_dir"])
    assert summary["summary"]["acc"] == results["acc"] and summary["config"]["model"]["width"] == 12


def test_editing_your_model_reruns_its_job_and_changing_the_logger_does_not(tmp_path, user_package, monkeypatch):
    monkeypatch.syspath_prepend(str(user_package))
    forget_code()
    first = run_job(tmp_path, *QUICK, *CUSTOM, "trainer.max_epochs=1").results  # read now: the job folder is reused
    assert first["cache"] == "miss"
    again = run_job(tmp_path, *QUICK, *CUSTOM, "trainer.max_epochs=1", "logger=csv").results
    assert again == first, "skipped: only the logger changed"
    source = user_package / "my_models.py"
    source.write_text(source.read_text().replace("lr=1e-2", "lr=2e-2"))
    forget_code()
    edited = run_job(tmp_path, *QUICK, *CUSTOM, "trainer.max_epochs=1")
    assert edited.results["code_version"] != first["code_version"]
    assert edited.results["cache"] == "miss", "the model trained again: its code changed"


def test_a_model_of_your_own_is_named_before_anything_runs(tmp_path, user_package, monkeypatch):
    with pytest.raises(UserError, match="model=custom: name your LightningModule, model._target_="):
        run_job(tmp_path, *QUICK, "model=custom")
    with pytest.raises(UserError, match=r"model._target_=my_models.TinyEncoder: cannot import it \(No module named"):
        run_job(tmp_path, *QUICK, *CUSTOM)  # not on the path
    monkeypatch.syspath_prepend(str(user_package))
    forget_code()
    with pytest.raises(UserError, match=r"model \(TinyEncoder\): TinyEncoder.__init__\(\) got an unexpected keyword"):
        run_job(tmp_path, *QUICK, *CUSTOM, "+model.depth=3")
    with pytest.raises(UserError, match="model.width='wide': use a whole number"):
        run_job(tmp_path, *QUICK, *CUSTOM[:2], "+model.width=wide")
