"""The sweep table: which columns, which order, which digits."""

from experiments.summary import DEBLUR_COLUMNS, columns_for, summary_rows


def test_a_lista_sweep_table_puts_the_lowest_code_error_first():
    results = [{"nmse_db_lista": -5.0, "layers": 4, "job": "0"}, {"nmse_db_lista": -11.0, "layers": 16, "job": "1"}]
    columns, labels = columns_for(results)
    assert columns[0][0] == "LISTA NMSE (dB)" and labels == ("layers", "problem")
    assert [row[0] for row in summary_rows(results, columns)] == [-11.0, -5.0]


def test_sweep_tables_keep_small_settings_visible():
    rows = summary_rows([{"psnr_fista": 28.87741, "lam": 3e-06, "job": "0"}], DEBLUR_COLUMNS)
    assert rows[0][0] == 28.877 and rows[0][3] == 3e-06
