"""model=sparse_coding: dictionary learning by alternating FISTA codes and gradient steps, in the core pipeline."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from helpers import QUICK, history_keys, run_job

from experiments.data import Digits
from experiments.models.sparse_coding import SparseCoding


def train(model: SparseCoding, epochs: int) -> Digits:
    data = Digits(batch_size=256)
    data.setup()
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    return data


def reconstruction_error(model: SparseCoding, images: torch.Tensor) -> float:
    codes = model.encode(images)
    return float(((model.decode(codes).detach() - images) ** 2).mean())


def test_training_lowers_the_reconstruction_error_and_keeps_atoms_unit_norm():
    torch.manual_seed(0)
    model = SparseCoding((1, 8, 8), latent_dim=32, lam=0.1, encode_iterations=300)
    images = Digits().load_arrays().fit[:400]
    images = torch.from_numpy(images)
    before = reconstruction_error(model, images)
    train(model, epochs=4)
    after = reconstruction_error(model, images)
    assert after < 0.7 * before, (before, after)
    norms = model.dictionary.detach().norm(dim=0)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert model.warm_codes.shape == (32, 1797), "every fit image's code is kept for its next warm start"
    assert (model.warm_codes != 0).any(dim=0).all()


def test_codes_are_the_lasso_solution_for_the_dictionary():
    torch.manual_seed(0)
    model = SparseCoding((1, 8, 8), latent_dim=48, lam=0.2, encode_tol=1e-6, encode_iterations=5000)
    images = torch.rand(20, 1, 8, 8)
    codes = model.encode(images)
    residual = images.flatten(1) - codes @ model.dictionary.detach().T
    correlation = residual @ model.dictionary.detach()  # D^T (x - D z) per image
    # KKT: |D^T r| <= lam everywhere, = lam sign(z) on the support.
    assert float(correlation.abs().max()) <= 0.2 * (1 + 1e-2)
    support = codes != 0
    assert support.any() and not support.all()
    torch.testing.assert_close(correlation[support], 0.2 * codes[support].sign(), atol=3e-3, rtol=0)


def test_encoding_that_runs_out_of_iterations_says_so(caplog):
    model = SparseCoding((1, 8, 8), latent_dim=48, lam=0.01, encode_iterations=2, encode_tol=1e-9)
    model.encode(torch.rand(10, 1, 8, 8))
    assert model.solver_report() == {"codes_converged": False, "codes_max_gap": None}
    assert "without converging" in caplog.text


def test_bad_sparse_coding_settings_are_refused_naming_the_parameter():
    with pytest.raises(ValueError, match="^lam must be >= 0"):
        SparseCoding((1, 8, 8), lam=-0.1)
    with pytest.raises(ValueError, match="^latent_dim must be at least 1"):
        SparseCoding((1, 8, 8), latent_dim=0)


def test_sparse_coding_runs_the_cluster_job_with_its_sparsity_and_atoms(tmp_path):
    sparse_coding = ["model=sparse_coding", "model.latent_dim=48", "reducer=pca", "reducer.n_components=8", "plots.tsne=false"]
    job = run_job(tmp_path, *QUICK, *sparse_coding, "logger=wandb", figures=True)
    results = job.results
    assert results["model"] == "sparse_coding" and results["latent_dim"] == 48
    assert 0.2 < results["code_sparsity"] < 1.0
    assert results["recon_mse"] < 0.03
    assert results["codes_converged"] is True and results["codes_max_gap"] <= 1e-3
    assert results["acc"] > 0.6, "sparse codes of digits cluster far better than chance"
    assert (job.dir / "plots" / "atoms.png").is_file()
    history = {k.split(".")[0] for k in history_keys(results["wandb_dir"])}
    assert {"train/sparsity", "train/recon_mse", "atoms"} <= history, "curves and the atoms image reach W&B"

    again = run_job(tmp_path, *QUICK, *sparse_coding, "logger=none", name="again")
    assert again.results["cache"] == "hit", "the learned dictionary is cached like an autoencoder"
    assert again.results["acc"] == results["acc"] and again.results["recon_mse"] == pytest.approx(results["recon_mse"])
