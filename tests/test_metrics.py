import numpy as np
import pytest

from experiments.metrics import (
    cluster_accuracy,
    clustering_scores,
    examples_of_different_classes,
    knn_accuracy,
    per_image_mse,
    public_private_split,
)


def test_cluster_accuracy_ignores_how_clusters_are_numbered():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(y_true, np.array([2, 2, 0, 0, 1, 1])) == 1.0


def test_cluster_accuracy_counts_the_best_one_to_one_matching():
    # cluster 5 -> class "a" (2 right), cluster 7 -> class "b" (2 right); one "a" sits in cluster 7
    y_true = np.array(["a", "a", "a", "b", "b"])
    y_pred = np.array([5, 5, 7, 7, 7])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 5)


def test_cluster_accuracy_with_more_clusters_than_classes_counts_unmatched_clusters_wrong():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 1, 2, 3, 3, 3])  # class 0 split in three: only one piece can match it
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_cluster_accuracy_with_fewer_clusters_than_classes_counts_unmatched_classes_wrong():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.zeros(6, dtype=int)  # everything in one cluster
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(2 / 6)


def test_cluster_accuracy_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        cluster_accuracy(np.array([0, 1]), np.array([0]))


def test_public_private_split_is_fixed_by_seed_and_covers_every_index_once():
    public, private = public_private_split(11, seed=3)
    again_public, _ = public_private_split(11, seed=3)
    other_public, _ = public_private_split(11, seed=4)
    assert np.array_equal(public, again_public)
    assert not np.array_equal(public, other_public)
    assert sorted(np.concatenate([public, private]).tolist()) == list(range(11))
    assert len(public) == 5 and len(private) == 6


def test_clustering_scores_score_each_half_separately():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 200)
    y_pred = y_true.copy()
    _, private = public_private_split(200, seed=0)
    y_pred[private[:50]] = (y_pred[private[:50]] + 1) % 3  # spoil a quarter of the private half
    scores = clustering_scores(y_true, y_pred, seed=0)
    assert scores["public_score"] == 1.0
    assert scores["private_score"] == pytest.approx(0.5)
    assert scores["acc"] == pytest.approx(0.75)
    assert 0 < scores["nmi"] < 1 and 0 < scores["ari"] < 1


def test_per_image_mse_is_the_mean_over_each_image():
    images = np.zeros((2, 1, 2, 2))
    recon = np.zeros((2, 1, 2, 2))
    recon[1, 0, 0, 0] = 2.0
    assert per_image_mse(images, recon).tolist() == [0.0, 1.0]


def test_examples_of_different_classes_picks_the_first_of_each_class():
    assert examples_of_different_classes(np.array([3, 3, 1, 3, 0]), 5, 2) == [0, 2]
    assert examples_of_different_classes(np.array([3, 3, 1, 3, 0]), 5, 9) == [0, 2, 4]
    assert examples_of_different_classes(None, 5, 2) == [0, 1]


def test_nmi_is_normalised_by_the_arithmetic_mean_of_the_entropies():
    def entropy(labels):
        p = np.bincount(labels) / len(labels)
        return -(p[p > 0] * np.log(p[p > 0])).sum()

    y_true = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 1, 1, 2])
    joint = np.zeros((3, 3))
    np.add.at(joint, (y_true, y_pred), 1 / len(y_true))
    marginals = np.outer(joint.sum(1), joint.sum(0))
    mutual = (joint[joint > 0] * np.log(joint[joint > 0] / marginals[joint > 0])).sum()
    arithmetic = mutual / ((entropy(y_true) + entropy(y_pred)) / 2)
    geometric = mutual / np.sqrt(entropy(y_true) * entropy(y_pred))
    nmi = clustering_scores(y_true, y_pred, seed=0)["nmi"]
    assert nmi == pytest.approx(arithmetic) and nmi != pytest.approx(geometric)


def test_knn_accuracy_votes_among_each_codes_neighbours_without_itself():
    codes = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.3]])
    assert knn_accuracy(codes, np.array(["a", "a", "a", "b", "b", "b"]), k=2) == 1.0
    # 5.3 is a "c": its nearest other codes are b's, and counting itself would have made it right
    assert knn_accuracy(codes, np.array(["a", "a", "a", "b", "b", "c"]), k=1) == pytest.approx(5 / 6)
    # one "b" among the a's: outvoted by its two nearest a's; each a beside it ties one vote to one, and a tie
    # goes to the class listed first
    assert knn_accuracy(codes, np.array(["a", "b", "a", "b", "b", "b"]), k=2) == pytest.approx(5 / 6)


def test_knn_accuracy_is_at_chance_for_labels_that_ignore_the_codes():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(2000, 5))
    assert abs(knn_accuracy(codes, rng.integers(0, 2, 2000)) - 0.5) < 0.05
    assert knn_accuracy(codes, (codes[:, 0] > 0).astype(int)) > 0.9


def test_knn_accuracy_of_too_few_codes_or_mismatched_labels():
    assert knn_accuracy(np.zeros((1, 3)), np.array([0])) is None
    # k above the number of other codes: each votes among all the others
    assert knn_accuracy(np.array([[0.0], [1.0], [2.0]]), np.array([0, 0, 1]), k=20) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="3 codes but 2 labels"):
        knn_accuracy(np.zeros((3, 2)), np.array([0, 1]))
