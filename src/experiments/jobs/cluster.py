"""task=cluster: fit (or load) an encoder -> encode the eval images -> reduce -> cluster -> score -> plots.

The Kaggle report's job (assignment 1): the encoder is model=autoencoder, dense_autoencoder (N2D's), ista (sparse
coding), pixels (the raw-pixel baseline), random_conv (random convolutional features, nothing trained) or
random_conv_autoencoder (N2D's autoencoder on those features' principal components); the reducer and clusterer
are scikit-learn estimators (or adapters that behave as such).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from experiments import plots
from experiments.accelerators import device_for
from experiments.cache import Cache, Entry, save_entry
from experiments.clusterers import REBALANCE_NEIGHBOURS, rebalance
from experiments.data import ImageDataModule, batches
from experiments.errors import UserError, check_against_hints, check_types, one_line
from experiments.files import write_csv
from experiments.fingerprint import settings_key
from experiments.jobs import MAX, MIN, JobKind
from experiments.metrics import clustering_scores, examples_of_different_classes, knn_accuracy, per_image_mse
from experiments.reduce import OpenTSNE, check_perplexity, neighbour_mean
from experiments.training import (
    Job,
    check_optimizer,
    check_trainer,
    job_checkpoint,
    model_cache_key,
    model_code_version,
    train_model,
)

log = logging.getLogger(__name__)

REDUCED_METHOD = {"pca": "PCA", "tsne": "tSNE", "tsne_exact": "tSNE (exact)", "tsne_sampled": "tSNE (sampled)",
                  "umap": "UMAP", "none": "none"}
# knn_acc's vote: as many neighbours as N2D's and the UMAP recipe's graph has.
KNN_PROBE_NEIGHBOURS = 20


@dataclass
class Plan:
    """What the check built for the stages."""

    model: pl.LightningModule
    reducer: Any
    clusterer: Any
    n_clusters: int


# The options of conf/model with an encode(), for the error that names them (tests/test_configs.py keeps it whole).
ENCODERS = ("autoencoder", "dense_autoencoder", "pixels", "sparse_coding", "random_conv", "random_conv_autoencoder",
            "random_conv_pca")


def check(cfg: DictConfig, data: ImageDataModule | None) -> Plan:
    """The encoder built for the data, the reducer and clusterer built and validated against the code size
    and the number of eval images: every setting that would fail after training fails here."""
    assert data is not None
    if not callable(getattr(get_class(cfg.model._target_), "encode", None)):
        raise UserError(f"task=cluster clusters an encoder's codes, and {cfg.model._target_} has no encode(); "
                        f"use model={', '.join(ENCODERS)} (model=mlp: task=classify)")
    model = encoder_for(cfg, data)
    if hasattr(model, "check_fit_images"):  # a model with a fit step of its own (the random features' PCA)
        model.check_fit_images(len(data.fit_images))
    check_optimizer(model)
    n_eval = len(data.eval_images)
    n_clusters = resolve_n_clusters(cfg.clusterer.get("n_clusters"), data.n_classes, n_eval)
    n_reduced, reduced_images = n_eval, "eval images"
    check_types(cfg.task, "task", whole=("smooth_neighbors", "rebalance_rounds"),
                flags=("reduce_with_fit_codes", "cluster_with_fit_codes"))
    if cfg.task.get("cluster_with_fit_codes") and not cfg.task.get("reduce_with_fit_codes"):
        raise UserError("task.cluster_with_fit_codes=true fits the clusterer to the fit images' reduced codes, and "
                        "only task.reduce_with_fit_codes=true reduces them; set both")
    if cfg.task.get("reduce_with_fit_codes"):
        if data.eval_overlaps_fit:
            raise UserError("task.reduce_with_fit_codes=true adds the fit images' codes to the eval images', and "
                            "here the eval images are the fit images; hold some out (data=digits: "
                            "data.eval_fraction=0.3; data=npy: a data.eval_path of other images)")
        n_reduced, reduced_images = n_eval + len(data.fit_images), "fit and eval images"
    smooth = cfg.task.get("smooth_neighbors") or 0
    if not 0 <= smooth < n_reduced:
        raise UserError(f"task.smooth_neighbors={smooth} must be between 0 (codes as they are) and {n_reduced - 1}, "
                        f"below the {n_reduced} codes of the {reduced_images} it averages over")
    reducer = within_thread_budget(instantiate(cfg.reducer))
    check_estimator("reducer", reducer)
    check_n_components(reducer, n_reduced, int(model.hparams.latent_dim))
    if type(reducer).__name__ == "UMAP":
        check_umap(reducer, n_reduced, reduced_images, int(model.hparams.latent_dim))
    perplexity = getattr(reducer, "perplexity", None)
    if isinstance(perplexity, (int, float)):
        try:
            check_perplexity(perplexity, n_reduced, setting="reducer.perplexity")
        except ValueError as e:
            raise UserError(f"{e} (the {reduced_images})") from None
    clusterer = within_thread_budget(instantiate(cfg.clusterer, n_clusters=n_clusters))
    check_estimator("clusterer", clusterer)
    if cfg.task.get("cluster_with_fit_codes") and not hasattr(clusterer, "predict"):
        raise UserError(f"task.cluster_with_fit_codes=true: clusterer {type(clusterer).__name__} cannot assign the "
                        "eval images after fitting (no predict); use clusterer=gmm or kmeans")
    if type(clusterer).__name__ == "AgglomerativeClustering":
        check_agglomerative(clusterer, n_clusters)
    n_clustered = n_reduced if cfg.task.get("cluster_with_fit_codes") else n_eval
    check_rebalance(cfg.task.get("rebalance_rounds") or 0, n_clustered)
    check_plots(cfg.plots)
    check_trainer(cfg.trainer)
    return Plan(model, reducer, clusterer, n_clusters)


def check_rebalance(rounds: int, n_clustered: int) -> None:
    """task.rebalance_rounds finds which clusters are joined among each clustered code's nearest."""
    if rounds < 0:
        raise UserError(f"task.rebalance_rounds={rounds} must be 0 (the clusterer's partition as it is) or more")
    if rounds and n_clustered <= REBALANCE_NEIGHBOURS:
        raise UserError(f"task.rebalance_rounds={rounds} compares each code's {REBALANCE_NEIGHBOURS} nearest, and "
                        f"only {n_clustered} codes are clustered; use 0")


def check_plots(settings: DictConfig) -> None:
    """The plots come last, after training: their settings are checked first."""
    check_types(settings, "plots", whole=("reconstructions", "max_points"), flags=("enabled", "tsne"))
    if settings.reconstructions < 1:
        raise UserError(f"plots.reconstructions={settings.reconstructions} must be at least 1 (images in the "
                        "reconstructions panel)")
    if settings.max_points < 2:
        raise UserError(f"plots.max_points={settings.max_points} must be at least 2 (codes drawn in the 2-D plots)")


def encoder_for(cfg: DictConfig, data: ImageDataModule) -> pl.LightningModule:
    """The configured encoder, sized for the data; the data's training batches carry image indices when the
    model asks (sparse coding warm-starts each image's code)."""
    check_against_hints(cfg.model, "model", get_class(cfg.model._target_))
    model = instantiate(cfg.model, image_shape=data.image_shape)
    data.with_index = getattr(model, "needs_example_index", False)
    return model


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


def within_thread_budget(estimator: Any) -> Any:
    """An estimator with its own thread pool (openTSNE, UMAP: n_jobs=-1, "all cores") set to the job's budget
    (launch.limit_threads has set torch's), so parallel jobs do not oversubscribe the CPUs they share."""
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    if params.get("n_jobs") == -1:
        estimator.set_params(n_jobs=torch.get_num_threads())
    return estimator


def check_estimator(setting: str, estimator: Any) -> None:
    """scikit-learn's own validation of an estimator's parameters (types and ranges), without fitting it, for
    the estimators that declare them (umap-learn's UMAP validates only when it fits)."""
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate) and hasattr(estimator, "_parameter_constraints"):
        try:
            validate()
        except (ValueError, TypeError) as e:  # sklearn's InvalidParameterError is both
            raise UserError(f"{setting} ({type(estimator).__name__}): {e}") from None


def check_umap(reducer: Any, n_codes: int, codes: str, code_size: int) -> None:
    """umap-learn checks its settings only inside fit(), after the training. The two whose messages can say
    more first (the neighbourhood against the number of codes, the metric's names), then umap-learn's own
    checks (its private _validate_parameters) on a copy given what fit() sets before it calls them: two rows
    of the codes' width for the data, and the learning rate."""
    n_neighbors = reducer.n_neighbors
    if isinstance(n_neighbors, int) and not 2 <= n_neighbors < n_codes:
        raise UserError(f"reducer.n_neighbors={n_neighbors} must be at least 2 and below the {n_codes} {codes}")
    from umap.distances import named_distances

    if isinstance(reducer.metric, str) and reducer.metric not in named_distances:
        raise UserError(f"reducer.metric={reducer.metric!r} is not one of umap-learn's metrics: use euclidean, "
                        "cosine, manhattan, correlation, ... (umap.distances.named_distances lists them)")
    probe = clone(reducer)
    probe._raw_data, probe._initial_alpha = np.zeros((2, code_size), dtype=np.float32), probe.learning_rate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes on what fit() will do (one thread when seeded)
        try:
            probe._validate_parameters()
        except (ValueError, TypeError) as e:
            raise UserError(f"reducer (UMAP): {one_line(e)}") from None
        except AttributeError:  # a umap-learn whose fit() sets more first: its fit() still checks them
            log.debug("umap-learn's parameter checks need more than this version's probe gives; left to fit()")


def check_agglomerative(clusterer: Any, n_clusters: int) -> None:
    """scikit-learn's AgglomerativeClustering checks some settings together only in fit(), after the training (Ward's
    linkage with another metric, `+clusterer.metric=cosine`), and before any work on the data: a copy fitted to
    n_clusters + 1 points hears them now."""
    try:
        clone(clusterer).fit(np.random.default_rng(0).normal(size=(n_clusters + 1, 2)))
    except ValueError as e:
        raise UserError(f"clusterer (AgglomerativeClustering): {e}") from None


def check_n_components(reducer: Any, n_codes: int, code_size: int) -> None:
    n_components = getattr(reducer, "n_components", None)
    if not isinstance(n_components, int) or isinstance(n_components, bool):
        return
    limit = min(n_codes, code_size)
    if not 1 <= n_components <= limit:
        raise UserError(
            f"reducer.n_components={n_components} does not fit {n_codes} codes of dimension "
            f"{code_size} (model.latent_dim); use 1..{limit}"
        )


def run(job: Job, plan: Plan) -> dict[str, Any]:
    cfg, data, timer, tracker, choices = job.cfg, job.data, job.timer, job.tracker, job.choices
    model_key = model_cache_key(cfg, data.source_digest)
    with timer("fit"):
        model, trained, cache_status = fit_or_load(job, plan.model, model_key)
    if cache_status == "hit":
        replay_history(tracker, trained["history"])
    results_artifact = tracker.log_model(trained["path"], model_key, cache_status == "hit",
                                         {"model": choices.get("model"), "latent_dim": int(model.hparams.latent_dim),
                                          "code_version": trained.get("code_version")})

    with timer("encode"):
        model = model.to(device_for(cfg.trainer.accelerator))  # also a model from the cache, or back from Lightning
        codes, reconstructions = encode(model, data)
        fit_codes = encode_fit_images(model, data) if cfg.task.get("reduce_with_fit_codes") else None
    np.save(job.dir / "codes.npy", codes)

    with timer("reduce"):
        embedded = codes_to_embed(codes, fit_codes, cfg.task.get("smooth_neighbors") or 0)
        reduce = partial(reduce_codes, plan.reducer, n_eval=len(codes))
        fit_reduced, reduced = library_stage("reducer", choices.get("reducer"), reduce, embedded)

    with timer("cluster"):
        with_fit = cfg.task.get("cluster_with_fit_codes")
        cluster = partial(cluster_codes, plan.clusterer, fit_reduced=fit_reduced if with_fit else None)
        clusters = np.asarray(library_stage("clusterer", choices.get("clusterer"), cluster, reduced))
    rebalanced: list[dict[str, Any]] = []
    if cfg.task.get("rebalance_rounds"):
        with timer("rebalance"):
            clustered = clusters if not with_fit else np.concatenate([plan.clusterer.predict(fit_reduced), clusters])
            labels, rebalanced = rebalance_clusters(plan, embedded[-len(clustered):], clustered,
                                                    cfg.task.rebalance_rounds, cfg.seed)
            clusters = labels[-len(codes):]
    write_csv(job.dir / "predictions.csv", ["id", "label"], [[i, int(c)] for i, c in enumerate(clusters)])
    labels = data.eval_labels
    label_of = [None] * len(clusters) if labels is None else [int(label) for label in labels]  # for the W&B tables
    tracker.log_table("assignments", ["id", "label", "cluster"],
                      [[i, label_of[i], int(c)] for i, c in enumerate(clusters)], csv=False)

    with timer("score"):
        # An encoder without a decoder (model=random_conv) reconstructs nothing: no reconstruction errors
        mse = None if reconstructions is None else per_image_mse(data.eval_images.numpy(), reconstructions)
        example_ids = [] if mse is None else examples_of_different_classes(labels, len(mse), 2)
        results: dict[str, Any] = {
            **(clustering_scores(labels, clusters, cfg.seed) if labels is not None else dict.fromkeys(
                ["public_score", "private_score", "acc", "nmi", "ari"])),
            # The encoder's share of the scores: the eval codes' own neighbourhoods, before any reducer.
            "knn_acc": None if labels is None else knn_accuracy(codes, labels, KNN_PROBE_NEIGHBOURS),
            "recon_mse": None if mse is None else float(mse.mean()),
            "code_sparsity": float((codes == 0).mean()),  # fraction of zeros: about 0 for an autoencoder
            "recon_mse_examples": [
                {"index": i, "label": None if labels is None else int(labels[i]), "mse": float(mse[i])}
                for i in example_ids
            ],
            "latent_dim": int(codes.shape[1]),
            "reducer": choices.get("reducer"),
            "reduced_method": REDUCED_METHOD.get(choices.get("reducer"), choices.get("reducer")),
            "reduced_dim": int(reduced.shape[1]),
            "reduced_codes": len(codes) + (0 if fit_codes is None else len(fit_codes)),  # what the reducer embedded
            "clusterer": choices.get("clusterer"),
            "n_clusters": plan.n_clusters,
            "rebalanced": rebalanced,  # each round of task.rebalance_rounds: the clusters merged and split
            "model": choices.get("model"),
            "data": choices.get("data"),
            "seed": cfg.seed,
            "cache": cache_status,
            "devices": {"encode": str(model.device)},  # where the stages ran
            "checkpoint": trained.get("path"),
            "model_code_version": trained.get("code_version"),
            "model_artifact": results_artifact,
        }
        if hasattr(plan.reducer, "kl_divergence_"):
            results["tsne_kl"] = float(plan.reducer.kl_divergence_)
        if hasattr(model, "solver_report"):  # codes found by a solver (model=sparse_coding): did it converge?
            results |= model.solver_report()

    with timer("plots"):
        if mse is not None:
            log_reconstructions(tracker, data, reconstructions, mse, cfg.plots.reconstructions)
        if hasattr(model, "atoms"):  # a dictionary's atoms are images: show them
            tracker.log_figure("atoms", plots.image_grid_figure, model.atoms().cpu().numpy(), "dictionary atoms")
        views = EmbeddingViews(codes, cfg.plots.max_points, cfg.seed, job.cache, model_key)
        log_embeddings(tracker, views, cfg.plots.tsne, reduced, labels, clusters, choices.get("reducer"))
        # The codes themselves (a sample), one vector per row: W&B's embedding projector maps this column.
        tracker.log_table("codes", ["index", "label", "cluster", "code"],
                          [[int(i), label_of[i], int(clusters[i]), codes[i].tolist()] for i in views.sample], csv=False)
    return results


def library_stage(setting: str, name: str | None, function: Any, inputs: np.ndarray) -> np.ndarray:
    """Call a library's fit method, turning its complaints about parameters into a UserError."""
    try:
        return function(inputs)
    except ValueError as e:  # scikit-learn and openTSNE report bad parameters as ValueError
        raise UserError(f"{setting} ({name}): {e}") from None


def fit_or_load(job: Job, model: pl.LightningModule, key: str) -> tuple[pl.LightningModule, Entry, str]:
    """The trained model, from the cache when one with the same settings and code exists; and
    "hit"/"miss"/"off"."""
    cfg, cache = job.cfg, job.cache
    code = model_code_version(cfg.model, cfg.data)

    def train() -> Entry:
        if hasattr(model, "fit"):  # a fit step that is not training (model=random_conv_pca's PCA), scikit-learn's way
            model.fit(job.data.fit_images)
        checkpoint = cache.partial_checkpoint(key) if cache is not None else job.checkpoint()
        history = train_model(cfg.trainer, model, job.tracker.logger, checkpoint, cfg.resume, datamodule=job.data)
        return {"state_dict": model.state_dict(), "history": history, "code_version": code}

    if cache is not None:
        trained, hit = cache.get_or_compute(key, train)
        trained = {**trained, "path": str(cache.path(key))}
        if hit:
            model.load_state_dict(trained["state_dict"])
            log.info("model cache hit: %s (made by code %s)", cache.path(key), trained.get("code_version"))
        else:
            log.info("model cache miss: trained %s (code %s)", cache.path(key), code)
        return model, trained, "hit" if hit else "miss"
    # Without the cache the job keeps its own copy, so a failure after training loses nothing.
    trained = train()
    path = job.dir / "model.pt"
    save_entry(trained, path)
    return model, {**trained, "path": str(path)}, "off"


def ddp_worker(cfg: DictConfig, job_dir: Path, data: ImageDataModule, key: str) -> None:
    """Rank > 0 under DDP: train on this process's shard beside rank 0, which alone caches, scores and logs."""
    model = encoder_for(cfg, data)
    model_key = model_cache_key(cfg, data.source_digest)
    checkpoint = (Cache(cfg.cache_dir).partial_checkpoint(model_key) if cfg.cache
                  else job_checkpoint(job_dir, key))
    train_model(cfg.trainer, model, None, checkpoint, cfg.resume, datamodule=data)


def replay_history(tracker: Any, history: list[dict[str, float]]) -> None:
    """Log the cached model's training curves at the steps they were logged at (Lightning's
    trainer/global_step), so a cache hit's run shows them as a fresh run does."""
    for row in history:
        tracker.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row.get("step"))


def codes_to_embed(codes: np.ndarray, fit_codes: np.ndarray | None = None, smooth_neighbors: int = 0) -> np.ndarray:
    """The codes the reducer embeds: the fit codes (when given) then the eval codes; with `smooth_neighbors`, each
    averaged with its nearest among them all.

    More codes give t-SNE and UMAP denser neighbourhoods to find the clusters' shape in: N2D embeds all 70,000
    Fashion-MNIST images. Only the eval images are then scored.
    """
    return neighbour_mean(codes if fit_codes is None else np.concatenate([fit_codes, codes]), smooth_neighbors)


def reduce_codes(reducer: Any, embedded: np.ndarray, n_eval: int) -> tuple[np.ndarray | None, np.ndarray]:
    """The reducer's embedding of the fit codes (None without them) and of the eval codes, the last `n_eval` of
    `embedded`, all embedded together."""
    # What the stage is doing while it runs (UMAP's neighbour search and graph draw no bar)
    log.info("%s of %d codes of size %d", type(reducer).__name__, *embedded.shape)
    reduced = reducer.fit_transform(embedded)
    n_fit = len(embedded) - n_eval
    return (reduced[:n_fit] if n_fit else None), reduced[n_fit:]


def cluster_codes(clusterer: Any, reduced: np.ndarray, fit_reduced: np.ndarray | None = None) -> np.ndarray:
    """The eval images' clusters; with `fit_reduced`, the clusterer is fitted to the fit and eval images' reduced
    codes together (as N2D fits its mixture to all 70,000) and assigns the eval images with `predict`."""
    if fit_reduced is None:
        return clusterer.fit_predict(reduced)
    return clusterer.fit(np.concatenate([fit_reduced, reduced])).predict(reduced)


def rebalance_clusters(plan: Plan, codes: np.ndarray, labels: np.ndarray, rounds: int, seed: int
                       ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """task.rebalance_rounds: the clusterer's partition of `codes` (the codes it clustered, as the reducer took
    them) repaired towards equal sizes. A large cluster's codes are embedded again by a copy of the job's reducer
    and cut in two by k-means, an even cut (a mixture's likeliest two parts may be a large and a small one, which
    the next round would merge elsewhere)."""
    halves = KMeans(2, n_init=10, random_state=seed)
    return rebalance(labels, codes, embed=lambda members: clone(plan.reducer).fit_transform(members),
                     split=halves.fit_predict, rounds=rounds)


@torch.no_grad()
def encode_fit_images(model: pl.LightningModule, data: ImageDataModule) -> np.ndarray:
    """Codes of the fit images, in order, on the model's device (batched as the eval images are)."""
    model.eval()
    assert data.fit_images is not None, "call setup() first"
    loader = batches((data.fit_images,), data.batch_size, shuffle=False)
    return torch.cat([model.encode(images.to(model.device)).cpu() for (images,) in loader]).numpy()


@torch.no_grad()
def encode(model: pl.LightningModule, data: ImageDataModule) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes and reconstructions of the eval images, on the model's device (no reconstructions from a model
    without a decoder)."""
    model.eval()
    decoder = getattr(model, "decoder", None)  # codes back to images (model=random_conv_autoencoder's are features)
    codes, reconstructions = [], []
    for images, *_ in data.eval_dataloader():
        code = model.encode(images.to(model.device))
        codes.append(code.cpu())
        if decoder is not None:
            reconstructions.append(decoder(code).cpu())
    return torch.cat(codes).numpy(), torch.cat(reconstructions).float().numpy() if reconstructions else None


def log_reconstructions(tracker: Any, data: ImageDataModule, reconstructions: np.ndarray, mse: np.ndarray,
                        count: int) -> None:
    labels = data.eval_labels
    ids = examples_of_different_classes(labels, len(mse), count)
    originals = data.eval_images.numpy()[ids]
    captions = [
        (f"#{i} " if labels is None else f"#{i} class {labels[i]} ") + f"MSE {mse[i]:.4f}" for i in ids
    ]
    tracker.log_figure("reconstructions", plots.reconstruction_figure, originals, reconstructions[ids], captions)
    stacked = [np.concatenate([originals[k], reconstructions[i]], axis=1) for k, i in enumerate(ids)]
    tracker.log_images("reconstructions_panel", [plots.to_displayable(s) for s in stacked], captions)


class EmbeddingViews:
    """2-D PCA and t-SNE views of a random sample of the codes.

    The t-SNE view is cached with the model (same model, same codes): jobs of a sweep that differ only
    after the encoder (reducer, clusterer) draw it once.
    """

    def __init__(self, codes: np.ndarray, max_points: int, seed: int, cache: Cache | None, model_key: str) -> None:
        rng = np.random.default_rng(seed)
        self.sample = np.sort(rng.choice(len(codes), size=min(max_points, len(codes)), replace=False))
        self.codes = codes[self.sample]
        self.seed = seed
        self.cache = cache
        self.key = settings_key({"model": model_key, "view": "tsne", "sample": len(self.sample)})

    def pca(self) -> np.ndarray:
        return PCA(2, random_state=self.seed).fit_transform(self.codes)

    def tsne(self) -> np.ndarray:
        def compute() -> Entry:
            perplexity = min(30.0, (len(self.codes) - 1) / 3.1)
            tsne = OpenTSNE(2, perplexity=perplexity, random_state=self.seed, n_jobs=torch.get_num_threads())
            return {"coords": torch.from_numpy(tsne.fit_transform(self.codes))}

        entry = compute() if self.cache is None else self.cache.get_or_compute(self.key, compute)[0]
        return entry["coords"].numpy()


def log_embeddings(
    tracker: Any,
    views: EmbeddingViews,
    with_tsne: bool,
    reduced: np.ndarray,
    labels: np.ndarray | None,
    clusters: np.ndarray,
    reducer_name: str | None,
) -> None:
    """2-D PCA and t-SNE views of the codes, as figures and one explorable table (none without figures)."""
    if views.codes.shape[1] < 2 or not tracker.figures:
        return
    makers = {"pca": views.pca, **({"tsne": views.tsne} if with_tsne else {})}
    if reduced.shape[1] == 2 and reducer_name in makers:
        makers[reducer_name] = lambda: reduced[views.sample]  # the reducer already made this view
    sample = views.sample
    rows = []
    for method, make in makers.items():
        coords = make()
        sample_labels = None if labels is None else labels[sample]
        title = f"{'PCA' if method == 'pca' else 't-SNE'} of the codes"
        tracker.log_figure(f"embedding/{method}", plots.embedding_figure, coords, sample_labels, clusters[sample],
                           title)
        rows += [
            [method, int(i), float(x), float(y), None if labels is None else int(labels[i]), int(clusters[i])]
            for i, (x, y) in zip(sample, coords)
        ]
    tracker.log_table("embedding_2d", ["method", "index", "x", "y", "label", "cluster"], rows)


KIND = JobKind(
    name="cluster",
    tagged_by=("model", "data", "reducer", "clusterer"),
    scores={"public_score": MAX, "private_score": MAX, "acc": MAX, "nmi": MAX, "ari": MAX, "knn_acc": MAX,
            "recon_mse": MIN},
    # The clustering assignment's report columns first, in its order, then the rest of what a job reports.
    columns=[
        ("Public Score", "public_score"),
        ("Private Score", "private_score"),
        ("Reduced Method", "reduced_method"),
        ("Latent Dimension", "latent_dim"),
        ("Reduced Dimension", "reduced_dim"),
        ("acc", "acc"),
        ("nmi", "nmi"),
        ("ari", "ari"),
        ("knn_acc", "knn_acc"),
        ("recon_mse", "recon_mse"),
        ("code_sparsity", "code_sparsity"),
        ("clusterer", "clusterer"),
        ("n_clusters", "n_clusters"),
        ("model", "model"),
        ("cache", "cache"),
    ],
    labelled_by=("model", "Reduced Method", "Latent Dimension", "Reduced Dimension", "clusterer"),
    needs_data=lambda cfg: True,
    check=check,
    run=run,
    shown=("acc", "nmi", "knn_acc", "private_score"),
    ddp_worker=ddp_worker,
)
