"""task=cluster's stages, in the order `run` calls them: fit (or load from the cache), encode, reduce, cluster,
rebalance, score; then the figures and tables (views.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from sklearn.base import BaseEstimator, clone
from sklearn.cluster import KMeans

from experiments.accelerators import device_for
from experiments.cache import Cache, Entry, save_entry
from experiments.clusterers import REBALANCE_NEIGHBOURS, rebalance
from experiments.data import ImageDataModule, batches
from experiments.errors import UserError
from experiments.files import write_csv
from experiments.jobs.cluster.check import Plan, encoder_for
from experiments.jobs.cluster.views import draw
from experiments.metrics import clustering_scores, examples_of_different_classes, knn_accuracy, per_image_mse
from experiments.models.protocols import Decoder, FitEncode, FitStep, SolverReport
from experiments.reduce import neighbour_graph, neighbour_mean
from experiments.training import Job, job_checkpoint, model_cache_key, model_code_version, train_model, trains

log = logging.getLogger(__name__)

REDUCED_METHOD = {"pca": "PCA", "tsne": "tSNE", "tsne_exact": "tSNE (exact)", "tsne_sampled": "tSNE (sampled)",
                  "umap": "UMAP", "none": "none"}
# knn_acc's vote: as many neighbours as N2D's and the UMAP recipe's graph has.
KNN_PROBE_NEIGHBOURS = 20


@dataclass
class Trained:
    """The fit stage's model and where it came from."""

    model: pl.LightningModule
    entry: Entry  # state_dict, history, code_version, path
    cache_status: str  # "hit", "miss" or "off"
    key: str  # the model cache key
    fit_codes: np.ndarray | None = None  # the fit images' codes, where the fit step gave them (FitEncode)


@dataclass
class Codes:
    """The encode stage's output."""

    eval: np.ndarray  # (n_eval, d)
    fit: np.ndarray | None  # (n_fit, d) with task.reduce_with_fit_codes
    reconstructions: np.ndarray | None  # the eval images', for a model with a decoder


@dataclass
class Partition:
    """The reduce, cluster and rebalance stages' output."""

    embedded: np.ndarray  # the codes the reducer embedded (fit then eval, smoothed)
    reduced: np.ndarray  # the eval codes' embedding
    clusters: np.ndarray  # the eval images' clusters
    rebalanced: list[dict[str, Any]]  # each round of task.rebalance_rounds


def run(job: Job, plan: Plan) -> dict[str, Any]:
    with job.timer("fit"):
        trained = fit_or_load(job, plan.model)
    with job.timer("encode"):
        codes = encode_stage(job, trained.model, trained.fit_codes)
    np.save(job.dir / "codes.npy", codes.eval)
    partition = partition_stages(job, plan, codes)
    write_csv(job.dir / "predictions.csv", ["id", "label"], [[i, int(c)] for i, c in enumerate(partition.clusters)])
    with job.timer("score"):
        mse = None if codes.reconstructions is None else per_image_mse(job.data.eval_images.numpy(),
                                                                       codes.reconstructions)
        results = scores(job, plan, trained, codes, partition, mse)
    with job.timer("plots"):
        draw(job, trained.model, trained.key, codes.eval, codes.reconstructions, mse, partition.reduced,
             partition.clusters)
    return results


def fit_or_load(job: Job, model: pl.LightningModule) -> Trained:
    """The trained model, from the cache when one with the same settings and code exists. Its training curves are
    logged either way (a cache hit replays them), and it is recorded as a W&B model artifact."""
    cfg, cache = job.cfg, job.cache
    key = model_cache_key(cfg, job.data.source_digest)
    code = model_code_version(cfg.model, cfg.data)
    fitted: dict[str, np.ndarray] = {}

    def train() -> Entry:
        history = fit_then_train(cfg, model, job.data, job.tracker.logger, cache.partial_checkpoint(key)
                                 if cache is not None else job.checkpoint(), fitted)
        return {"state_dict": model.state_dict(), "history": history, "code_version": code}

    if cache is None:  # the job keeps its own copy, so a failure after training loses nothing
        entry, status = train(), "off"
        save_entry(entry, job.dir / "model.pt")
        entry["path"] = str(job.dir / "model.pt")
    else:
        entry, hit = cache.get_or_compute(key, train)
        entry, status = {**entry, "path": str(cache.path(key))}, "hit" if hit else "miss"
        if hit:
            model.load_state_dict(entry["state_dict"])
        log.info("model cache %s: %s (code %s)", status, cache.path(key), entry.get("code_version"))
    if status == "hit":
        for row in entry["history"]:  # the cached curves, at the steps a fresh run logs them at
            job.tracker.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row.get("step"))
    return Trained(model, entry, status, key, fitted.get("codes"))


def fit_then_train(cfg: DictConfig, model: pl.LightningModule, data: ImageDataModule, logger: Any,
                   checkpoint: Path, fitted: dict[str, np.ndarray] | None = None) -> list[dict[str, float]]:
    """A model's fit step, if it has one (models/protocols.py's FitStep), then its training; the epochs' metrics.
    A model with nothing to train after a fit step that gives the fit images' codes (FitEncode) leaves them in
    `fitted["codes"]`: the job need not encode those images again."""
    if isinstance(model, FitEncode) and not trains(model):
        codes = model.fit_encode(data.fit_images)
        if fitted is not None:
            fitted["codes"] = codes.cpu().numpy()
    elif isinstance(model, FitStep):
        model.fit(data.fit_images)
    return train_model(cfg.trainer, model, logger, checkpoint, cfg.resume, datamodule=data)


def ddp_worker(cfg: DictConfig, job_dir: Path, data: ImageDataModule, key: str) -> None:
    """Rank > 0 under DDP: train on this process's shard beside rank 0, which alone caches, scores and logs."""
    model = encoder_for(cfg, data)
    model_key = model_cache_key(cfg, data.source_digest)
    checkpoint = Cache(cfg.cache_dir).partial_checkpoint(model_key) if cfg.cache else job_checkpoint(job_dir, key)
    fit_then_train(cfg, model, data, None, checkpoint)


def encode_stage(job: Job, model: pl.LightningModule, fitted: np.ndarray | None = None) -> Codes:
    """The eval images' codes (and reconstructions, for a model with a decoder); the fit images' codes too with
    task.reduce_with_fit_codes (`fitted`, where the fit step gave them). On the configured device (a model from the
    cache, or back from Lightning, is on the CPU)."""
    model = model.to(device_for(job.cfg.trainer.accelerator)).eval()
    data = job.data
    eval_codes, reconstructions = encode(model, data.eval_images, data.batch_size, with_decoder=True)
    fit_codes = None
    if job.cfg.task.reduce_with_fit_codes:
        rows = sampled_rows(len(data.fit_images), job.cfg.task.get("fit_codes_sample"), job.cfg.seed)
        fit_codes = fitted[rows] if fitted is not None else encode(model, data.fit_images[rows], data.batch_size,
                                                                   False)[0]
    return Codes(eval_codes, fit_codes, reconstructions)


def sampled_rows(n_fit: int, sample: int | None, seed: int) -> slice | np.ndarray:
    """The fit images whose codes are reduced: `sample` of them, drawn at random by `seed`, in their order
    (task.fit_codes_sample): the neighbour searches cost the square of the codes embedded, UMAP and the mixture
    their number. None: all."""
    if sample is None or sample >= n_fit:
        return slice(None)
    log.info("%d of the %d fit images' codes, drawn by the seed, reduced with the eval images' (task.fit_codes_sample)",
             sample, n_fit)
    return np.sort(np.random.default_rng(seed).choice(n_fit, sample, replace=False))


@torch.no_grad()
def encode(model: pl.LightningModule, images: torch.Tensor, batch_size: int, with_decoder: bool
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes of `images`, in order, and their reconstructions where asked and the model has a decoder."""
    decoder = model.decode if with_decoder and isinstance(model, Decoder) else None
    codes, reconstructions = [], []
    for (batch,) in batches((images,), batch_size, shuffle=False):
        code = model.encode(batch.to(model.device))
        codes.append(code.cpu())
        if decoder is not None:
            reconstructions.append(decoder(code).cpu())
    return torch.cat(codes).numpy(), torch.cat(reconstructions).float().numpy() if reconstructions else None


def partition_stages(job: Job, plan: Plan, codes: Codes) -> Partition:
    """reduce -> cluster -> repair (with task.size_prior=equal and task.rebalance_rounds)."""
    task, choices = job.cfg.task, job.choices
    repair = bool(task.rebalance_rounds) and task.size_prior == "equal"
    if task.rebalance_rounds and not repair:
        log.info("no size repair: task.rebalance_rounds=%d needs task.size_prior=equal, and it is %s (the data "
                 "declares data.class_sizes=%s)", task.rebalance_rounds, task.size_prior, job.cfg.data.get("class_sizes"))
    with job.timer("reduce"):
        depth = neighbours_needed(plan.reducer, repair, len(codes.eval) + (0 if codes.fit is None else len(codes.fit)))
        embedded, graph = embedded_and_graph(codes, task.smooth_neighbors, depth)
        reduce = partial(reduce_codes, with_neighbours(plan.reducer, graph), n_eval=len(codes.eval))
        fit_reduced, reduced = library_stage("reducer", choices.get("reducer"), reduce, embedded)
    with job.timer("cluster"):
        with_fit = fit_reduced if task.cluster_with_fit_codes else None
        cluster = partial(cluster_codes, plan.clusterer, fit_reduced=with_fit)
        clusters = np.asarray(library_stage("clusterer", choices.get("clusterer"), cluster, reduced))
    rounds: list[dict[str, Any]] = []
    if repair:
        log.info("size prior: the classes are assumed of equal size (task.size_prior=equal): the partition is "
                 "repaired towards equal cluster sizes, up to %d rounds", task.rebalance_rounds)
        with job.timer("rebalance"):
            clustered = clusters if with_fit is None else np.concatenate([plan.clusterer.predict(with_fit), clusters])
            nearest = graph[0][:, 1:] if graph is not None and len(clustered) == len(embedded) else None  # not self
            labels, rounds = rebalance_clusters(plan, embedded[-len(clustered):], clustered, task.rebalance_rounds,
                                                job.cfg.seed, nearest)
            clusters = labels[-len(codes.eval):]
    return Partition(embedded, reduced, clusters, rounds)


Graph = tuple[np.ndarray, np.ndarray]  # each embedded code's nearest, itself first: (indices, distances), nearest first


def codes_to_embed(codes: np.ndarray, fit_codes: np.ndarray | None = None, smooth_neighbors: int = 0) -> np.ndarray:
    """The codes the reducer embeds: the fit codes (when given) then the eval codes; with `smooth_neighbors`, each
    averaged with its nearest among them all.

    More codes give t-SNE and UMAP denser neighbourhoods to find the clusters' shape in: N2D embeds all 70,000
    Fashion-MNIST images. Only the eval images are then scored.
    """
    return neighbour_mean(codes if fit_codes is None else np.concatenate([fit_codes, codes]), smooth_neighbors)


def embedded_and_graph(codes: Codes, smooth_neighbors: int, neighbours: int) -> tuple[np.ndarray, Graph | None]:
    """The codes to embed (`codes_to_embed`) and, where a later stage reads it (`neighbours` > 0), their exact
    neighbour graph, `neighbours` deep: one search for UMAP and the repair, which each searched on their own before
    (70,000 codes of size 100: 15 s a search on 2 cores). The averaging searches the codes before it; its
    neighbours are not theirs after it (only 58% of each code's 20 nearest stay among them: docs/notebook.md)."""
    embedded = codes_to_embed(codes.eval, codes.fit, smooth_neighbors)
    return embedded, (neighbour_graph(embedded, neighbours) if neighbours else None)


def neighbours_needed(reducer: Any, repair: bool, n_codes: int) -> int:
    """How deep a neighbour graph the stages after the averaging read: a reducer that takes a precomputed one
    (umap-learn's `precomputed_knn` parameter) where it would search exactly itself (umap_exact.UMAP: up to
    EXACT_UP_TO codes), the repair (REBALANCE_NEIGHBOURS)."""
    params = reducer.get_params() if isinstance(reducer, BaseEstimator) else {}
    takes_graph = ("precomputed_knn" in params and isinstance(params.get("n_neighbors"), int)
                   and params.get("metric") == "euclidean" and n_codes <= getattr(reducer, "EXACT_UP_TO", n_codes))
    return max(params["n_neighbors"] if takes_graph else 0, REBALANCE_NEIGHBOURS if repair else 0)


def with_neighbours(reducer: Any, graph: Graph | None) -> Any:
    """The reducer, given the job's neighbour graph where it takes one of that metric and depth (a copy: the job's
    reducer stays as configured, for the repair's re-embeddings of a cluster)."""
    params = reducer.get_params() if isinstance(reducer, BaseEstimator) else {}
    if (graph is None or "precomputed_knn" not in params or params.get("metric") != "euclidean"
            or params.get("n_neighbors", 0) > graph[0].shape[1]):
        return reducer
    k = params["n_neighbors"]  # itself included, as umap-learn counts (which prunes a deeper graph only above 4,095)
    indices, distances = (np.ascontiguousarray(a[:, :k]) for a in graph)
    return clone(reducer).set_params(precomputed_knn=(indices, distances, None))


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


def library_stage(setting: str, name: str | None, function: Any, inputs: np.ndarray) -> np.ndarray:
    """Call a library's fit method, turning its complaints about parameters into a UserError."""
    try:
        return function(inputs)
    except ValueError as e:  # scikit-learn and openTSNE report bad parameters as ValueError
        raise UserError(f"{setting} ({name}): {e}") from None


def rebalance_clusters(plan: Plan, codes: np.ndarray, labels: np.ndarray, rounds: int, seed: int,
                       nearest: np.ndarray | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """task.rebalance_rounds: the clusterer's partition of `codes` (the codes it clustered, as the reducer took
    them) repaired towards equal sizes. A large cluster's codes are embedded again by a copy of the job's reducer
    and cut in two by k-means, an even cut (a mixture's likeliest two parts may be a large and a small one, which
    the next round would merge elsewhere)."""
    halves = KMeans(2, n_init=10, random_state=seed)
    return rebalance(labels, codes, embed=lambda members: clone(plan.reducer).fit_transform(members),
                     split=halves.fit_predict, rounds=rounds, nearest=nearest)


def scores(job: Job, plan: Plan, trained: Trained, codes: Codes, partition: Partition, mse: np.ndarray | None
           ) -> dict[str, Any]:
    """results.json's entries: the scores against the labels (None without them), what the encoder alone earns,
    the reconstruction errors (`mse`, per eval image), and what ran."""
    labels, choices, model = job.data.eval_labels, job.choices, trained.model
    examples = [] if mse is None else examples_of_different_classes(labels, len(mse), 2)
    results: dict[str, Any] = {
        **(clustering_scores(labels, partition.clusters, job.cfg.seed) if labels is not None else dict.fromkeys(
            ["public_score", "private_score", "acc", "nmi", "ari"])),
        # The encoder's share of the scores: the eval codes' own neighbourhoods, before any reducer.
        "knn_acc": None if labels is None else knn_accuracy(codes.eval, labels, KNN_PROBE_NEIGHBOURS),
        "recon_mse": None if mse is None else float(mse.mean()),
        "code_sparsity": float((codes.eval == 0).mean()),  # fraction of zeros: about 0 for an autoencoder
        "recon_mse_examples": [{"index": i, "label": None if labels is None else int(labels[i]), "mse": float(mse[i])}
                               for i in examples],
        "latent_dim": int(codes.eval.shape[1]),
        "reducer": choices.get("reducer"),
        "reduced_method": REDUCED_METHOD.get(choices.get("reducer"), choices.get("reducer")),
        "reduced_dim": int(partition.reduced.shape[1]),
        "reduced_codes": len(partition.embedded),  # what the reducer embedded
        "clusterer": choices.get("clusterer"),
        "n_clusters": plan.n_clusters,
        "rebalanced": partition.rebalanced,  # each round of task.rebalance_rounds: the clusters merged and split
        "model": choices.get("model"),
        "data": choices.get("data"),
        "seed": job.cfg.seed,
        "cache": trained.cache_status,
        "devices": {"encode": str(model.device)},  # where the stages ran
        "checkpoint": trained.entry.get("path"),
        "model_code_version": trained.entry.get("code_version"),
        "model_artifact": job.tracker.log_model(trained.entry["path"], trained.key, trained.cache_status == "hit",
                                                {"model": choices.get("model"), "latent_dim": int(codes.eval.shape[1]),
                                                 "code_version": trained.entry.get("code_version")}),
    }
    if hasattr(plan.reducer, "kl_divergence_"):  # a t-SNE's fitted attribute (scikit-learn's name for it)
        results["tsne_kl"] = float(plan.reducer.kl_divergence_)
    if isinstance(model, SolverReport):  # codes found by a solver (model=sparse_coding): did it converge?
        results |= model.solver_report()
    return results
