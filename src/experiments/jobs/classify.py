"""task=classify (chosen by model=mlp): features -> train the classifier -> score on the eval images -> plots."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from experiments import plots
from experiments.accelerators import device_for
from experiments.cache import Cache, save_entry
from experiments.data import ImageDataModule, batches
from experiments.errors import UserError, check_against_hints, check_types
from experiments.jobs import MAX, MIN, JobKind
from experiments.metrics import top_k_error
from experiments.models.autoencoder import ConvAutoencoder
from experiments.training import Job, check_optimizer, check_trainer, model_cache_key, train_model

log = logging.getLogger(__name__)

# Keys of the model config that choose its inputs, not the classifier's own parameters.
FEATURE_KEYS = ("features", "encoder", "encoder_max_epochs", "standardize")
FEATURES = ("pixels", "autoencoder")


@dataclass
class Plan:
    model: pl.LightningModule
    classes: np.ndarray  # the fit labels' classes; the model predicts their positions
    features: str
    encoder_key: str | None  # the cached autoencoder whose codes are the features


def check(cfg: DictConfig, data: ImageDataModule | None) -> Plan:
    """Labelled fit and eval images that do not overlap, features that exist, a classifier that builds."""
    assert data is not None
    if not hasattr(get_class(cfg.model._target_), "predict_proba"):
        raise UserError(f"task=classify trains a classifier, and {cfg.model._target_} is not one; use model=mlp")
    check_data(data)
    check_types(cfg.model, "model", whole=("encoder_max_epochs",), flags=("standardize",))  # the job's, not the model's
    features = cfg.model.get("features", "pixels")
    if features not in FEATURES:
        raise UserError(f"model.features={features!r} is not one of {', '.join(FEATURES)}")
    encoder_key = None
    if features == "autoencoder":
        encoder_key = model_cache_key(cfg, data.source_digest, model=cfg.model.encoder,
                                      max_epochs=cfg.model.encoder_max_epochs)
        if not cfg.cache or not Cache(cfg.cache_dir).path(encoder_key).exists():
            raise UserError(
                "model.features=autoencoder: no cached autoencoder matches model.encoder, "
                "model.encoder_max_epochs, data, seed and the current code; train it first with "
                "model=autoencoder and the same settings (and cache=true)"
            )
        n_features = int(cfg.model.encoder.latent_dim)
    else:
        n_features = int(np.prod(data.image_shape))
    check_trainer(cfg.trainer)
    classes = np.unique(data.fit_labels)
    settings = {k: v for k, v in cfg.model.items() if k not in FEATURE_KEYS}
    check_against_hints(settings, "model", get_class(cfg.model._target_))
    model = instantiate(DictConfig(settings), n_features=n_features, n_classes=len(classes))
    check_optimizer(model)
    return Plan(model, classes, features, encoder_key)


def check_data(data: ImageDataModule) -> None:
    """A classifier needs labelled fit and eval images, and eval images it was not trained on."""
    if data.fit_labels is None:
        raise UserError("model=mlp needs labels for the fit images (data=npy: set data.train_labels_path)")
    if data.eval_labels is None:
        raise UserError("model=mlp needs labels for the eval images (data=npy: set data.eval_labels_path)")
    if data.eval_overlaps_fit:
        raise UserError(
            "model=mlp would be scored on its own training images (the eval images are, or share, the fit "
            "images, whatever data.fit_limit and data.eval_limit); hold some out "
            "(data=digits: data.eval_fraction=0.3; data=npy: a data.eval_path of other images)"
        )
    if not np.isin(data.eval_labels, data.fit_labels).all():
        raise UserError("the eval labels include classes that no fit image has; the classifier cannot predict them")


def run(job: Job, plan: Plan) -> dict[str, Any]:
    cfg, data, timer, tracker, classes = job.cfg, job.data, job.timer, job.tracker, plan.classes
    fit_y = torch.from_numpy(np.searchsorted(classes, data.fit_labels))
    eval_y = torch.from_numpy(np.searchsorted(classes, data.eval_labels))

    with timer("features"):
        if plan.features == "pixels":
            fit_x, eval_x = data.fit_images.flatten(1), data.eval_images.flatten(1)
        else:
            fit_x, eval_x = autoencoder_codes(job, plan.encoder_key)
        if not (torch.isfinite(fit_x).all() and torch.isfinite(eval_x).all()):
            raise UserError(f"model.features={plan.features}: the inputs contain NaN or inf values")
        if cfg.model.get("standardize", True):  # zero mean, unit variance per feature, from the fit set
            mean, std = fit_x.mean(0), fit_x.std(0).clamp(min=1e-6)
            fit_x, eval_x = (fit_x - mean) / std, (eval_x - mean) / std

    model = plan.model
    with timer("fit"):
        history = train_model(
            cfg.trainer, model, tracker.logger, job.checkpoint(), cfg.resume,
            train_dataloaders=batches((fit_x, fit_y), data.batch_size, shuffle=True, seed=cfg.seed),
            val_dataloaders=batches((eval_x, eval_y), data.batch_size, shuffle=False),
        )
    checkpoint = job.dir / "model.pt"
    save_entry({"state_dict": model.state_dict(), "history": history, "classes": torch.from_numpy(classes)}, checkpoint)

    with timer("score"):
        model = model.to(device_for(cfg.trainer.accelerator))  # Lightning's teardown leaves it on the CPU
        logits = predict(model, eval_x, data.batch_size)
        predicted = logits.argmax(-1).numpy()
        truth = eval_y.numpy()
        confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
        np.add.at(confusion, (truth, predicted), 1)
        per_class = (np.diag(confusion) / np.maximum(confusion.sum(1), 1)).tolist()
        results: dict[str, Any] = {
            "test_acc": float((predicted == truth).mean()),
            "top1_error": top_k_error(logits.numpy(), truth, 1),
            "top5_error": top_k_error(logits.numpy(), truth, min(5, len(classes))),
            "per_class_acc": {str(c): a for c, a in zip(classes.tolist(), per_class)},
            "final_train_loss": history[-1].get("train/loss_epoch") if history else None,
            "devices": {"score": str(model.device)},  # where the stages ran
            "final_val_loss": history[-1].get("val/loss") if history else None,
            "curves": history,
            "model": job.choices.get("model"),
            "data": job.choices.get("data"),
            "features": plan.features,
            "n_features": int(fit_x.shape[1]),
            "hidden_dims": list(cfg.model.hidden_dims),
            "activation": cfg.model.activation,
            "loss": cfg.model.loss,
            "lr": cfg.model.lr,
            "l2": cfg.model.l2,
            "optimizer": cfg.model.optimizer,
            "gradients": cfg.model.gradients,
            "seed": cfg.seed,
            "checkpoint": str(checkpoint),
        }
    tracker.log_table("predictions", ["id", "label"], [[i, int(classes[p])] for i, p in enumerate(predicted)])

    results["model_artifact"] = tracker.log_model(checkpoint, job.key, False, {"model": job.choices.get("model")})

    with timer("plots"):
        tracker.log_figure("confusion_matrix", plots.confusion_figure, confusion, classes.tolist())
        if tracker.figures and tracker.wandb_run is not None:  # W&B's own chart beside the PNG
            import wandb

            tracker.log({"confusion_matrix_chart": wandb.plot.confusion_matrix(
                y_true=truth.tolist(), preds=predicted.tolist(), class_names=[str(c) for c in classes])})
        tracker.log_figure("curves", plots.curves_figure, history)
    return results


@torch.no_grad()
def predict(model: pl.LightningModule, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of `inputs`, computed on the model's device, returned on the CPU."""
    model.eval()
    return torch.cat([model(x.to(model.device, model.dtype)).cpu() for (x,) in batches((inputs,), batch_size, shuffle=False)])


def autoencoder_codes(job: Job, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of the fit and eval images under the cached autoencoder with this key."""
    entry = job.cache.load(key)
    settings = {k: v for k, v in job.cfg.model.encoder.items() if k != "_target_"}
    encoder = ConvAutoencoder(job.data.image_shape, **settings).to(device_for(job.cfg.trainer.accelerator))
    encoder.load_state_dict(entry["state_dict"])
    encoder.eval()
    with torch.no_grad():
        codes = [
            torch.cat([encoder.encode(x.to(encoder.device)).cpu() for x, *_ in batches((images,), 1024, shuffle=False)])
            for images in (job.data.fit_images, job.data.eval_images)
        ]
    log.info("features: %d-dimensional codes of cached autoencoder %s", codes[0].shape[1], job.cache.path(key))
    return codes[0], codes[1]


KIND = JobKind(
    name="classify",
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
    needs_data=lambda cfg: True,
    check=check,
    run=run,
    shown=("top5_error",),
)
