"""One job, top to bottom: load the data, then either the representation stages
(fit or load the autoencoder -> encode -> reduce -> cluster -> score -> plots) or, for model=mlp, the
classifier's (classify.py), for model=lista learned ISTA's (unroll.py), or for task=deblur the solvers'
(deblur.py); results.json and the W&B run at the end."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from sklearn.decomposition import PCA

from experiments import classify, deblur, plots, unroll
from experiments.cache import Cache, Entry, cache_key, save_entry
from experiments.data import ImageDataModule
from experiments.errors import UserError
from experiments.files import write_json
from experiments.launch import limit_threads
from experiments.metrics import clustering_scores, examples_of_different_classes, per_image_mse
from experiments.reduce import OpenTSNE
from experiments.resume import EpochCheckpoint, config_hash, finished_results, resumable_checkpoint, stable_run_id
from experiments.tracking import EpochHistory, Tracker, make_logger, resolved, sweep_group, write_csv

log = logging.getLogger(__name__)

# Trainer settings that change how training is shown, not the model it produces.
NOT_IN_CACHE_KEY = {"enable_progress_bar", "enable_model_summary", "log_every_n_steps"}


class StageTimer:
    """Seconds per stage, with a log line as each one ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("stage %s ...", stage)
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)
        log.info("stage %s done in %.1fs", stage, self.seconds[stage])


@dataclass
class Job:
    """What the stages of one job share."""

    cfg: DictConfig
    dir: Path
    choices: dict[str, str]
    data: ImageDataModule | None  # None for task=deblur on a bundled image
    tracker: Tracker
    timer: StageTimer
    cache: Cache | None


def run(cfg: DictConfig) -> float | None:
    """Run one job; return its score (the first of `SHOWN[kind]`), for sweepers that optimise it."""
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    check_accelerator(cfg.trainer)
    if cfg.trainer.get("strategy") == "ddp":
        check_ddp(cfg, multirun)
        if rank_zero_only.rank > 0:  # a process Lightning started for another GPU: it only trains
            return train_ddp_worker(cfg, job_dir)
    log.info("threads per job: %d", limit_threads(hydra_cfg))
    cfg_hash = config_hash(resolved(cfg))
    kind = job_kind(cfg)
    if cfg.resume and (done := finished_results(job_dir, cfg_hash)) is not None:
        log.info("already finished, skipped (resume=true): %s", job_dir / "results.json")
        return done[SHOWN[kind][0]]
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    timer = StageTimer()

    data: ImageDataModule | None = None
    if needs_data(kind, cfg):
        with timer("load"):
            data = instantiate(cfg.data)
            data.setup()
    # Checks that need only the data come before a W&B run is started.
    if kind == "classifier":
        classify.check_data(data)
    elif kind == "cluster":
        n_clusters = resolve_n_clusters(cfg.clusterer.get("n_clusters"), data.n_classes, len(data.eval_images))

    logger = make_logger(
        cfg.logger,
        job_dir,
        # A job's folder is <sweep dir>/<job number>: its parent names the sweep, already resolved.
        group=sweep_group(job_dir.parent) if multirun else None,
        name=(hydra_cfg.job.override_dirname or None) if multirun else None,
        config=resolved(cfg),
        run_id=stable_run_id(job_dir),
    )
    cache = Cache(cfg.cache_dir) if cfg.cache else None
    job = Job(cfg, job_dir, dict(hydra_cfg.runtime.choices), data, Tracker(job_dir, logger), timer, cache)
    failed = True
    try:
        if kind == "deblur":
            results = deblur.deblur_job(job, deblur_input(cfg.task, data))
        elif kind == "unrolled":
            results = unroll.lista_job(job)
        else:
            results = classify.classify_job(job) if kind == "classifier" else cluster_job(job, n_clusters)
        results["seconds"] = timer.seconds
        results["config_hash"] = cfg_hash
        job.tracker.log_summary(results)
        write_json(job_dir / "results.json", results)
        failed = False
    finally:
        job.tracker.finish(failed)
    if results["wandb_dir"] and cfg.logger.get("mode") == "offline":
        log.info("W&B run saved offline; upload it with: wandb sync %s", results["wandb_dir"])
    log.info("results: %s -> %s", " ".join(f"{k}={fmt(results[k])}" for k in SHOWN[kind]),
             job_dir / "results.json")
    return results[SHOWN[kind][0]]


# What the last log line shows, and the score a sweeper optimises and a resumed job returns (the first),
# per kind of job.
SHOWN = {
    "classifier": ("test_acc", "top5_error"),
    "deblur": ("psnr_fista", "psnr_ista", "psnr_blurred"),
    "unrolled": ("nmse_db_lista", "nmse_db_ista", "nmse_db_fista"),
    "cluster": ("public_score", "acc", "nmi", "private_score"),
}


def job_kind(cfg: DictConfig) -> str:
    """deblur (task=deblur), classifier (model=mlp), unrolled (model=lista) or cluster (an encoder's codes)."""
    if cfg.task.name == "deblur":
        return "deblur"
    return getattr(get_class(cfg.model._target_), "kind", "cluster")


def needs_data(kind: str, cfg: DictConfig) -> bool:
    if kind == "deblur":
        return cfg.task.image == "data"
    if kind == "unrolled":
        return cfg.model.problem.kind == "patches"
    return True


def deblur_input(task_cfg: DictConfig, data: ImageDataModule | None) -> np.ndarray | None:
    """The data group's image `task.index` when task.image=data."""
    if data is None:
        return None
    if not 0 <= task_cfg.index < len(data.fit_images):
        raise UserError(f"task.index={task_cfg.index} is not one of the data's {len(data.fit_images)} fit images")
    return data.fit_images[task_cfg.index].double().numpy()


def check_ddp(cfg: DictConfig, multirun: bool) -> None:
    if multirun:
        raise UserError(
            "accelerator=ddp runs one job at a time: Lightning starts each GPU's process by running the "
            "command again, which -m would turn into a new sweep; sweep with hydra/launcher=slurm_gpu instead"
        )
    if job_kind(cfg) != "cluster":
        raise UserError("accelerator=ddp trains the encoders only (autoencoder, ista); use accelerator=gpu")


def train_ddp_worker(cfg: DictConfig, job_dir: Path) -> None:
    """Rank > 0 under DDP: train on this process's shard beside rank 0, which alone caches, scores and logs."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data: ImageDataModule = instantiate(cfg.data)
    data.setup()
    model = encoder_for(cfg, data)
    cache = Cache(cfg.cache_dir) if cfg.cache else None
    checkpoint = partial_checkpoint(cache, model_cache_key(cfg), job_dir)
    train_model(cfg.trainer, model, None, checkpoint, cfg.resume, datamodule=data)


def encoder_for(cfg: DictConfig, data: ImageDataModule) -> pl.LightningModule:
    """The configured encoder, sized for the data; the data's training batches carry image indices when the
    model asks (sparse coding warm-starts each image's code)."""
    model = instantiate(cfg.model, image_shape=data.image_shape)
    data.with_index = getattr(model, "needs_example_index", False)
    return model


def partial_checkpoint(cache: Cache | None, key: str, job_dir: Path) -> Path:
    """Where training saves its state every epoch: beside the cache entry (so a killed job run again, in
    this sweep or another that needs the same model, goes on from its last epoch), else in the job folder."""
    return cache.root / f"{key}.partial.ckpt" if cache is not None else job_dir / "checkpoints" / "last.ckpt"


def cluster_job(job: Job, n_clusters: int) -> dict[str, Any]:
    """fit (or load) the autoencoder -> encode -> reduce -> cluster -> score -> plots."""
    cfg, data, timer, tracker, choices = job.cfg, job.data, job.timer, job.tracker, job.choices
    model_key = model_cache_key(cfg)
    with timer("fit"):
        model, trained, cache_status = fit_or_load(cfg, data, tracker.logger, job.cache, model_key)
    if cache_status == "hit":
        replay_history(tracker, trained["history"])

    with timer("encode"):
        codes, reconstructions = encode(model, data)
    np.save(job.dir / "codes.npy", codes)

    with timer("reduce"):
        reducer = instantiate(cfg.reducer)
        check_n_components(reducer, codes)
        reduced = run_library_stage("reducer", choices.get("reducer"), reducer.fit_transform, codes)

    with timer("cluster"):
        clusterer = instantiate(cfg.clusterer, n_clusters=n_clusters)
        clusters = np.asarray(run_library_stage("clusterer", choices.get("clusterer"), clusterer.fit_predict, reduced))
    write_csv(job.dir / "predictions.csv", ["id", "label"], [[i, int(c)] for i, c in enumerate(clusters)])

    with timer("score"):
        labels = data.eval_labels
        mse = per_image_mse(data.eval_images.numpy(), reconstructions)
        example_ids = examples_of_different_classes(labels, len(mse), 2)
        results: dict[str, Any] = {
            **(clustering_scores(labels, clusters, cfg.seed) if labels is not None else dict.fromkeys(
                ["public_score", "private_score", "acc", "nmi", "ari"])),
            "recon_mse": float(mse.mean()),
            "code_sparsity": float((codes == 0).mean()),  # fraction of zeros: about 0 for an autoencoder
            "recon_mse_examples": [
                {"index": i, "label": None if labels is None else int(labels[i]), "mse": float(mse[i])}
                for i in example_ids
            ],
            "latent_dim": int(codes.shape[1]),
            "reducer": choices.get("reducer"),
            "reduced_dim": int(reduced.shape[1]),
            "clusterer": choices.get("clusterer"),
            "n_clusters": n_clusters,
            "model": choices.get("model"),
            "data": choices.get("data"),
            "seed": cfg.seed,
            "cache": cache_status,
            "checkpoint": trained.get("path"),
            "wandb_dir": tracker.wandb_dir,
        }
        if hasattr(reducer, "kl_divergence_"):
            results["tsne_kl"] = reducer.kl_divergence_
        if hasattr(model, "solver_report"):  # codes found by a solver (model=ista): did it converge?
            results |= model.solver_report()

    with timer("plots"):
        log_reconstructions(tracker, data, reconstructions, mse, cfg.plots.reconstructions)
        if hasattr(model, "atoms"):  # a dictionary's atoms are images: show them
            tracker.log_figure("atoms", plots.image_grid_figure(model.atoms().cpu().numpy(), "dictionary atoms"))
        views = EmbeddingViews(codes, cfg.plots.max_points, cfg.seed, job.cache, model_key)
        log_embeddings(tracker, views, cfg.plots.tsne, reduced, labels, clusters, choices.get("reducer"))
    return results


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def check_accelerator(trainer_cfg: DictConfig) -> None:
    if trainer_cfg.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        name = "ddp" if trainer_cfg.get("strategy") == "ddp" else "gpu"
        raise UserError(f"accelerator={name} but no CUDA GPU is visible here; use accelerator=cpu or accelerator=auto")


def resolve_n_clusters(configured: int | None, n_classes: int | None, n_eval: int) -> int:
    """clusterer.n_clusters, defaulting to the data's class count."""
    n_clusters = configured if configured is not None else n_classes
    if n_clusters is None:
        raise UserError("clusterer.n_clusters: the eval images have no labels to count classes from; set it")
    if n_clusters < 1:
        raise UserError(f"clusterer.n_clusters must be at least 1, got {n_clusters}")
    if n_clusters > n_eval:
        raise UserError(f"clusterer.n_clusters={n_clusters} is more clusters than the {n_eval} eval images")
    return int(n_clusters)


def check_n_components(reducer: Any, codes: np.ndarray) -> None:
    n_components = getattr(reducer, "n_components", None)
    if not isinstance(n_components, int):
        return
    limit = min(codes.shape)
    if not 1 <= n_components <= limit:
        raise UserError(
            f"reducer.n_components={n_components} does not fit {codes.shape[0]} codes of dimension "
            f"{codes.shape[1]} (model.latent_dim); use 1..{limit}"
        )


def run_library_stage(setting: str, name: str | None, function: Any, inputs: np.ndarray) -> np.ndarray:
    """Call a library's fit method, turning its complaints about parameters into a UserError."""
    try:
        return function(inputs)
    except ValueError as e:  # scikit-learn and openTSNE report bad parameters as ValueError
        raise UserError(f"{setting} ({name}): {e}") from None


def model_cache_key(cfg: DictConfig, model: DictConfig | None = None, max_epochs: int | None = None) -> str:
    """The cache key of the model that `cfg` trains (or of `model` trained for `max_epochs` on its data)."""
    trainer = {k: v for k, v in resolved(cfg.trainer).items() if k not in NOT_IN_CACHE_KEY}
    if max_epochs is not None:
        trainer["max_epochs"] = max_epochs
    data = {k: v for k, v in resolved(cfg.data).items() if k != "num_workers"}
    model_settings = resolved(cfg.model if model is None else model)
    return cache_key({"data": data, "model": model_settings, "trainer": trainer, "seed": cfg.seed})


def train_model(
    trainer_cfg: DictConfig, model: pl.LightningModule, logger: Any, checkpoint: Path, resume: bool, **fit_args: Any
) -> list[dict]:
    """Fit `model` with the configured Lightning Trainer, saving its state to `checkpoint` after every
    epoch and, with `resume`, continuing from there; return the per-epoch metrics."""
    history = EpochHistory()
    callbacks = [history, EpochCheckpoint(checkpoint)]
    trainer: pl.Trainer = instantiate(trainer_cfg, logger=logger or False, callbacks=callbacks)
    start_from = resumable_checkpoint(checkpoint, resume)
    with warnings.catch_warnings():
        # In-memory tensors need no loader workers; Lightning suggests them regardless.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(model, ckpt_path=start_from, weights_only=False, **fit_args)
    checkpoint.unlink(missing_ok=True)
    return history.epochs


def fit_or_load(
    cfg: DictConfig, data: ImageDataModule, logger: pl.loggers.Logger | None, cache: Cache | None, key: str
) -> tuple[pl.LightningModule, Entry, str]:
    """The trained model, from the cache when one with the same settings exists; and "hit"/"miss"/"off"."""
    model = encoder_for(cfg, data)
    job_dir = Path(HydraConfig.get().runtime.output_dir)

    def train() -> Entry:
        history = train_model(cfg.trainer, model, logger, partial_checkpoint(cache, key, job_dir), cfg.resume, datamodule=data)
        return {"state_dict": model.state_dict(), "history": history}

    if cache is not None:
        trained, hit = cache.get_or_compute(key, train)
        trained = {**trained, "path": str(cache.path(key))}
        if hit:
            model.load_state_dict(trained["state_dict"])
        log.info("model cache %s: %s", "hit" if hit else "miss", cache.path(key))
        return model, trained, "hit" if hit else "miss"
    # Without the cache the job keeps its own checkpoint, so a failure after training loses nothing.
    trained = train()
    path = job_dir / "model.pt"
    save_entry(trained, path)
    return model, {**trained, "path": str(path)}, "off"


def replay_history(tracker: Tracker, history: list[dict[str, float]]) -> None:
    """Log the cached model's training curves, so every job's run shows how its model trained."""
    for row in history:
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"} | {"epoch": row["epoch"]})


@torch.no_grad()
def encode(model: pl.LightningModule, data: ImageDataModule) -> tuple[np.ndarray, np.ndarray]:
    """Codes and reconstructions of the eval images."""
    model.eval()
    codes, reconstructions = [], []
    for images, *_ in data.eval_dataloader():
        code = model.encode(images.to(model.device))
        codes.append(code.cpu())
        reconstructions.append(model.decoder(code).cpu())
    return torch.cat(codes).numpy(), torch.cat(reconstructions).numpy()


def log_reconstructions(
    tracker: Tracker, data: ImageDataModule, reconstructions: np.ndarray, mse: np.ndarray, count: int
) -> None:
    labels = data.eval_labels
    ids = examples_of_different_classes(labels, len(mse), count)
    originals = data.eval_images.numpy()[ids]
    captions = [
        (f"#{i} " if labels is None else f"#{i} class {labels[i]} ") + f"MSE {mse[i]:.4f}" for i in ids
    ]
    tracker.log_figure("reconstructions", plots.reconstruction_figure(originals, reconstructions[ids], captions))
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
        self.key = cache_key({"model": model_key, "view": "tsne", "sample": len(self.sample)})

    def pca(self) -> np.ndarray:
        return PCA(2, random_state=self.seed).fit_transform(self.codes)

    def tsne(self) -> np.ndarray:
        def compute() -> Entry:
            perplexity = min(30.0, (len(self.codes) - 1) / 3.1)
            return {"coords": torch.from_numpy(OpenTSNE(2, perplexity=perplexity, random_state=self.seed).fit_transform(self.codes))}

        entry = compute() if self.cache is None else self.cache.get_or_compute(self.key, compute)[0]
        return entry["coords"].numpy()


def log_embeddings(
    tracker: Tracker,
    views: EmbeddingViews,
    with_tsne: bool,
    reduced: np.ndarray,
    labels: np.ndarray | None,
    clusters: np.ndarray,
    reducer_name: str | None,
) -> None:
    """2-D PCA and t-SNE views of the codes, as figures and one explorable table."""
    if views.codes.shape[1] < 2:
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
        tracker.log_figure(f"embedding/{method}", plots.embedding_figure(coords, sample_labels, clusters[sample], title))
        rows += [
            [method, int(i), float(x), float(y), None if labels is None else int(labels[i]), int(clusters[i])]
            for i, (x, y) in zip(sample, coords)
        ]
    tracker.log_table("embedding_2d", ["method", "index", "x", "y", "label", "cluster"], rows)
