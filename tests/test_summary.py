"""The sweep table: columns and order from each job kind's declarations, NaN and missing scores last."""

import json
import math

import pytest

from experiments import jobs
from experiments.summary import columns_for, summary_rows, write_summary


def test_a_lista_sweep_table_puts_the_lowest_code_error_first():
    kind = jobs.load("lista")
    columns = columns_for(kind, "nmse_db_lista")
    results = [{"nmse_db_lista": -5.0, "layers": 4, "job": "0"}, {"nmse_db_lista": -11.0, "layers": 16, "job": "1"}]
    assert columns[0][0] == "LISTA NMSE (dB)" and kind.labelled_by == ("layers", "problem")
    assert [row[0] for row in summary_rows(results, columns, lower_is_better=True)] == [-11.0, -5.0]


@pytest.mark.parametrize("lower_is_better", [False, True])
def test_nan_and_missing_scores_sort_last_and_show_as_missing(lower_is_better):
    columns = columns_for(jobs.load("cluster"), "public_score")
    scores = [0.5, math.nan, 0.9, 0.8, 0.7, None]
    results = [{"public_score": s, "job": str(i)} for i, s in enumerate(scores)]
    ranked = [row[0] for row in summary_rows(results, columns, lower_is_better)]
    expected = sorted([0.5, 0.9, 0.8, 0.7], reverse=not lower_is_better)
    assert ranked[:4] == expected and ranked[4:] == [None, None]


def test_sweep_tables_keep_small_settings_visible():
    columns = columns_for(jobs.load("deblur"), "psnr_fista")
    rows = summary_rows([{"psnr_fista": 28.87741, "lam": 3e-06, "job": "0"}], columns, lower_is_better=False)
    assert rows[0][0] == 28.877 and rows[0][3] == 3e-06


def test_the_optimised_score_leads_the_table_and_its_direction_sorts_it(tmp_path):
    for job, (recon, acc) in enumerate([(0.02, 0.9), (0.01, 0.5), (0.03, 0.7)]):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / "results.json").write_text(json.dumps(
            {"kind": "cluster", "score": "recon_mse", "score_direction": "min", "recon_mse": recon, "acc": acc}))
    (table,) = write_summary(tmp_path)
    assert table.names[0] == "recon_mse" and [row[0] for row in table.rows] == [0.01, 0.02, 0.03]
    assert (tmp_path / "summary.csv").read_text().startswith("recon_mse,Public Score,")


def test_a_sweep_of_two_kinds_gets_a_table_each(tmp_path):
    rows = {"0": {"kind": "cluster", "score": "public_score", "public_score": 0.6},
            "1": {"kind": "classify", "score": "test_acc", "test_acc": 0.9}}
    for job, results in rows.items():
        (tmp_path / job).mkdir()
        (tmp_path / job / "results.json").write_text(json.dumps(results))
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "results.json").write_text('{"kind": "clus')  # a job killed while writing: skipped
    tables = write_summary(tmp_path)
    assert [t.kind.name for t in tables] == ["classify", "cluster"]
    assert (tmp_path / "summary-classify.csv").exists() and (tmp_path / "summary-cluster.md").exists()
