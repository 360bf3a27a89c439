"""task=cluster in this process: encoder -> codes -> reduce -> cluster -> score, its files, its cache, and
every setting that must fail before training."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    QUICK,
    check_job,
    compose_config,
    history_keys,
    run_job,
    two_class_images,
    untraced,
    wandb_summary,
)
from hydra.utils import instantiate
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import FunctionTransformer

from experiments import pipeline
from experiments.clusterers import rebalance
from experiments.errors import UserError
from experiments.jobs.cluster.stages import (
    Codes,
    cluster_codes,
    codes_to_embed,
    embedded_and_graph,
    neighbours_needed,
    reduce_codes,
    with_neighbours,
)
from experiments.models.autoencoder import ConvAutoencoder
from experiments.reduce import OpenTSNE, neighbour_mean
from experiments.training import check_optimizer
from experiments.umap_exact import UMAP

PCA4 = ["reducer=pca", "reducer.n_components=4", "plots.tsne=false"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_job_scores_the_digits_and_records_everything_in_files_and_wandb(tmp_path):
    job = run_job(tmp_path, *QUICK, "model.latent_dim=16", "logger=wandb", figures=True)
    results = job.results
    assert results["kind"] == "cluster" and results["score"] == "public_score" and job.score == results["public_score"]
    assert results["acc"] > 0.6, "a trained autoencoder + t-SNE + k-means separates the digits far above chance"
    assert all(0 <= results[k] <= 1 for k in ("public_score", "private_score", "nmi"))
    assert 0.8 < results["knn_acc"] <= 1, "the codes' own neighbourhoods keep the digits' classes"
    assert (results["latent_dim"], results["reducer"], results["reduced_dim"]) == (16, "tsne", 2)
    assert (results["clusterer"], results["n_clusters"], results["cache"]) == ("kmeans", 10, "miss")
    assert {"load", "check", "fit", "encode", "reduce", "cluster", "score", "plots"} <= set(results["seconds"])
    examples = results["recon_mse_examples"]
    assert len(examples) == 2 and examples[0]["label"] != examples[1]["label"] and all(0 < e["mse"] < 1 for e in examples)
    predictions = read_csv(job.dir / "predictions.csv")
    assert len(predictions) == 600 and {int(p["label"]) for p in predictions} == set(range(10))
    assert np.load(job.dir / "codes.npy").shape == (600, 16)
    for name in ("reconstructions", "embedding_pca", "embedding_reduced", "confusion_matrix"):
        assert (job.dir / "plots" / f"{name}.png").stat().st_size > 1000
    views = {row["method"] for row in read_csv(job.dir / "embedding_2d.csv")}
    assert views == {"pca", "reduced"}, "the reducer's 2-D t-SNE is what was clustered: drawn once"

    run = wandb_summary(results["wandb_dir"])
    assert run["state"] == "finished" and run["exit_code"] == 0
    assert run["summary"]["acc"] == pytest.approx(results["acc"])
    assert run["summary"]["knn_acc"] == pytest.approx(results["knn_acc"])
    assert run["config"]["model"]["latent_dim"] == 16, "the resolved config reaches W&B"
    assert {"train/loss_epoch", "val/recon_mse"} <= history_keys(results["wandb_dir"]), "training curves reach W&B"


def test_a_second_job_with_the_same_settings_loads_the_model_and_the_t_sne_view_the_first_made(tmp_path):
    settings = [*QUICK, "reducer=pca", "reducer.n_components=4", "logger=none"]  # PCA: the t-SNE view is a plot's
    first = run_job(tmp_path, *settings, name="first", figures=True)
    second = run_job(tmp_path, *settings, name="second", figures=True)
    assert (first.results["cache"], second.results["cache"]) == ("miss", "hit")
    assert second.results["checkpoint"] == first.results["checkpoint"]
    assert second.results["model_code_version"] == first.results["model_code_version"]
    assert second.results["acc"] == first.results["acc"]
    assert first.results["wandb_dir"] is None
    tsne_rows = [[row for row in read_csv(job.dir / "embedding_2d.csv") if row["method"] == "tsne"]
                 for job in (first, second)]
    assert len(tsne_rows[0]) == 300 and tsne_rows[0] == tsne_rows[1]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2, "the model and its t-SNE view, each made once"


def test_a_model_with_a_fit_step_fits_once_and_a_cache_hit_encodes_with_the_saved_fit(tmp_path, monkeypatch):
    from experiments.models.random_conv_pca import RandomConvPCA

    settings = [*QUICK, *PCA4, "model=random_conv_pca", "model.latent_dim=20", "logger=none"]
    first = run_job(tmp_path, *settings, name="first")

    def refit(self, images):
        raise AssertionError("a cached model was fitted again")

    monkeypatch.setattr(RandomConvPCA, "fit", refit)
    monkeypatch.setattr(RandomConvPCA, "fit_encode", refit)
    second = run_job(tmp_path, *settings, name="second")
    assert (first.results["cache"], second.results["cache"]) == ("miss", "hit")
    np.testing.assert_array_equal(np.load(second.dir / "codes.npy"), np.load(first.dir / "codes.npy"))
    assert second.results["acc"] == first.results["acc"]
    # With the fit images' codes reduced too: the fit step's own codes on a miss, encoded again on a hit, the same
    with_fit = [*settings, "data.eval_fraction=0.3", "task.reduce_with_fit_codes=true", "task.fit_codes_sample=400"]
    monkeypatch.undo()
    missed = run_job(tmp_path, *with_fit, name="missed")
    hit = run_job(tmp_path, *with_fit, name="hit")
    assert (missed.results["cache"], hit.results["cache"]) == ("miss", "hit")
    assert (missed.dir / "predictions.csv").read_text() == (hit.dir / "predictions.csv").read_text()


def test_the_same_seed_trains_the_same_model_and_another_seed_does_not(tmp_path):
    settings = [*QUICK, *PCA4, "logger=none", "cache=false"]
    runs = [run_job(tmp_path, *settings, f"seed={seed}", name=name) for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    weights = [torch.load(r.dir / "model.pt", weights_only=True)["state_dict"]["encoder.0.weight"] for r in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert (runs[0].dir / "predictions.csv").read_text() == (runs[1].dir / "predictions.csv").read_text()
    assert runs[0].results["cache"] == "off"


@pytest.fixture
def npy_files(tmp_path: Path) -> dict[str, str]:
    """A user's own images and labels, saved as the assignments' .npy files."""
    images, labels = two_class_images(120)
    paths = {"images": tmp_path / "images.npy", "labels": tmp_path / "labels.npy"}
    np.save(paths["images"], images)
    np.save(paths["labels"], labels)
    return {k: str(v) for k, v in paths.items()}


def test_own_npy_images_with_labels_are_scored(tmp_path, npy_files):
    job = run_job(tmp_path, "data=npy", f"data.train_path={npy_files['images']}",
                  f"data.eval_labels_path={npy_files['labels']}", "trainer.max_epochs=5", "model.latent_dim=4",
                  "reducer=pca", "reducer.n_components=2", "logger=csv")
    assert job.results["n_clusters"] == 2 and job.results["acc"] > 0.9, "stripes one way or the other"
    assert list((job.dir / "csv").glob("**/metrics.csv")), "logger=csv writes the training curves"


def test_own_npy_images_without_labels_give_null_scores_and_still_predictions(tmp_path, npy_files):
    job = run_job(tmp_path, "data=npy", f"data.train_path={npy_files['images']}", "clusterer.n_clusters=2",
                  "trainer.max_epochs=1", "reducer=none", "logger=none", "plots.tsne=false")
    assert all(job.results[k] is None for k in ("public_score", "private_score", "acc", "nmi", "ari", "knn_acc"))
    assert job.score is None and job.results["recon_mse"] > 0
    assert len(read_csv(job.dir / "predictions.csv")) == 120
    assert job.results["reduced_dim"] == job.results["latent_dim"] == 32


@pytest.mark.parametrize("reducer, method", [("tsne_exact", "tSNE (exact)"), ("tsne_sampled", "tSNE (sampled)")])
def test_the_torch_tsnes_reduce_codes_to_eight_dimensions(reducer, method, tmp_path):
    job = run_job(tmp_path, *QUICK, f"reducer={reducer}", "reducer.n_components=8", "reducer.n_iter=300",
                  "reducer.n_samples=100" if reducer == "tsne_sampled" else "reducer.chunk_size=128",
                  "data.eval_limit=500", "plots.tsne=false", "logger=none")
    assert (job.results["reduced_method"], job.results["reduced_dim"]) == (method, 8)
    assert job.results["acc"] > 0.6 and job.results["tsne_kl"] > 0


def test_the_reducer_can_embed_the_fit_images_codes_with_the_eval_images_and_keeps_the_eval_rows():
    rng = np.random.default_rng(0)
    fit_codes, codes = rng.normal(size=(200, 6)) * [5, 4, 3, 2, 1, 1], rng.normal(size=(50, 6)) + 3
    fit_rows, together = reduce_codes(PCA(2), codes_to_embed(codes, fit_codes), len(codes))
    pca = PCA(2).fit(np.concatenate([fit_codes, codes]))
    np.testing.assert_allclose(together, pca.transform(codes), atol=1e-9)
    np.testing.assert_allclose(fit_rows, pca.transform(fit_codes), atol=1e-9)
    no_fit_rows, alone = reduce_codes(PCA(2), codes_to_embed(codes), len(codes))
    np.testing.assert_allclose(alone, PCA(2).fit_transform(codes))
    assert no_fit_rows is None and not np.allclose(np.abs(together), np.abs(alone)), "the fit codes changed it"


def test_smoothing_averages_each_code_with_its_nearest_and_pulls_a_stray_code_to_its_own_group():
    codes = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [13.0]])
    np.testing.assert_allclose(neighbour_mean(codes, 2).ravel(), [1, 1, 1, 34 / 3, 34 / 3, 34 / 3])
    assert neighbour_mean(codes, 0) is codes, "0: the codes as they are"
    rng = np.random.default_rng(0)  # two groups; a code of the first lies nearer the second's centre than its own
    first, second = rng.normal(0, 1, size=(40, 5)), rng.normal(6, 1, size=(40, 5))
    stray = np.full((1, 5), 3.2)
    smoothed = neighbour_mean(np.concatenate([stray, first, second]), 10)
    assert np.linalg.norm(smoothed[0] - 6) < np.linalg.norm(smoothed[0]), "averaged with the group it is nearest"
    spread = [np.linalg.norm(group - group.mean(0), axis=1).mean() for group in (first, smoothed[1:41])]
    assert spread[1] < spread[0] / 2, "a group's codes drawn together"
    # In the job's reducer stage the fit codes take part: an eval code is averaged with fit codes too
    fit_codes, eval_codes = np.array([[0.0], [0.2], [9.8], [10.0]]), np.array([[0.4], [9.6]])
    embedded = codes_to_embed(eval_codes, fit_codes, smooth_neighbors=2)
    fit_rows, reduced = reduce_codes(FunctionTransformer(), embedded, len(eval_codes))  # no reduction
    np.testing.assert_allclose(reduced.ravel(), [0.2, 9.8])  # the mean of 0, 0.2 and 0.4; of 9.6, 9.8 and 10
    np.testing.assert_allclose(fit_rows.ravel(), [0.2, 0.2, 9.8, 9.8])


def test_the_clusterer_can_be_fitted_to_the_fit_images_reduced_codes_too_and_assigns_the_eval_images():
    rng = np.random.default_rng(0)  # many fit codes in two blobs, a few eval codes between them, leaning right
    fit_reduced = np.concatenate([rng.normal(-4, 1, size=(500, 2)), rng.normal(4, 1, size=(500, 2))])
    reduced = rng.normal(0.5, 0.3, size=(6, 2))
    alone = cluster_codes(KMeans(2, n_init=3, random_state=0), reduced)
    assert len(set(alone)) == 2, "fitted to the eval codes alone, the two clusters split them"
    together = cluster_codes(KMeans(2, n_init=3, random_state=0), reduced, fit_reduced)
    right = KMeans(2, n_init=3, random_state=0).fit(fit_reduced).predict([[4, 4]])[0]
    assert list(together) == [right] * 6, "fitted to all the codes, the blobs are the clusters"


def test_one_neighbour_search_serves_umap_and_the_repair_as_their_own_searches_would():
    rng = np.random.default_rng(0)
    fit, evaluation = rng.normal(size=(200, 6)), rng.normal(size=(100, 6)) + 1
    umap = UMAP(n_components=2, n_neighbors=10, n_epochs=30, random_state=0)
    depth = neighbours_needed(umap, repair=True, n_codes=300)
    assert depth == 15, "the deeper of UMAP's 10 and the repair's 15"
    smoothed, _ = embedded_and_graph(Codes(evaluation, fit, None), smooth_neighbors=3, neighbours=depth)
    np.testing.assert_array_equal(smoothed, codes_to_embed(evaluation, fit, 3))
    # (averaged codes can coincide, and UMAP's layout follows the order of tied neighbours: compared unaveraged)
    embedded, graph = embedded_and_graph(Codes(evaluation, fit, None), smooth_neighbors=0, neighbours=depth)
    given = with_neighbours(umap, graph)
    assert given is not umap and umap.precomputed_knn[0] is None, "a copy: the configured reducer is left as it was"
    np.testing.assert_allclose(given.fit_transform(embedded), umap.fit_transform(embedded), atol=1e-5)
    repair = NearestNeighbors(n_neighbors=16).fit(embedded).kneighbors(embedded, return_distance=False)
    np.testing.assert_array_equal(graph[0][:, 1:16], repair[:, 1:], "the repair's 15 nearest, self left out")
    assert neighbours_needed(UMAP(metric="cosine"), repair=False, n_codes=300) == 0, "a graph of its own metric"
    assert neighbours_needed(umap, repair=False, n_codes=UMAP.EXACT_UP_TO + 1) == 0, "umap-learn's own search"
    assert with_neighbours(PCA(2), graph).get_params() == PCA(2).get_params() and with_neighbours(umap, None) is umap


def three_equal_classes(gap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three classes of 300 codes: the first in two touching halves (or halves `gap` apart), the other two side by
    side; and a partition a mixture might give: the first class's halves two clusters, the other two one."""
    rng = np.random.default_rng(0)
    halves = [rng.normal([0, 0], 0.5, size=(150, 2)), rng.normal([1.5, gap], 0.5, size=(150, 2))]
    codes = np.concatenate([*halves, rng.normal([10, 0], 0.5, size=(300, 2)), rng.normal([10, 4], 0.5, size=(300, 2))])
    classes = np.repeat([0, 1, 2], 300)
    return codes, classes, np.repeat([0, 1, 2], [150, 150, 600])


def split_in_two(members: np.ndarray) -> np.ndarray:
    return KMeans(2, n_init=3, random_state=0).fit_predict(members)


def test_rebalancing_merges_a_classs_two_joined_halves_and_splits_the_cluster_of_two_classes():
    codes, classes, partition = three_equal_classes(gap=0)
    labels, rounds = rebalance(partition, codes, embed=lambda members: members, split=split_in_two, rounds=3)
    assert adjusted_rand_score(classes, labels) == 1, "the classes, to the code"
    assert len(rounds) == 1, "then every cluster is of the mean size: nothing more to repair"
    assert rounds[0]["merged"] == [0, 1] and rounds[0]["split"] == 2 and sorted(rounds[0]["split_sizes"]) == [300, 300]
    assert list(partition[:300]) == [0] * 150 + [1] * 150, "the partition given is left as it was"
    assert rebalance(partition, codes, lambda members: members, split_in_two, rounds=0)[1] == [], "0 rounds: off"


def test_rebalancing_stops_with_a_warning_where_the_reducer_cannot_embed_the_largest_cluster_alone(caplog):
    codes, _, partition = three_equal_classes(gap=0)

    def too_few_for_tsne(members: np.ndarray) -> np.ndarray:
        raise ValueError(f"perplexity=30 needs more than 90 points (3 x perplexity), got {len(members)}")

    labels, rounds = rebalance(partition, codes, embed=too_few_for_tsne, split=split_in_two, rounds=3)
    assert rounds == [] and list(labels) == list(partition), "the partition as the clusterer left it, not half merged"
    assert "rebalance: stopped, cluster 2 (600 codes) cannot be embedded on its own: perplexity=30" in caplog.text


def test_rebalancing_leaves_two_small_clusters_nothing_joins():
    codes, _, partition = three_equal_classes(gap=50)  # two islands: more likely two classes than one class's halves
    labels, rounds = rebalance(partition, codes, embed=lambda members: members, split=split_in_two, rounds=3)
    assert rounds == [] and list(labels) == list(partition)


@pytest.mark.parametrize(("with_fit_codes", "n_clustered", "n_eval"), [(True, 1000 + 540, 540), (False, 600, 600)])
def test_a_job_rebalances_all_the_codes_it_clustered_and_records_each_round(tmp_path, with_fit_codes, n_clustered,
                                                                            n_eval):
    # Twenty clusters of ten digits: some must be small and joined, so at least one round merges and splits
    where = (["data.eval_fraction=0.3", "task.reduce_with_fit_codes=true", "task.cluster_with_fit_codes=true"]
             if with_fit_codes else [])  # else the eval images' codes alone are reduced and clustered
    job = run_job(tmp_path, *QUICK, *PCA4, *where, "clusterer=gmm", "clusterer.n_clusters=20", "task.rebalance_rounds=2",
                  "task.size_prior=equal")
    rounds = job.results["rebalanced"]
    assert "rebalance" in job.results["seconds"], "the stage is timed with the others"
    # A range on purpose: how many rounds the digits need is theirs to say; at least one (some of twenty clusters of
    # ten classes are small and joined), and no more than the two rounds asked for
    assert 1 <= len(rounds) <= 2, rounds
    mean_size = n_clustered / 20  # of all the clusters the clusterer made, which it repairs
    assert max(rounds[0]["merged_sizes"]) < 0.75 * mean_size < 1.3 * mean_size < sum(rounds[0]["split_sizes"])
    clusters = [int(row["label"]) for row in read_csv(job.dir / "predictions.csv")]
    assert len(clusters) == n_eval and set(clusters) <= set(range(20)), "every eval image, in one of the 20 clusters"
    assert len(set(clusters)) > 10, "a merge frees a cluster's number and the split takes it: the clusters stay many"


def test_a_job_reduces_the_fit_and_eval_codes_together_and_clusters_only_the_eval_images(tmp_path):
    job = run_job(tmp_path, *QUICK, *PCA4, "data.eval_fraction=0.3", "task.reduce_with_fit_codes=true")
    n_fit, n_eval = 1000, 540  # QUICK's data.fit_limit; digits' held-out 30%, rounded up by scikit-learn
    assert job.results["reduced_codes"] == n_fit + n_eval and job.results["reduced_dim"] == 4
    assert len(read_csv(job.dir / "predictions.csv")) == n_eval and job.results["acc"] > 0.5
    # The clusterer fitted to all the reduced codes too: the same embedding, another fit, the eval images assigned
    both = run_job(tmp_path, *QUICK, *PCA4, "data.eval_fraction=0.3", "task.reduce_with_fit_codes=true",
                   "task.cluster_with_fit_codes=true", name="both")
    clusters = [row["label"] for row in read_csv(both.dir / "predictions.csv")]
    assert len(clusters) == n_eval and both.results["acc"] > 0.5
    assert clusters != [row["label"] for row in read_csv(job.dir / "predictions.csv")], "another fit, other clusters"
    # A sample of the fit images' codes (drawn by the seed) reduced and clustered with the eval images'
    sample = run_job(tmp_path, *QUICK, *PCA4, "data.eval_fraction=0.3", "task.reduce_with_fit_codes=true",
                     "task.cluster_with_fit_codes=true", "task.fit_codes_sample=300", name="sample")
    assert sample.results["reduced_codes"] == 300 + n_eval and len(read_csv(sample.dir / "predictions.csv")) == n_eval


@pytest.fixture
def umap_compiled() -> None:
    """UMAP's first fit in a process compiles umap-learn's numba functions: 8 s on 2 cores, and 60% more
    under the coverage tracer, which has nothing to measure in them. Fit the recipe's UMAP once, untraced."""
    reducer = instantiate(compose_config("+recipe=n2d", "reducer.n_epochs=5").reducer)  # traced: our umap_exact
    with untraced():
        reducer.fit_transform(np.random.default_rng(0).random((60, 10), dtype=np.float32))


def test_the_raw_pixel_baseline_is_k_means_of_the_eval_images_pixels_with_nothing_trained(tmp_path):
    job = run_job(tmp_path, *QUICK, "+recipe=raw_pixels")
    data = instantiate(compose_config(*QUICK).data)
    data.setup()
    pixels = data.eval_images.flatten(1).numpy()
    np.testing.assert_array_equal(np.load(job.dir / "codes.npy"), pixels)
    expected = KMeans(10, n_init=10, random_state=0).fit_predict(pixels)
    assert [int(p["label"]) for p in read_csv(job.dir / "predictions.csv")] == expected.tolist()
    results = job.results
    assert (results["model"], results["latent_dim"], results["reduced_dim"], results["recon_mse"]) == ("pixels", 64, 64, 0)
    assert torch.load(results["checkpoint"], weights_only=True)["history"] == [], "no epoch ran"


def test_n2ds_recipe_runs_its_dense_autoencoder_umap_and_gaussian_mixture(tmp_path, umap_compiled, capsys):
    capsys.readouterr()  # not the fixture's UMAP: the job's
    job = run_job(tmp_path, *QUICK, "+recipe=n2d", "model.hidden=[128,128,256]", "trainer.max_epochs=12",
                  "reducer.n_epochs=30", "logger=none", "data.eval_fraction=0.3", "data.eval_limit=300",
                  "plots.reconstructions=2", "reducer.tqdm_kwds.delay=0")  # the bar at once: this UMAP is short
    assert "UMAP epochs:   0%| " in capsys.readouterr().err, "UMAP, make run's longest stage, shows its progress"
    results = job.results
    assert (results["model"], results["reducer"], results["clusterer"]) == ("dense_autoencoder", "umap", "gmm")
    assert results["latent_dim"] == 10 and results["reduced_dim"] == 10
    assert results["reduced_codes"] == 1000 + 300, "UMAP embeds the fit images' codes too, as N2D"
    assert results["acc"] > 0.2  # twice chance after a minute's training: the parts are wired (figures: README)


@pytest.mark.parametrize(("recipe", "model", "code_size", "epochs", "least_knn_acc", "least_acc"), [
    ("random_conv", "random_conv", 128, 0, 0.8, 0.6),  # nothing to train
    ("random_conv_pca", "random_conv_pca", 100, 0, 0.8, 0.6),  # nothing to train, a PCA to fit
    # N2D's autoencoder on the features' principal components, 8 steps of training: 0.77 and 0.65 measured
    ("random_conv_n2d", "random_conv_autoencoder", 10, 2, 0.6, 0.4),
])
def test_the_random_feature_recipes_cluster_the_digits_and_report_no_reconstructions(
        tmp_path, umap_compiled, recipe, model, code_size, epochs, least_knn_acc, least_acc):
    # Two starts of the Gaussian mixture, not random_conv_pca's 20 (seconds more on the digits): this test is the wiring
    job = run_job(tmp_path, *QUICK, f"+recipe={recipe}", "reducer.n_epochs=30", "clusterer.n_init=2", "logger=none",
                  "data.eval_fraction=0.3", "data.eval_limit=300", figures=True)
    results = job.results
    assert (results["model"], results["reducer"], results["clusterer"]) == (model, "umap", "gmm")
    assert results["latent_dim"] == code_size and results["reduced_codes"] == 1000 + 300
    assert len(torch.load(results["checkpoint"], weights_only=True)["history"]) == epochs
    assert results["recon_mse"] is None and results["recon_mse_examples"] == []
    assert not (job.dir / "plots" / "reconstructions.png").exists() and (job.dir / "plots" / "embedding_pca.png").exists()
    assert results["knn_acc"] > least_knn_acc and results["acc"] > least_acc, "the digits told apart, far above chance"


def test_umap_builds_its_graph_on_the_exact_neighbours_and_keeps_its_parameters(umap_compiled):
    rng = np.random.default_rng(0)  # 5,000 points: beyond the 4,096 below which umap-learn itself searches exactly
    X = np.concatenate([rng.normal(size=(2500, 6)), rng.normal(8, 1, size=(2500, 6))]).astype(np.float32)
    reducer = instantiate(compose_config("reducer=umap", "reducer.n_components=2", "reducer.n_epochs=20").reducer)
    embedding = reducer.fit_transform(X)
    exact = NearestNeighbors(n_neighbors=reducer.n_neighbors).fit(X).kneighbors(X)[1]
    np.testing.assert_array_equal(reducer._knn_indices, exact)
    assert reducer._knn_search_index is None, "pynndescent's approximate search never ran"
    assert reducer.get_params()["precomputed_knn"] == (None, None, None), "the parameter as configured"
    blobs = KMeans(2, n_init=1, random_state=0).fit_predict(embedding)
    assert adjusted_rand_score(blobs, [0] * 2500 + [1] * 2500) == 1, "the blobs stay apart in the embedding"
    # umap-learn's own search where an exact one cannot be done or would not pay
    assert not reducer.set_params(metric="hamming").searches_exactly(X)
    assert not reducer.set_params(metric="euclidean", n_neighbors=5000).searches_exactly(X)
    reducer.set_params(n_neighbors=20)
    assert reducer.searches_exactly(np.zeros((reducer.EXACT_UP_TO, 2), dtype=np.float32))
    assert not reducer.searches_exactly(np.zeros((reducer.EXACT_UP_TO + 1, 2), dtype=np.float32))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.latent_dim=0"], "model.latent_dim must be at least 1"),
        (["reducer=umap", "reducer.n_neighbors=1"], "reducer.n_neighbors=1 must be at least 2"),
        (["reducer=umap", "reducer.metric=cosin"], "reducer.metric='cosin' is not one of umap-learn's metrics"),
        # what umap-learn checks only inside fit(), after the training (experiments.umap_exact.UMAP.check_params)
        (["reducer=umap", "reducer.n_epochs=-5"], r"reducer.n_epochs == -5, must be >= 0"),
        (["reducer=umap", "+reducer.learning_rate=-1"], r"reducer.learning_rate == -1, must be > 0"),
        (["reducer=umap", "reducer.min_dist=2"], r"reducer.min_dist=2 must not exceed spread=1.0"),
        (["reducer=pca", "reducer.n_components=64"], r"reducer.n_components=64 .* of size 32 \(what .* returns\); use 1..32"),
        (["reducer=pca", "+reducer.svd_solver=fastest"], r"reducer \(PCA\): The 'svd_solver' parameter"),
        (["reducer=pca", "reducer.n_components=600", "model.latent_dim=1000", "data.eval_limit=500"], "use 1..500"),
        (["reducer=tsne_exact", "reducer.n_components=0"], "n_components"),
        (["reducer.perplexity=-3"], "reducer.perplexity == -3, must be > 0"),
        (["data.eval_limit=60"], "reducer.perplexity=30 needs more than 90 points"),
        (["reducer.n_iter=0"], "n_iter"),
        (["reducer.initialization=magic"], "initialization"),
        (["reducer=tsne_exact", "reducer.dtype=float16"], "dtype"),
        (["clusterer.n_clusters=5000"], "clusterer.n_clusters=5000 is more clusters than the 1797 eval images"),
        (["clusterer.n_clusters=0"], "clusterer.n_clusters must be at least 1"),
        (["clusterer.n_clusters=abc"], "clusterer.n_clusters='abc': use a whole number"),
        (["clusterer.n_init=-1"], r"clusterer \(KMeans\).*n_init"),
        (["clusterer=gmm", "clusterer.covariance_type=round"], r"clusterer \(GaussianMixture\).*covariance_type"),
        (["clusterer=agglomerative", "clusterer.linkage=nearest"], r"clusterer \(AgglomerativeClustering\).*linkage"),
        (["clusterer=agglomerative", "+clusterer.metric=cosine"], "cosine was provided as metric. Ward can only work"),
        (["model.channels=[8,8]", "model.kernel_size=5", "model.padding=0"], "shrink a 8x8 image to nothing"),
        (["model.kernel_size=0"], "model.kernel_size"),
        (["model=sparse_coding", "model.lam=-1"], "model.lam must be >= 0"),
        (["model=sparse_coding", "model.encode_iterations=0"], "model.encode_iterations"),
        (["model=mlp"], r"MLPClassifier is not one; the classifier \(model=mlp\) is trained by task=classify"),
        (["data.batch_size=0"], "data.batch_size must be at least 1"),
        (["data.eval_limit=abc"], "data.eval_limit='abc': use a whole number"),
        (["plots.max_points=1"], r"plots.max_points=1 must be at least 2 \(codes drawn in the 2-D plots\)"),
        (["plots.reconstructions=0"], "plots.reconstructions=0 must be at least 1"),
        (["plots.max_points=abc"], "plots.max_points='abc': use a whole number"),
        (["plots.enabled=yes"], "plots.enabled='yes': use true or false"),
        (["trainer.max_epochs=-5"], "trainer: `max_epochs` must be a non-negative integer"),
        (["trainer.max_epochs=-1"], "trainer.max_epochs=-1 trains without end; give a number of epochs"),
        # counts Lightning takes as given and asserts on mid-fit, after the W&B run has started
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc': use a whole number"),
        (["trainer.max_epochs=1.5"], "trainer.max_epochs=1.5: use a whole number"),
        (["+trainer.check_val_every_n_epoch=true"], "trainer.check_val_every_n_epoch=True: use a whole number"),
        (["trainer.enable_progress_bar=maybe"], "trainer.enable_progress_bar='maybe': use true or false"),
        (["trainer.deterministic=yes"], "trainer.deterministic='yes': use true, false or warn"),
        (["task.reduce_with_fit_codes=yes"], "task.reduce_with_fit_codes='yes': use true or false"),  # a word: true
        # optimiser settings torch checks only when fit() builds the optimiser
        (["model.lr=-1"], r"model: its optimiser refuses the settings \(Invalid learning rate: -1"),
        (["model.lr=abc"], "model.lr='abc': use a number"),  # the constructor's hints, before the optimiser
        (["model.weight_decay=-0.5"], "Invalid weight_decay value: -0.5"),
        (["model=sparse_coding", "model.lr=-0.1"], "Invalid learning rate: -0.1"),
        (["trainer.precision=8-bit"], "trainer: Precision '8-bit' is invalid"),
        (["trainer.devices=0"], "trainer: `Trainer\\(devices=0\\)`"),
        (["data.fit_limit=0"], "data.fit_limit must be at least 1"),
        (["model=random_conv_autoencoder", "data.fit_limit=50"], "model.n_components=100 is more than the 50 fit"),
        (["model=random_conv_pca", "data.fit_limit=50"], r"model.latent_dim=100 is more than the 50 fit images"),
        (["task.reduce_with_fit_codes=true"], "here the eval images are the fit images; hold some out"),
        (["task.cluster_with_fit_codes=true"], "only task.reduce_with_fit_codes=true reduces them; set both"),
        (["task.smooth_neighbors=-1"],
         r"task.smooth_neighbors=-1 must be between 0 \(codes as they are\) and 1796, below the 1797 codes of the eval"),
        (["task.smooth_neighbors=1.5"], "task.smooth_neighbors=1.5: use a whole number"),
        (["task.reduce_with_fit_codes=true", "data.eval_fraction=0.3", "data.fit_limit=20", "data.eval_limit=10",
          "task.smooth_neighbors=30"], "task.smooth_neighbors=30 must be .* below the 30 codes of the fit and eval"),
        (["task.reduce_with_fit_codes=true", "task.cluster_with_fit_codes=true", "data.eval_fraction=0.3",
          "clusterer=agglomerative"], "clusterer AgglomerativeClustering cannot assign the eval images"),
        (["task.reduce_with_fit_codes=true", "data.eval_fraction=0.5", "data.fit_limit=20", "data.eval_limit=60"],
         r"needs more than 90 points .*\(the fit and eval images\)"),
        (["task.rebalance_rounds=-1"], r"task.rebalance_rounds=-1 must be 0 \(the clusterer's partition as it is\)"),
        (["task.fit_codes_sample=0", "task.reduce_with_fit_codes=true", "data.eval_fraction=0.3"],
         r"task.fit_codes_sample=0 must be at least 1 \(null: all 1257 fit images' codes\)"),
        (["task.rebalance_rounds=yes"], "task.rebalance_rounds='yes': use a whole number"),
        (["task.rebalance_rounds=1", "data.eval_limit=15", "reducer=pca", "reducer.n_components=2",
          "clusterer.n_clusters=2"], "compares each code's 15 nearest, and only 15 codes are clustered"),
    ],
)
def test_bad_cluster_settings_are_refused_by_the_check_naming_the_setting(overrides, message):
    with pytest.raises(UserError, match=message):
        check_job("data=digits", *overrides)


def test_an_unknown_score_is_refused_with_the_kinds_scores(tmp_path):
    with pytest.raises(UserError, match="task.score='psnr' is not a score of task=cluster; use one of public_score"):
        run_job(tmp_path, *QUICK, "task.score=psnr")


class OneCycleAutoencoder(ConvAutoencoder):
    """A learning-rate schedule sized by the Trainer's steps (a common Lightning pattern): its optimiser needs the
    Trainer, which the check has not built."""

    def configure_optimizers(self) -> dict:
        optimizer = super().configure_optimizers()
        steps = self.trainer.estimated_stepping_batches
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, steps)}


def test_an_optimiser_that_needs_its_trainer_is_left_to_fit():
    with pytest.raises(RuntimeError, match="not attached to a `Trainer`"):
        OneCycleAutoencoder((1, 8, 8), latent_dim=4).configure_optimizers()
    check_optimizer(OneCycleAutoencoder((1, 8, 8), latent_dim=4))  # passes: fit() will build it
    with pytest.raises(UserError, match="Invalid learning rate: -1"):
        check_optimizer(OneCycleAutoencoder((1, 8, 8), latent_dim=4, lr=-1))  # torch's check comes first


@pytest.mark.parametrize("switch, message", [("resume=no", "resume='no'"), ("cache=off", "cache='off'")])
def test_a_word_for_a_switch_is_refused_before_the_data_loads(switch, message):
    # "no" is a word to Hydra's parser, and a word is true: resume=no would resume
    with pytest.raises(UserError, match=f"^{message}: use true or false$"):
        pipeline.check_settings(compose_config("data=digits", switch))


def test_lightnings_endless_max_epochs_passes_with_something_else_to_end_it():
    check_job("data=digits", "trainer.max_epochs=-1", "+trainer.max_steps=20")
    check_job("data=digits", "trainer.max_epochs=-1", "+trainer.max_time=00:00:01:00")


@pytest.mark.parametrize("seed", ["abc", "-1", "1.5", "null", "true", "4294967296"])
def test_a_seed_that_is_not_a_32_bit_whole_number_is_refused_before_anything_runs(tmp_path, seed):
    with pytest.raises(UserError, match="seed=.*: use a whole number from 0 to 4294967295"):
        run_job(tmp_path, *QUICK, f"seed={seed}", "logger=wandb")
    assert not (tmp_path / "run" / "wandb").exists() and not list((tmp_path / "cache").glob("*"))


def test_a_refused_setting_fails_before_training_and_before_a_wandb_run(tmp_path):
    with pytest.raises(UserError, match="reducer.n_components=64"):
        run_job(tmp_path, *QUICK, "reducer=pca", "reducer.n_components=64")
    assert not (tmp_path / "run" / "wandb").exists(), "no W&B run was created"
    assert not list((tmp_path / "cache").glob("*")), "nothing was trained"


def test_a_job_failing_after_training_keeps_its_model_and_marks_its_wandb_run_failed(tmp_path, monkeypatch):
    def crash(self, X, y=None):
        raise RuntimeError("the reducer crashed")

    monkeypatch.setattr(OpenTSNE, "fit_transform", crash)
    with pytest.raises(RuntimeError, match="the reducer crashed"):
        run_job(tmp_path, *QUICK, "cache=false", "logger=wandb")
    assert "encoder.0.weight" in torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    (run,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    summary = wandb_summary(run)
    assert summary["exit_code"] == 1 and summary["state"] != "finished", "the failed job's W&B run is marked failed"
    assert not (tmp_path / "run" / "results.json").exists(), "results.json exists only for a finished job"


def test_wandb_disabled_keeps_the_calls_but_records_nothing(tmp_path):
    job = run_job(tmp_path, *QUICK, *PCA4, "logger.mode=disabled")
    assert job.results["acc"] > 0 and not list((tmp_path / "run").glob("wandb/*run-*"))


def test_the_score_a_sweeper_optimises_is_a_setting(tmp_path):
    job = run_job(tmp_path, *QUICK, *PCA4, "logger=none", "task.score=recon_mse")
    assert job.score == job.results["recon_mse"]
    assert (job.results["score"], job.results["score_direction"]) == ("recon_mse", "min")
