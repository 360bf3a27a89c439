"""The sweep table: columns and order from each job kind's declarations (as each results.json carries them), NaN
and missing scores last."""

import json
import math

import pytest

from experiments import jobs
from experiments.summary import KindTable, columns_for, summary_rows, write_summary


def declared(kind: str, **fields) -> dict:
    """A results.json of `kind` as a job writes it: with its kind's table declaration."""
    return {"kind": kind, "table": jobs.load(kind).table(), **fields}


def table_of(kind: str) -> KindTable:
    return KindTable.of(declared(kind))


def test_a_lista_sweep_table_puts_the_lowest_code_error_first():
    kind = table_of("lista")
    columns = columns_for(kind, "nmse_db_lista")
    results = [{"nmse_db_lista": -5.0, "layers": 4, "job": "0"}, {"nmse_db_lista": -11.0, "layers": 16, "job": "1"}]
    assert columns[0][0] == "LISTA NMSE (dB)" and kind.labelled_by == ("layers", "problem")
    assert [row[0] for row in summary_rows(results, columns, lower_is_better=True)] == [-11.0, -5.0]


@pytest.mark.parametrize("lower_is_better", [False, True])
def test_nan_and_missing_scores_sort_last_and_show_as_missing(lower_is_better):
    columns = columns_for(table_of("cluster"), "public_score")
    scores = [0.5, math.nan, 0.9, 0.8, 0.7, None]
    results = [{"public_score": s, "job": str(i)} for i, s in enumerate(scores)]
    ranked = [row[0] for row in summary_rows(results, columns, lower_is_better)]
    expected = sorted([0.5, 0.9, 0.8, 0.7], reverse=not lower_is_better)
    assert ranked[:4] == expected and ranked[4:] == [None, None]


def test_sweep_tables_keep_small_settings_visible():
    columns = columns_for(table_of("deblur"), "psnr_fista")
    rows = summary_rows([{"psnr_fista": 28.87741, "lam": 3e-06, "job": "0"}], columns, lower_is_better=False)
    assert rows[0][0] == 28.877 and rows[0][3] == 3e-06


def test_the_optimised_score_leads_the_table_and_its_direction_sorts_it(tmp_path):
    for job, (recon, acc) in enumerate([(0.02, 0.9), (0.01, 0.5), (0.03, 0.7)]):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "results.json").write_text(json.dumps(
            declared("cluster", score="recon_mse", score_direction="min", recon_mse=recon, acc=acc)))
    (table,) = write_summary(tmp_path)
    assert table.names[0] == "recon_mse" and [row[0] for row in table.rows] == [0.01, 0.02, 0.03]
    assert (tmp_path / "summary.csv").read_text().startswith("recon_mse,Public Score,")


def test_a_sweep_of_two_kinds_gets_a_table_each(tmp_path):
    rows = {"0": declared("cluster", score="public_score", public_score=0.6),
            "1": declared("classify", score="test_acc", test_acc=0.9)}
    for job, results in rows.items():
        (tmp_path / job).mkdir()
        (tmp_path / job / "results.json").write_text(json.dumps(results))
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "results.json").write_text('{"kind": "clus')  # a job killed while writing: skipped
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "results.json").write_text('{"kind": "cluster", "acc": 0.5}')  # an older version's: skipped
    tables = write_summary(tmp_path)
    assert [t.kind.name for t in tables] == ["classify", "cluster"]
    assert (tmp_path / "summary-classify.csv").exists() and (tmp_path / "summary-cluster.md").exists()


def write_jobs(sweep, jobs_results):
    for job, results in enumerate(jobs_results):
        (sweep / str(job)).mkdir(parents=True)
        (sweep / str(job) / "results.json").write_text(json.dumps(
            declared("cluster", score="public_score", score_direction="max", seconds={"fit": 10.0}, **results)))


def test_a_sweep_over_seeds_reports_mean_and_spread_per_configuration_best_mean_first(tmp_path):
    import csv

    from experiments import report

    accs = {"model=dense_autoencoder": [0.70, 0.74, 0.72], "model=autoencoder": [0.60, 0.58, 0.62]}
    write_jobs(tmp_path, [
        {"overrides": ["+sweep=n2d", recipe, f"seed={seed}"], "seed": seed, "public_score": acc, "acc": acc,
         "nmi": acc - 0.1}
        for recipe, values in accs.items() for seed, acc in enumerate(values)])
    write_summary(tmp_path)
    with open(tmp_path / "summary_by_seed.csv") as f:
        rows = list(csv.DictReader(f))
    # best mean first; named by what differs (not +sweep=n2d, which every job shares)
    assert [r["configuration"] for r in rows] == ["model=dense_autoencoder", "model=autoencoder"]
    best = rows[0]
    assert best["n_seeds"] == "3" and best["seeds"] == "0 1 2" and float(best["seconds_per_seed"]) == 10.0
    assert float(best["acc_mean"]) == pytest.approx(0.72) and float(best["acc_std"]) == pytest.approx(0.02)
    assert float(best["nmi_mean"]) == pytest.approx(0.62)
    assert list(rows[0])[:4] == ["configuration", "n_seeds", "public_score_mean", "public_score_std"]
    assert "| model=autoencoder | 3 |" in (tmp_path / "summary_by_seed.md").read_text()

    (tmp_path / "summary_by_seed.csv").unlink()
    assert report.main([str(tmp_path)]) == 0 and (tmp_path / "summary_by_seed.csv").exists(), "the report rebuilds it"


def test_one_seed_has_no_seed_table_and_a_lone_seed_no_spread(tmp_path):
    write_jobs(tmp_path / "one", [{"overrides": [f"model.latent_dim={d}"], "seed": 0, "public_score": 0.5}
                                  for d in (8, 16)])
    write_summary(tmp_path / "one")
    assert not (tmp_path / "one" / "summary_by_seed.csv").exists()
    write_jobs(tmp_path / "two", [{"overrides": ["seed=0"], "seed": 0, "public_score": 0.5},
                                  {"overrides": ["seed=1", "model.latent_dim=8"], "seed": 1, "public_score": 0.6}])
    write_summary(tmp_path / "two")
    rows = (tmp_path / "two" / "summary_by_seed.csv").read_text().splitlines()
    assert rows[1].startswith("model.latent_dim=8,1,0.6,,") and rows[2].startswith("defaults,1,0.5,,")
    write_jobs(tmp_path / "recipe", [{"overrides": ["+recipe=tsne8_gmm", f"seed={seed}"], "seed": seed,
                                      "public_score": 0.5} for seed in (0, 1)])
    write_summary(tmp_path / "recipe")
    rows = (tmp_path / "recipe" / "summary_by_seed.csv").read_text().splitlines()
    assert rows[1].startswith("+recipe=tsne8_gmm,2,0.5,0.0,"), "one configuration over seeds is named by its settings"


def test_after_each_job_of_a_sweep_its_table_holds_the_jobs_finished_so_far(tmp_path, caplog):
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from experiments.callbacks import SweepSummary
    from experiments.launch import write_sweep_plan

    sweep = tmp_path / "sweep"
    write_jobs(sweep, [{"overrides": [f"model.latent_dim={d}"], "public_score": s} for d, s in ((8, 0.5), (16, 0.6))])
    (sweep / "2").mkdir()  # the job that failed: no results.json
    write_sweep_plan(sweep, {"jobs": 3, "swept": ["model.latent_dim"]})
    job = {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(sweep)}, "job": {"num": 2}}
    SweepSummary().on_job_end(OmegaConf.create({"hydra": job}), JobReturn(status=JobStatus.FAILED))
    rows = (sweep / "summary.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| 0.6", "| 0.5"], "the two finished jobs, best first"
    assert not (sweep / "plots").exists(), "the figures come at the sweep's end"
    assert f"job 3 of 3 failed; the table of the 2 finished so far: {sweep / 'summary.md'}" in caplog.text

    (sweep / "summary.md").unlink()
    SweepSummary().on_job_end(OmegaConf.create({"hydra": {**job, "mode": RunMode.RUN}}), JobReturn())
    assert not (sweep / "summary.md").exists(), "a single run has no table"

    (sweep / "summary.csv").unlink()
    (sweep / "summary.csv").mkdir()  # a table that cannot be written: said, and the sweep goes on
    SweepSummary().on_job_end(OmegaConf.create({"hydra": job}), JobReturn(status=JobStatus.COMPLETED))
    assert "the sweep's table was not written after job 3" in caplog.text
