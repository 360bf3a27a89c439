"""Plots and tables in the data's language: class names wherever a label is shown, clusters coloured and ordered by
the class the accuracy matches them to, a view of what was clustered, a confusion matrix with names on both axes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_job, two_class_images

from experiments import plots
from experiments.data import Digits, FashionMNIST, NpyImages
from experiments.errors import UserError
from experiments.metrics import cluster_accuracy, matched_classes


def test_each_data_set_names_its_classes():
    fashion = FashionMNIST(root="/nowhere")  # names need no file
    assert [fashion.class_name(k) for k in (0, 6, 9)] == ["T-shirt/top", "Shirt", "Ankle boot"]
    assert [Digits().class_name(k) for k in (0, 7)] == ["0", "7"]
    assert NpyImages(class_names=["cat", "dog"]).class_name(1) == "dog"
    assert NpyImages().class_name(4) == "4", "without names, the number"


def test_class_names_must_name_every_label(tmp_path):
    images, labels = two_class_images(20)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels + 1)  # labels 1 and 2
    data = NpyImages(train_path=str(tmp_path / "x.npy"), eval_labels_path=str(tmp_path / "y.npy"),
                     class_names=["vertical", "horizontal"])
    with pytest.raises(UserError, match=r"data.class_names names 2 classes \(labels 0 to 1\), and the eval labels run "
                                        r"from 1 to 2"):
        data.setup()


def test_clusters_are_matched_to_classes_as_the_accuracy_matches_them():
    labels = np.array([7, 7, 7, 3, 3, 3, 5, 5])
    clusters = np.array([2, 2, 0, 0, 0, 0, 1, 1])
    matched = matched_classes(labels, clusters)
    assert matched == {2: 7, 0: 3, 1: 5}
    assert cluster_accuracy(labels, clusters) == np.mean([matched[c] == y for c, y in zip(clusters, labels)])
    assert matched_classes(np.array([0, 0, 1]), np.array([0, 1, 2])) == {0: 0, 2: 1}, "cluster 1 is left unmatched"


def point_colours(fig) -> list[list[str]]:
    """Each panel's points' colours, as hex."""
    import matplotlib.colors

    return [[matplotlib.colors.to_hex(c) for c in ax.collections[0].get_facecolors()] for ax in fig.axes]


def test_a_cluster_takes_the_colour_of_its_class_and_an_unmatched_one_is_grey():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    clusters = np.repeat([5, 3, 3], 30)  # cluster 5 is class 0; cluster 3 holds classes 1 and 2
    clusters[60:70] = 9  # a third cluster inside class 2
    names = {0: "T-shirt/top", 1: "Trouser", 2: "Pullover"}
    fig = plots.embedding_figure(rng.normal(size=(90, 2)), labels, clusters, "view", names,
                                 matched_classes(labels, clusters))
    by_class, by_cluster = point_colours(fig)
    assert by_cluster[0] == by_class[0], "cluster 5 is class 0: the same colour"
    assert {by_cluster[i] for i in range(30, 60)} == {by_class[30]}, "cluster 3 is matched to class 1"
    assert by_cluster[65] == by_class[75], "cluster 9 is matched to class 2, its majority"
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["3 → Trouser", "5 → T-shirt/top", "9 → Pullover"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["T-shirt/top", "Trouser", "Pullover"]
    unmatched = plots.embedding_figure(rng.normal(size=(90, 2)), labels, clusters, "view", names, {5: 0, 3: 1})
    assert point_colours(unmatched)[1][65] == plots.UNMATCHED


def test_a_job_draws_what_it_clustered_and_a_named_confusion_matrix(tmp_path, monkeypatch):
    drawn = {}
    original = plots.confusion_figure

    def recorded(confusion, rows, columns=None, *args):
        drawn.update(confusion=confusion, rows=rows, columns=columns)
        return original(confusion, rows, columns, *args)

    monkeypatch.setattr(plots, "confusion_figure", recorded)
    job = run_job(tmp_path, "data=digits", "data.fit_limit=600", "data.eval_limit=600", "trainer.max_epochs=1",
                  "reducer=pca", "reducer.n_components=6", "plots.tsne=false", "plots.max_points=200", figures=True)
    assert {p.name for p in (job.dir / "plots").iterdir()} >= {"embedding_pca.png", "embedding_reduced.png",
                                                                 "confusion_matrix.png"}
    assert drawn["rows"] == [str(d) for d in range(10)], "the digits' names, 0 to 9"
    confusion = drawn["confusion"]
    assert confusion.sum() == 600 and np.trace(confusion) / 600 == pytest.approx(job.results["acc"]), \
        "the matched clusters on the diagonal: the accuracy"
    assert [c.split(" → ")[1] for c in drawn["columns"]] == drawn["rows"], "each column named by its class"


def test_your_own_images_show_the_class_names_you_give(tmp_path):
    import csv

    images, labels = two_class_images(120)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels)
    job = run_job(tmp_path, "data=npy", f"data.train_path={tmp_path / 'x.npy'}", f"data.eval_labels_path={tmp_path / 'y.npy'}",
                  "data.class_names=[horizontal,vertical]", "trainer.max_epochs=1", "model.latent_dim=4", "reducer=pca",
                  "reducer.n_components=2", "plots.tsne=false", figures=True)
    with open(job.dir / "embedding_2d.csv") as f:
        rows = list(csv.DictReader(f))
    assert {row["class"] for row in rows} == {"horizontal", "vertical"}
    assert {row["cluster_class"] for row in rows} <= {"horizontal", "vertical"}
