"""The t-SNE reducers are scikit-learn estimators: scikit-learn's own estimator checks, clone, Pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from experiments.reduce import OpenTSNE
from experiments.tsne import ExactTSNE, SampledTSNE

# Small settings for the checks' tiny data sets, as scikit-learn's own tests give its TSNE (perplexity 2).
ESTIMATORS = [OpenTSNE(perplexity=2, n_iter=50, n_jobs=1), ExactTSNE(perplexity=2, n_iter=50),
              SampledTSNE(perplexity=2, n_iter=50, n_samples=8)]


@parametrize_with_checks(ESTIMATORS)
def test_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


def test_they_pass_every_check_scikit_learns_tsne_passes():
    def passed(estimator) -> set[str]:
        return {r["check_name"] for r in check_estimator(estimator, on_fail=None) if r["status"] == "passed"}

    reference = passed(TSNE(perplexity=2, max_iter=250))
    for estimator in ESTIMATORS:
        assert reference <= passed(clone(estimator)), type(estimator).__name__


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_clone_get_and_set_params_and_a_place_in_a_pipeline(estimator):
    copy = clone(estimator).set_params(n_components=3, perplexity=5)
    assert copy.get_params()["n_components"] == 3 and estimator.get_params()["n_components"] == 2
    X = np.random.default_rng(0).normal(size=(60, 5)) + np.repeat(np.eye(5)[:3] * 8, 20, axis=0)
    pipeline = Pipeline([("scale", StandardScaler()), ("embed", copy)])
    embedding = pipeline.fit_transform(X)
    assert embedding.shape == (60, 3) and pipeline.named_steps["embed"].n_features_in_ == 5
    assert KMeans(3, n_init=5, random_state=0).fit_predict(embedding).max() == 2


def test_more_iterations_fit_the_embedding_better():
    X = np.random.default_rng(0).normal(size=(300, 10)) + np.repeat(np.eye(10)[:3] * 6, 100, axis=0)
    kl = [OpenTSNE(n_iter=n, random_state=0, n_jobs=1).fit(X).kl_divergence_ for n in (250, 1000)]
    assert kl[1] < kl[0]
