"""Bad input and bad config: one line that names the problem, a non-zero exit, no traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wandb_records
from conftest import QUICK, run_cli

pytestmark = pytest.mark.slow


def assert_one_line_error(run, *fragments: str) -> None:
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write(tmp_path, name, array, **kwargs):
    path = tmp_path / name
    np.save(path, array, **kwargs)
    return str(path)


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["model.latent_dim=0"], ["model.latent_dim"]),
        (["reducer=pca", "reducer.n_components=64"], ["reducer.n_components=64", "use 1..32"]),
        (["clusterer.n_clusters=5000"], ["clusterer.n_clusters=5000", "1797 eval images"]),
        (["model.channels=[8,8]", "model.kernel_size=5", "model.padding=0"], ["shrink a 8x8 image to nothing", "model.channels"]),
        (["clusterer.n_init=-1", "reducer=pca", "reducer.n_components=2"], ["clusterer (kmeans)", "n_init"]),
        (["data.batch_size=0"], ["data.batch_size"]),
    ],
    ids=["latent_dim", "n_components", "n_clusters", "shrinking_convs", "library_param", "batch_size"],
)
def test_bad_settings_give_one_line_naming_the_setting(tmp_path, overrides, fragments):
    run = run_cli(tmp_path / "run", *QUICK, "logger=none", "plots.tsne=false", *overrides)
    assert_one_line_error(run, *fragments)


def bad_npy(tmp_path, kind):
    if kind == "missing":
        return [f"data.train_path={tmp_path / 'nope.npy'}"], ["data.train_path: file not found"]
    if kind == "objects":
        path = write(tmp_path, "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
        return [f"data.train_path={path}"], ["holds Python objects"]
    if kind == "nan":
        images = np.random.default_rng(0).random((10, 8, 8))
        images[3, 2, 2] = np.nan
        return [f"data.train_path={write(tmp_path, 'nan.npy', images)}"], ["NaN or inf", "nan.npy"]
    if kind == "not_images":
        return [f"data.train_path={write(tmp_path, 'flat.npy', np.zeros(100))}"], ["not images"]
    if kind == "empty":
        return [f"data.train_path={write(tmp_path, 'empty.npy', np.zeros((0, 8, 8)))}"], ["no images"]
    if kind == "labels":
        images = write(tmp_path, "images.npy", np.zeros((10, 8, 8), dtype=np.uint8))
        labels = write(tmp_path, "labels.npy", np.zeros(9, dtype=int))
        return [f"data.train_path={images}", f"data.eval_labels_path={labels}"], ["9 labels for 10 images"]
    if kind == "no_n_clusters":
        images = write(tmp_path, "images.npy", np.zeros((10, 8, 8), dtype=np.uint8))
        return [f"data.train_path={images}"], ["clusterer.n_clusters"]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing", "objects", "nan", "not_images", "empty", "labels", "no_n_clusters"])
def test_bad_npy_input_gives_one_line_naming_the_file_or_setting(tmp_path, kind):
    overrides, fragments = bad_npy(tmp_path, kind)
    run = run_cli(tmp_path / "run", "data=npy", *overrides, "logger=none")
    assert_one_line_error(run, *fragments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so accelerator=gpu is valid here")
def test_asking_for_a_gpu_without_one_says_so(tmp_path):
    run = run_cli(tmp_path / "run", *QUICK, "accelerator=gpu", "logger=none")
    assert_one_line_error(run, "accelerator=gpu", "no CUDA GPU")


def test_a_run_failing_after_training_keeps_its_checkpoint_and_closes_its_wandb_run(tmp_path):
    run = run_cli(tmp_path / "run", *QUICK, "cache=false", "reducer=pca", "reducer.n_components=64")
    assert_one_line_error(run, "reducer.n_components=64")
    checkpoint = torch.load(run.dir / "model.pt", weights_only=True)
    assert "encoder.0.weight" in checkpoint["state_dict"]
    (wandb_dir,) = run.dir.glob("wandb/offline-run-*")
    assert wandb_records.exit_code(wandb_dir) == 1, "the failed job's W&B run is finished, marked failed"


def test_hydra_full_error_shows_the_traceback(tmp_path):
    run = run_cli(tmp_path / "run", *QUICK, "model.latent_dim=0", "logger=none", env={"HYDRA_FULL_ERROR": "1"})
    assert run.returncode != 0
    assert "Traceback" in run.stderr and "UserError" in run.stderr


def test_an_unknown_config_option_is_refused_by_hydra_with_the_choices(tmp_path):
    run = run_cli(tmp_path / "run", "reducer=umap")
    assert run.returncode != 0
    assert "reducer/umap" in run.stderr and "pca" in run.stderr and "Traceback" not in run.stderr
