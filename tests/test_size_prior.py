"""The size prior: an assumption of classes of equal size, a named setting (task.size_prior) off unless asked, said in
the log when on, taken by make run's recipe only where the data declares it (data.class_sizes), and checked against
the labels where they show the sizes. The repair it allows does nothing where it is off, and no harm there."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import compose_config, run_job, two_class_images
from sklearn.cluster import KMeans

from experiments.clusterers import rebalance
from experiments.errors import UserError


def test_the_recipe_assumes_equal_classes_only_where_the_data_declares_them():
    assert compose_config("+recipe=random_conv_pca").task.size_prior == "equal", "Fashion-MNIST: 6,000 a class"
    assert compose_config("+recipe=random_conv_pca", "data=digits").task.size_prior == "equal"
    assert compose_config("+recipe=random_conv_pca", "data=npy").task.size_prior == "none", "yours: unless you say"
    assert compose_config("+recipe=random_conv_pca", "data=npy", "data.class_sizes=equal").task.size_prior == "equal"
    assert compose_config().task.size_prior == "none", "off unless asked"


def imbalanced_npy(tmp_path, sizes: tuple[int, int] = (240, 60)) -> list[str]:
    """Two classes of unequal sizes (stripes one way, and the other), as data=npy settings."""
    images, labels = two_class_images(2 * max(sizes), seed=1)
    rows = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(sizes)])
    np.save(tmp_path / "x.npy", images[rows])
    np.save(tmp_path / "y.npy", labels[rows])
    return ["data=npy", f"data.train_path={tmp_path / 'x.npy'}", f"data.eval_labels_path={tmp_path / 'y.npy'}"]


def test_classes_declared_of_equal_size_are_checked_against_the_labels(tmp_path):
    with pytest.raises(UserError, match="data.class_sizes=equal, and the eval labels' classes hold 60 to 240 images"):
        run_job(tmp_path, *imbalanced_npy(tmp_path), "data.class_sizes=equal")


# make run's recipe, small: its smoothing, mixture of 20 starts and repair, on a PCA instead of UMAP
SMALL_RECIPE = ["+recipe=random_conv_pca", "model.latent_dim=8", "model.n_filters=8", "model.pool=2", "reducer=pca",
                "~reducer.n_epochs",
                "reducer.n_components=2", "task.reduce_with_fit_codes=false", "task.cluster_with_fit_codes=false",
                "clusterer.n_clusters=3"]


def test_on_imbalanced_data_the_recipe_leaves_the_partition_as_the_clusterer_made_it(tmp_path, caplog):
    data = imbalanced_npy(tmp_path)
    with caplog.at_level(logging.INFO):
        recipe = run_job(tmp_path, *data, *SMALL_RECIPE, name="recipe")
    assert "no size repair: task.rebalance_rounds=3 needs task.size_prior=equal" in caplog.text
    plain = run_job(tmp_path, *data, *SMALL_RECIPE, "task.size_prior=none", "task.rebalance_rounds=0", name="plain")
    assert recipe.results["rebalanced"] == [] and "rebalance" not in recipe.results["seconds"]
    assert (recipe.dir / "predictions.csv").read_text() == (plain.dir / "predictions.csv").read_text(), "no harm"
    with caplog.at_level(logging.INFO):
        assumed = run_job(tmp_path, *data, *SMALL_RECIPE, "task.size_prior=equal", name="assumed")
    assert "size prior: the classes are assumed of equal size (task.size_prior=equal)" in caplog.text
    assert "rebalance" in assumed.results["seconds"], "asked for, the repair runs (here it finds nothing to mend)"


def test_the_halves_of_a_split_are_not_merged_again_in_a_later_round():
    rng = np.random.default_rng(0)

    def blob(centre: tuple[float, float], n: int) -> np.ndarray:
        return rng.normal(centre, 0.15, size=(n, 2))

    # cluster 0: a large blob and a small one beside cluster 1's and 2's; cluster 3 far away
    codes = np.concatenate([blob((0, 0), 500), blob((10, 0), 100), blob((10, 0.8), 100), blob((10, 1.6), 100),
                            blob((-10, 10), 300)])
    labels = np.repeat([0, 0, 1, 2, 3], [500, 100, 100, 100, 300])
    halves = KMeans(2, n_init=3, random_state=0)
    repaired, rounds = rebalance(labels, codes, embed=lambda members: members, split=halves.fit_predict, rounds=3)
    assert rounds[0]["merged"] == [1, 2] and rounds[0]["split"] == 0 and sorted(rounds[0]["split_sizes"]) == [100, 500]
    assert len(rounds) == 1, "the small half of cluster 0 is not merged back into its neighbours in a second round"
    assert np.bincount(repaired).tolist() == [500, 200, 100, 300]
