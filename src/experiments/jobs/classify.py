"""task=classify: features -> train the classifier (model=mlp) -> score on the eval images -> plots.

The features are the pixels, or (task.features=codes) the codes of an encoder that task=cluster trained and cached
with the same settings (task.encoder, any model of conf/model/ with `encode`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from experiments import plots
from experiments.accelerators import device_for
from experiments.cache import Cache, save_entry
from experiments.data import ImageDataModule, batches
from experiments.errors import UserError, build, check_types, target_class
from experiments.jobs import MAX, MIN, JobKind
from experiments.metrics import top_k_error
from experiments.models.protocols import Classifier, Encoder
from experiments.training import Job, check_optimizer, check_trainer, model_cache_key, train_model

log = logging.getLogger(__name__)

FEATURES = ("pixels", "codes")


@dataclass
class Plan:
    model: pl.LightningModule
    classes: np.ndarray  # the fit labels' classes; the model predicts their positions
    encoder: pl.LightningModule | None  # the cached encoder whose codes are the features (task.features=codes)


def check(cfg: DictConfig, data: ImageDataModule | None) -> Plan:
    """Labelled fit and eval images that do not overlap, features that exist, a classifier that builds."""
    assert data is not None
    target = target_class("model", cfg.model)
    if not (isinstance(target, type) and issubclass(target, Classifier)):
        raise UserError(f"task=classify trains a classifier, and {cfg.model._target_} is not one; use model=mlp "
                        "(an encoder is task=cluster's model)")
    check_data(data)
    check_types(cfg.task, "task", whole=("encoder_max_epochs",), flags=("standardize",))
    if cfg.task.features not in FEATURES:
        raise UserError(f"task.features={cfg.task.features!r} is not one of {', '.join(FEATURES)}")
    encoder = cached_encoder(cfg, data) if cfg.task.features == "codes" else None
    check_trainer(cfg.trainer)
    classes = np.unique(data.fit_labels)
    n_features = int(np.prod(data.image_shape)) if encoder is None else codes_of(encoder, data.fit_images[:2]).shape[1]
    model = build("model", cfg.model, n_features=n_features, n_classes=len(classes))
    check_optimizer(model)
    return Plan(model, classes, encoder)


def cached_encoder(cfg: DictConfig, data: ImageDataModule) -> pl.LightningModule:
    """task.encoder as task=cluster trained and cached it (for task.encoder_max_epochs, with these data and seed
    and the current code), loaded."""
    target = target_class("task.encoder", cfg.task.encoder)
    if not (isinstance(target, type) and issubclass(target, Encoder)):
        raise UserError(f"task.encoder: {cfg.task.encoder._target_} has no encode(images)")
    key = model_cache_key(cfg, data.source_digest, model=cfg.task.encoder, max_epochs=cfg.task.encoder_max_epochs)
    cache = Cache(cfg.cache_dir)
    if not cfg.cache or not cache.path(key).exists():
        raise UserError("task.features=codes: no cached encoder matches task.encoder, task.encoder_max_epochs, data, "
                        "seed and the current code; train it first with task=cluster and the same settings (model=..., "
                        "trainer.max_epochs=..., cache=true)")
    encoder = build("task.encoder", cfg.task.encoder, image_shape=data.image_shape)
    encoder.load_state_dict(cache.load(key)["state_dict"])
    log.info("features: the codes of cached encoder %s", cache.path(key))
    return encoder.eval()


def check_data(data: ImageDataModule) -> None:
    """A classifier needs labelled fit and eval images, and eval images it was not trained on."""
    if data.fit_labels is None:
        raise UserError("task=classify needs labels for the fit images (data=npy: set data.train_labels_path)")
    if data.eval_labels is None:
        raise UserError("task=classify needs labels for the eval images (data=npy: set data.eval_labels_path)")
    if data.eval_overlaps_fit:
        raise UserError(
            "task=classify would score the classifier on its own training images (the eval images are, or share, "
            "the fit images, whatever data.fit_limit and data.eval_limit); hold some out "
            "(data=digits: data.eval_fraction=0.3; data=npy: a data.eval_path of other images)"
        )
    if not np.isin(data.eval_labels, data.fit_labels).all():
        raise UserError("the eval labels include classes that no fit image has; the classifier cannot predict them")


def run(job: Job, plan: Plan) -> dict[str, Any]:
    cfg, data, classes = job.cfg, job.data, plan.classes
    fit_y = torch.from_numpy(np.searchsorted(classes, data.fit_labels))
    eval_y = torch.from_numpy(np.searchsorted(classes, data.eval_labels))
    with job.timer("features"):
        fit_x, eval_x = features(job, plan.encoder)
    with job.timer("fit"):
        history = train_model(
            cfg.trainer, plan.model, job.tracker.logger, job.checkpoint(), cfg.resume,
            train_dataloaders=batches((fit_x, fit_y), data.batch_size, shuffle=True, seed=cfg.seed),
            val_dataloaders=batches((eval_x, eval_y), data.batch_size, shuffle=False),
        )
    checkpoint = job.dir / "model.pt"
    save_entry({"state_dict": plan.model.state_dict(), "history": history, "classes": torch.from_numpy(classes)},
               checkpoint)
    with job.timer("score"):
        model = plan.model.to(device_for(cfg.trainer.accelerator))  # Lightning's teardown leaves it on the CPU
        logits = predict(model, eval_x, data.batch_size)
        results = scores(job, logits, eval_y.numpy(), classes, history)
    results |= {"n_features": int(fit_x.shape[1]), "devices": {"score": str(model.device)}, "checkpoint": str(checkpoint),
                "model_artifact": job.tracker.log_model(checkpoint, job.key, False, {"model": job.choices.get("model")})}
    predicted = logits.argmax(-1).numpy()
    job.tracker.log_table("predictions", ["id", "label", "class"],
                          [[i, int(classes[p]), data.class_name(int(classes[p]))] for i, p in enumerate(predicted)])
    with job.timer("plots"):
        confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
        np.add.at(confusion, (eval_y.numpy(), predicted), 1)
        names = [data.class_name(int(c)) for c in classes]
        job.tracker.log_figure("confusion_matrix", plots.confusion_figure, confusion, names)
        job.tracker.log_confusion_matrix("confusion_matrix_chart", eval_y.tolist(), predicted.tolist(), names)
        job.tracker.log_figure("curves", plots.curves_figure, history)
    return results


def features(job: Job, encoder: pl.LightningModule | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's inputs for the fit and eval images: pixels or codes, standardised with task.standardize."""
    data = job.data
    if encoder is None:
        fit_x, eval_x = data.fit_images.flatten(1), data.eval_images.flatten(1)
    else:
        encoder = encoder.to(device_for(job.cfg.trainer.accelerator))
        fit_x, eval_x = codes_of(encoder, data.fit_images), codes_of(encoder, data.eval_images)
    if not (torch.isfinite(fit_x).all() and torch.isfinite(eval_x).all()):
        raise UserError(f"task.features={job.cfg.task.features}: the inputs contain NaN or inf values")
    if job.cfg.task.standardize:  # zero mean, unit variance per feature, from the fit set
        mean, std = fit_x.mean(0), fit_x.std(0).clamp(min=1e-6)
        fit_x, eval_x = (fit_x - mean) / std, (eval_x - mean) / std
    return fit_x, eval_x


@torch.no_grad()
def codes_of(encoder: pl.LightningModule, images: torch.Tensor) -> torch.Tensor:
    """The encoder's codes of `images`, a batch at a time on its device, gathered on the CPU."""
    return torch.cat([encoder.encode(x.to(encoder.device)).cpu() for (x,) in batches((images,), 1024, shuffle=False)])


def scores(job: Job, logits: torch.Tensor, truth: np.ndarray, classes: np.ndarray,
           history: list[dict[str, float]]) -> dict[str, Any]:
    """results.json's entries: accuracy, top-k errors, per-class accuracy, the curves and what ran."""
    predicted = logits.argmax(-1).numpy()
    per_class = [float((predicted[truth == k] == k).mean()) if (truth == k).any() else 0.0 for k in range(len(classes))]
    model = job.cfg.model
    return {
        "test_acc": float((predicted == truth).mean()),
        "top1_error": top_k_error(logits.numpy(), truth, 1),
        "top5_error": top_k_error(logits.numpy(), truth, min(5, len(classes))),
        "per_class_acc": {str(c): a for c, a in zip(classes.tolist(), per_class)},
        "final_train_loss": history[-1].get("train/loss_epoch") if history else None,
        "final_val_loss": history[-1].get("val/loss") if history else None,
        "curves": history,
        "model": job.choices.get("model"),
        "data": job.choices.get("data"),
        "features": job.cfg.task.features,
        "hidden_dims": list(model.hidden_dims),
        "activation": model.activation,
        "loss": model.loss,
        "lr": model.lr,
        "l2": model.l2,
        "optimizer": model.optimizer,
        "gradients": model.gradients,
        "seed": job.cfg.seed,
    }


@torch.no_grad()
def predict(model: pl.LightningModule, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of `inputs`, computed on the model's device, returned on the CPU."""
    model.eval()
    return torch.cat([model(x.to(model.device, model.dtype)).cpu() for (x,) in batches((inputs,), batch_size, shuffle=False)])


KIND = JobKind(
    name="classify",
    reads=("model", "trainer", "task"),
    scores={"test_acc": MAX, "top1_error": MIN, "top5_error": MIN, "final_val_loss": MIN},
    columns=[
        ("Test Accuracy", "test_acc"),
        ("Loss", "loss"),
        ("Learning Rate", "lr"),
        ("Top-5 Error", "top5_error"),
        ("final_train_loss", "final_train_loss"),
        ("final_val_loss", "final_val_loss"),
        ("hidden_dims", "hidden_dims"),
        ("activation", "activation"),
        ("l2", "l2"),
        ("optimizer", "optimizer"),
        ("gradients", "gradients"),
        ("features", "features"),
    ],
    labelled_by=("Loss", "Learning Rate"),
    check=check,
    run=run,
    shown=("top5_error",),
)
