"""End to end: `python -m experiments` as a user runs it, one whole path per test (a job of each kind, sweeps,
errors, a code change), checked through the files it leaves and W&B's own reader."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import (
    QUICK,
    REPO,
    assert_one_line_error,
    cli_env,
    compose_config,
    history_keys,
    run_cli,
    wandb_records,
    wandb_summary,
)

from experiments import report

pytestmark = pytest.mark.slow


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_one_job_leaves_its_results_plots_log_and_wandb_run(tmp_path):
    run = run_cli(tmp_path / "run", *QUICK, "model.latent_dim=16")
    assert run.returncode == 0, run.stderr
    results = run.results
    assert results["kind"] == "cluster" and results["acc"] > 0.6 and results["cache"] == "miss"
    assert len(read_csv(run.dir / "predictions.csv")) == 600
    # the default reducer's 2-D t-SNE is what was clustered: drawn once, as embedding_reduced.png
    assert {p.name for p in (run.dir / "plots").iterdir()} == {"reconstructions.png", "embedding_pca.png",
                                                               "embedding_reduced.png", "confusion_matrix.png"}
    log = (run.dir / "experiments.log").read_text()
    assert "stage check done" in log and "results: public_score=" in log, "the job's log file is named experiments.log"
    wandb_dir = results["wandb_dir"]
    assert Path(wandb_dir).parent.parent == run.dir, "a single run keeps its W&B run in its folder"
    assert f"wandb leet {wandb_dir}" in run.stdout and f"wandb sync {wandb_dir}" in run.stdout
    summary = wandb_summary(wandb_dir)
    assert summary["state"] == "finished" and summary["summary"]["acc"] == pytest.approx(results["acc"])
    charted = history_keys(wandb_dir)  # what wandb leet charts: the curves, not the tables' row and column counts
    assert {"train/loss_epoch", "val/recon_mse"} <= charted and not [k for k in charted if ".n" in k]
    console = run.stdout + run.stderr
    for noise in ("anonymous setting", "Tip:", "LeafSpec", "Automatically determined", "wandb: "):
        assert noise not in console, f"library noise on the console: {noise!r}"


def test_a_sweep_writes_a_sorted_summary_one_wandb_run_per_job_and_trains_each_model_once(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, *QUICK, "trainer.max_epochs=1", "plots.tsne=false", "reducer=pca", "model.latent_dim=8",
                  "reducer.n_components=2,4", multirun=True)
    assert run.returncode == 0, run.stderr
    rows = read_csv(sweep / "summary.csv")
    assert list(rows[0])[:5] == ["Public Score", "Private Score", "Reduced Method", "Latent Dimension", "Reduced Dimension"]
    assert {(r["Latent Dimension"], r["Reduced Dimension"]) for r in rows} == {("8", "2"), ("8", "4")}
    scores = [float(r["Public Score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and {r["Reduced Method"] for r in rows} == {"PCA"}
    assert sorted(r["cache"] for r in rows) == ["hit", "miss"], "one model for two jobs"
    assert (sweep / "plots" / "scores.png").stat().st_size > 1000

    table = (sweep / "summary.csv").read_text()
    (sweep / "summary.csv").unlink()
    assert report.main([str(sweep)]) == 0  # python -m experiments.report SWEEP_DIR
    assert (sweep / "summary.csv").read_text() == table, "the report command rebuilds the same table"

    assert "job 1 of 2: reducer.n_components=2 #0" in run.stdout and "job 2 of 2 done: public_score=" in run.stdout

    # One W&B workspace for the sweep: every job's run and the summary run, each named, tagged and typed
    runs = {wandb_summary(d)["name"]: d for d in (sweep / "wandb").glob("offline-run-*")}
    assert set(runs) == {"reducer.n_components=2 #0", "reducer.n_components=4 #1", "summary"}
    for name in ("reducer.n_components=2 #0", "reducer.n_components=4 #1"):
        run_summary = wandb_summary(runs[name])
        assert run_summary["state"] == "finished" and "model=autoencoder" in run_summary["tags"]
        assert "latent_dim" not in run_summary["config"] and run_summary["config"]["model"]["latent_dim"] == 8
        assert "train/loss_epoch" in history_keys(runs[name]), "a cache hit shows its model's curves too"
    types = {r["run"]["job_type"] for d in runs.values() for r in wandb_records(d) if r["type"] == "run"}
    assert types == {"cluster", "summary"}
    assert [json.loads((sweep / job / "results.json").read_text())["wandb_dir"] for job in "01"] == [
        str(runs["reducer.n_components=2 #0"]), str(runs["reducer.n_components=4 #1"])], "results.json says where"


def test_the_classifier_sweep_tables_cross_entropy_against_mse(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, "task=classify", "data=digits", "data.eval_fraction=0.3", "trainer.max_epochs=2",
                  "model.loss=cross_entropy,mse", "model.lr=0.1", "plots.enabled=false", multirun=True)
    assert run.returncode == 0, run.stderr
    rows = read_csv(sweep / "summary.csv")
    assert list(rows[0])[:3] == ["Test Accuracy", "Loss", "Learning Rate"]
    assert {(r["Loss"], r["Learning Rate"]) for r in rows} == {("cross_entropy", "0.1"), ("mse", "0.1")}
    accuracies = [float(r["Test Accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert (sweep / "plots" / "loss_curves.png").exists()
    (summary_run,) = [d for d in sweep.glob("wandb/offline-run-*") if wandb_summary(d)["name"] == "summary"]
    summary = wandb_summary(summary_run)["summary"]
    assert summary["summary"]["_type"] == "table-file" and summary["summary"]["nrows"] == 2, "the table, in the summary"
    charted = history_keys(summary_run)  # wandb leet charts these: each job's scores against its number
    assert {"job", "test_acc", "top5_error", "loss_curves_table._type"} <= charted and "summary._type" not in charted
    assert summary["test_acc"]["max"] == pytest.approx(max(accuracies), abs=1e-4), "the run's summary: the best job's"


def test_an_optuna_search_over_lista_minimises_its_code_error_and_run_again_goes_on_with_its_study(tmp_path):
    import optuna

    sweep, storage = tmp_path / "sweep", f"sqlite:///{tmp_path / 'study.db'}"
    search = ["+sweep=search_lista", "model.layers=2", "task.problem.rows=30", "task.problem.atoms=60",
              "task.problem.train_size=300", "task.problem.test_size=50", "trainer.max_epochs=2", "logger=none",
              "plots.enabled=false", f"hydra.sweeper.storage={storage}"]
    run = run_cli(sweep, *search, "hydra.sweeper.n_trials=2", multirun=True, dash_m=False)
    assert run.returncode == 0, run.stderr
    assert "Directions: ['minimize']" in run.stdout
    rows = read_csv(sweep / "summary.csv")
    errors = [float(r["LISTA NMSE (dB)"]) for r in rows]
    assert len(rows) == 2 and errors == sorted(errors), "lowest error first"
    optimization = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert optimization["best_value"] == pytest.approx(min(errors), abs=1e-4), "Optuna kept the lowest NMSE"

    again = run_cli(sweep, *search, "hydra.sweeper.n_trials=3", multirun=True, dash_m=False)  # 3 in all: one more
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="search_lista", storage=storage)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"] * 3
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2"]  # the new job is #2
    assert len(read_csv(sweep / "summary.csv")) == 3


def test_a_deblurring_sweep_over_lam_ranks_the_psnrs(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(sweep, "task=deblur", "task.size=64", "task.kernel_size=5", "task.sigma=1.5",
                  "task.ista_iterations=50", "task.fista_iterations=50", "task.lam=1e-5,1e-3", "logger=none",
                  "plots.enabled=false", multirun=True)
    assert run.returncode == 0, run.stderr
    rows = read_csv(sweep / "summary.csv")
    assert list(rows[0])[:2] == ["PSNR FISTA", "PSNR ISTA"] and {r["lam"] for r in rows} == {"1e-05", "0.001"}
    assert float(rows[0]["PSNR FISTA"]) >= float(rows[1]["PSNR FISTA"])


def test_a_bad_setting_is_one_line_and_exit_2_before_training_or_wandb(tmp_path):
    run = run_cli(tmp_path / "run", *QUICK, "reducer=pca", "reducer.n_components=64")
    assert_one_line_error(run, "reducer.n_components=64", "use 1..32")
    assert not (tmp_path / "run" / "wandb").exists() and not (tmp_path / "cache").exists()


def test_hydra_full_error_shows_the_whole_traceback_instead_of_one_line(tmp_path, monkeypatch):
    from experiments.__main__ import main
    from experiments.errors import UserError

    cfg = compose_config(*QUICK, "model.latent_dim=0", job_dir=tmp_path / "job")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(UserError, match="model.latent_dim must be at least 1") as raised:
        main.__wrapped__(cfg)  # the entry point's body, in this process
    cause = raised.value.__cause__
    assert isinstance(cause, ValueError) and str(cause).startswith("latent_dim"), "the model's own error, its traceback"
    monkeypatch.delenv("HYDRA_FULL_ERROR")
    with pytest.raises(SystemExit) as stopped:
        main.__wrapped__(cfg)
    assert stopped.value.code == 2


def test_help_lists_the_groups_names_the_app_and_imports_no_torch(tmp_path):
    # Its speed (a ratio to `import hydra`) is in `make bench`; what keeps it fast is importing no torch.
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "experiments", "--help"], cwd=REPO,
                          capture_output=True, text=True, env=cli_env(tmp_path), check=False)
    assert done.returncode == 0 and done.stdout.startswith("python -m experiments [group=option ...]")
    first_screen = done.stdout.split("== Configuration groups")[0]
    for group in ("recipe", "sweep", "task"):  # what can I run: every recipe, sweep and kind with its one line
        for path in (REPO / "conf" / group).glob("*.yaml"):
            summary = next(line[2:] for line in path.read_text().splitlines()
                           if line.startswith("# ") and "@package" not in line)
            assert f"  {path.stem:<18} {summary}" in first_screen, path
    assert len(first_screen.splitlines()) < 40, "it fits a first screen"
    groups = done.stdout.split("== Configuration groups (group=option) ==")[1].split("==")[0]
    assert "task: classify, cluster, deblur, lista" in groups and "\nlatent_dims:" not in groups
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {"torch", "pytorch_lightning", "wandb", "optuna", "ray", "umap"} & imported  # plugins import lazily


def test_a_change_to_the_models_code_retrains_and_reruns_the_same_command(tmp_path):
    """A copy of the project, so its code can change between two runs of one command."""
    copy = tmp_path / "project"
    shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "conf", copy / "conf")
    env = {"PYTHONPATH": str(copy / "src")}
    settings = [*QUICK, "trainer.max_epochs=1", "reducer=pca", "reducer.n_components=2", "plots.enabled=false",
                "logger=none"]
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"

    def run() -> dict:
        done = subprocess.run([sys.executable, "-m", "experiments", f"hydra.sweep.dir={sweep}", *settings, "-m"],
                              cwd=copy, env=cli_env(cache, env), capture_output=True, text=True, timeout=600,
                              check=False)
        assert done.returncode == 0, done.stderr
        return {"log": done.stdout, **yaml.safe_load((sweep / "0" / "results.json").read_text())}

    first = run()  # (the same command with unchanged code skips the job: tests/test_resume.py)
    model = copy / "src" / "experiments" / "models" / "autoencoder.py"
    model.write_text(model.read_text().replace("nn.ReLU()]", "nn.LeakyReLU()]"))  # a fix to the model's code
    third = run()
    assert "running the job again" in third["log"] and "model cache miss" in third["log"]
    assert third["cache"] == "miss" and third["model_code_version"] != first["model_code_version"]
    assert third["code_version"] != first["code_version"] and third["acc"] != first["acc"]
