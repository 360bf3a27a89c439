"""task=cluster's pre-flight: everything that would fail after training fails here, in one line, before any
training and before a W&B run exists.

The model is built for the data's image shape and held to the `Encoder` protocol; its code size is read from what
`encode` returns for two fit images. The reducer and the clusterer are built, their parameters checked (this
package's estimators by their own `check_params`, any other by scikit-learn's validation as its `fit` runs it, on a
few points) and their sizes checked against the number and the width of the codes they will see.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from sklearn.base import BaseEstimator, clone

from experiments.clusterers import REBALANCE_NEIGHBOURS
from experiments.data import ImageDataModule
from experiments.errors import UserError, build, check_types, in_setting, target_class
from experiments.models.protocols import Encoder, FitStep
from experiments.reduce import CheckedParams, check_perplexity
from experiments.training import check_optimizer, check_trainer

SIZE_PRIORS = ("none", "equal")  # task.size_prior: what the job may assume of the classes' sizes


@dataclass
class Plan:
    """What the check built for the stages."""

    model: pl.LightningModule
    code_size: int  # the width of the codes `encode` returns
    reducer: Any
    clusterer: Any
    n_clusters: int


@dataclass
class Counts:
    """How many codes each stage sees, given the task's settings."""

    reduced: int  # codes the reducer embeds
    reduced_what: str  # "eval images" or "fit and eval images", for the messages
    clustered: int  # codes the clusterer is fitted to


def check(cfg: DictConfig, data: ImageDataModule | None) -> Plan:
    """The model, reducer and clusterer, built and checked against the data, the code size and each other."""
    assert data is not None
    model = encoder_for(cfg, data)
    code_size = code_size_of(model, data.fit_images[:2])
    counts = check_task(cfg.task, data)
    reducer = check_reducer(cfg.reducer, counts, code_size)
    n_clusters = resolve_n_clusters(cfg.clusterer.get("n_clusters"), data.n_classes, len(data.eval_images))
    clusterer = check_clusterer(cfg.clusterer, n_clusters, counts, bool(cfg.task.cluster_with_fit_codes))
    check_plots(cfg.plots)
    check_trainer(cfg.trainer)
    return Plan(model, code_size, reducer, clusterer, n_clusters)


def encoder_for(cfg: DictConfig, data: ImageDataModule) -> pl.LightningModule:
    """The configured model, built for the data's image shape: a LightningModule with `encode` (the Encoder
    protocol), its fit step (if it has one) able to fit the fit images, its optimiser able to build."""
    target = target_class("model", cfg.model)
    if not (isinstance(target, type) and issubclass(target, pl.LightningModule) and issubclass(target, Encoder)):
        raise UserError(f"task=cluster clusters the codes of an encoder, a LightningModule with encode(images) (README: "
                        f"Your own model), and {cfg.model._target_} is not one; the classifier (model=mlp) is trained by "
                        "task=classify, learned ISTA (model=lista) by task=lista: name the task, it picks its model")
    model = build("model", cfg.model, image_shape=data.image_shape)
    if isinstance(model, FitStep):
        try:
            model.check_fit_images(len(data.fit_images))
        except ValueError as e:
            raise in_setting("model", e, cfg.model) from None
    check_optimizer(model)
    return model


@torch.no_grad()
def code_size_of(model: pl.LightningModule, images: torch.Tensor) -> int:
    """The width d of the (N, d) codes `encode` returns for `images`, read from a copy of the model (encoding may
    keep state, such as a solver's report)."""
    probe = copy.deepcopy(model).eval()
    codes = probe.encode(images)
    if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or len(codes) != len(images):
        shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise UserError(f"model ({type(model).__name__}): encode() of {len(images)} images must return a "
                        f"({len(images)}, d) tensor of codes, got {shape}")
    return int(codes.shape[1])


def check_task(task: DictConfig, data: ImageDataModule) -> Counts:
    """The task's switches against each other and the data; how many codes the reducer and the clusterer see."""
    check_types(task, "task", whole=("smooth_neighbors", "rebalance_rounds", "fit_codes_sample"),
                flags=("reduce_with_fit_codes", "cluster_with_fit_codes"))
    n_eval = len(data.eval_images)
    counts = Counts(n_eval, "eval images", n_eval)
    if task.cluster_with_fit_codes and not task.reduce_with_fit_codes:
        raise UserError("task.cluster_with_fit_codes=true fits the clusterer to the fit images' reduced codes, and "
                        "only task.reduce_with_fit_codes=true reduces them; set both")
    if task.reduce_with_fit_codes:
        if data.eval_overlaps_fit:
            raise UserError("task.reduce_with_fit_codes=true adds the fit images' codes to the eval images', and "
                            "here the eval images are the fit images; hold some out (data=digits: "
                            "data.eval_fraction=0.3; data=npy: a data.eval_path of other images)")
        n_fit = fit_codes_reduced(task, len(data.fit_images))
        counts = Counts(n_eval + n_fit, "fit and eval images", n_eval + (n_fit if task.cluster_with_fit_codes else 0))
    if not 0 <= task.smooth_neighbors < counts.reduced:
        raise UserError(f"task.smooth_neighbors={task.smooth_neighbors} must be between 0 (codes as they are) and "
                        f"{counts.reduced - 1}, below the {counts.reduced} codes of the {counts.reduced_what} it "
                        "averages over")
    if task.size_prior not in SIZE_PRIORS:
        raise UserError(f"task.size_prior={task.size_prior!r} is not one of {', '.join(SIZE_PRIORS)} (none: assume nothing "
                        "of the classes' sizes; equal: assume they are of equal size)")
    check_rebalance(task.rebalance_rounds, counts.clustered)
    return counts


def fit_codes_reduced(task: DictConfig, n_fit: int) -> int:
    """How many of the fit images' codes the reducer embeds: all, or task.fit_codes_sample of them."""
    sample = task.get("fit_codes_sample")
    if sample is None:
        return n_fit
    if sample < 1:
        raise UserError(f"task.fit_codes_sample={sample} must be at least 1 (null: all {n_fit} fit images' codes)")
    return min(sample, n_fit)


def check_rebalance(rounds: int, n_clustered: int) -> None:
    """task.rebalance_rounds finds which clusters are joined among each clustered code's nearest."""
    if rounds < 0:
        raise UserError(f"task.rebalance_rounds={rounds} must be 0 (the clusterer's partition as it is) or more")
    if rounds and n_clustered <= REBALANCE_NEIGHBOURS:
        raise UserError(f"task.rebalance_rounds={rounds} compares each code's {REBALANCE_NEIGHBOURS} nearest, and "
                        f"only {n_clustered} codes are clustered; use 0")


def check_reducer(node: DictConfig, counts: Counts, code_size: int) -> Any:
    """The reducer, built, sized for the codes and its parameters checked."""
    reducer = within_thread_budget(build("reducer", node))
    params = reducer.get_params() if isinstance(reducer, BaseEstimator) else {}
    n_components = params.get("n_components")
    if isinstance(n_components, int) and not isinstance(n_components, bool):
        limit = min(counts.reduced, code_size)
        if not 1 <= n_components <= limit:
            raise UserError(f"reducer.n_components={n_components} does not fit {counts.reduced} codes of size "
                            f"{code_size} (what the model's encode returns); use 1..{limit}")
    n_neighbors = params.get("n_neighbors")
    if isinstance(n_neighbors, int) and not 2 <= n_neighbors < counts.reduced:
        raise UserError(f"reducer.n_neighbors={n_neighbors} must be at least 2 and below the {counts.reduced} "
                        f"{counts.reduced_what}")
    if isinstance(params.get("perplexity"), (int, float)):
        try:
            check_perplexity(params["perplexity"], counts.reduced, setting="reducer.perplexity")
        except ValueError as e:
            raise UserError(f"{e} (the {counts.reduced_what})") from None
    rows = min(counts.reduced, max(n_components if isinstance(n_components, int) else 0, 15) + 1)
    check_estimator("reducer", node, reducer, np.random.default_rng(0).normal(size=(rows, code_size)))
    return reducer


def check_clusterer(node: DictConfig, n_clusters: int, counts: Counts, with_fit_codes: bool) -> Any:
    """The clusterer, built for `n_clusters` and its parameters checked."""
    clusterer = within_thread_budget(build("clusterer", node, n_clusters=n_clusters))
    if with_fit_codes and not hasattr(clusterer, "predict"):  # scikit-learn's way to ask an estimator
        raise UserError(f"task.cluster_with_fit_codes=true: clusterer {type(clusterer).__name__} cannot assign the "
                        "eval images after fitting (no predict); use clusterer=gmm or kmeans")
    # Three points around each of n_clusters well-apart centres: a sample any clusterer can fit
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(n_clusters, 2))
    sample = (centres[:, None] + rng.normal(size=(n_clusters, 3, 2))).reshape(-1, 2)
    check_estimator("clusterer", node, clusterer, sample[: max(counts.clustered, n_clusters)])
    return clusterer


def check_estimator(setting: str, node: DictConfig, estimator: Any, sample: np.ndarray) -> None:
    """The estimator's parameters, checked before any training: this package's by their own `check_params`; any
    other's by its own validation, as `fit` runs it, on a clone fitted to `sample` (a few points of the width it
    will see: scikit-learn's estimators validate their parameters first thing in fit)."""
    try:
        if isinstance(estimator, CheckedParams):
            estimator.check_params()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its notes on a few points (convergence): not the settings
                clone(estimator, safe=False).fit(sample)
    except (ValueError, TypeError) as e:  # scikit-learn's InvalidParameterError is both
        raise in_setting(setting, e, node, type(estimator).__name__) from None


def within_thread_budget(estimator: Any) -> Any:
    """An estimator with its own thread pool (openTSNE, UMAP: n_jobs=-1, "all cores") set to the job's budget
    (launch.limit_threads has set torch's), so parallel jobs do not oversubscribe the CPUs they share."""
    if isinstance(estimator, BaseEstimator) and estimator.get_params().get("n_jobs") == -1:
        estimator.set_params(n_jobs=torch.get_num_threads())
    return estimator


def resolve_n_clusters(configured: int | None, n_classes: int | None, n_eval: int) -> int:
    """clusterer.n_clusters, defaulting to the data's class count."""
    check_types({"n_clusters": configured}, "clusterer", whole=("n_clusters",))
    n_clusters = configured if configured is not None else n_classes
    if n_clusters is None:
        raise UserError("clusterer.n_clusters: the eval images have no labels to count classes from; set it")
    if n_clusters < 1:
        raise UserError(f"clusterer.n_clusters must be at least 1, got {n_clusters}")
    if n_clusters > n_eval:
        raise UserError(f"clusterer.n_clusters={n_clusters} is more clusters than the {n_eval} eval images")
    return int(n_clusters)


def check_plots(settings: DictConfig) -> None:
    """The plots come last, after training: their settings are checked first."""
    check_types(settings, "plots", whole=("reconstructions", "max_points"), flags=("enabled", "tsne"))
    if settings.reconstructions < 1:
        raise UserError(f"plots.reconstructions={settings.reconstructions} must be at least 1 (images in the "
                        "reconstructions panel)")
    if settings.max_points < 2:
        raise UserError(f"plots.max_points={settings.max_points} must be at least 2 (codes drawn in the 2-D plots)")
