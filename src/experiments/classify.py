"""The classifier job (model=mlp): features -> train -> score on the eval images -> plots."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from experiments import plots
from experiments.cache import save_entry
from experiments.data import ImageDataModule, batches
from experiments.errors import UserError
from experiments.metrics import top_k_error
from experiments.models.autoencoder import ConvAutoencoder

if TYPE_CHECKING:
    from experiments.pipeline import Job

log = logging.getLogger(__name__)

# Keys of the model config that choose its inputs, not the classifier's own parameters.
FEATURE_KEYS = ("features", "encoder", "encoder_max_epochs", "standardize")


def check_data(data: ImageDataModule) -> None:
    """A classifier needs labelled fit and eval images, and eval images it was not trained on."""
    if data.fit_labels is None:
        raise UserError("model=mlp needs labels for the fit images (data=npy: set data.train_labels_path)")
    if data.eval_labels is None:
        raise UserError("model=mlp needs labels for the eval images (data=npy: set data.eval_labels_path)")
    if data.eval_is_fit:
        raise UserError(
            "model=mlp would be scored on its own training images; hold some out "
            "(data=digits: data.eval_fraction=0.3; data=npy: data.eval_path)"
        )
    if not np.isin(data.eval_labels, data.fit_labels).all():
        raise UserError("the eval labels include classes that no fit image has; the classifier cannot predict them")


def classify_job(job: Job) -> dict[str, Any]:
    from experiments.pipeline import model_cache_key, train_model

    cfg, data, timer, tracker = job.cfg, job.data, job.timer, job.tracker
    classes = np.unique(data.fit_labels)
    fit_y = torch.from_numpy(np.searchsorted(classes, data.fit_labels))
    eval_y = torch.from_numpy(np.searchsorted(classes, data.eval_labels))

    with timer("features"):
        features = cfg.model.get("features", "pixels")
        if features == "pixels":
            fit_x, eval_x = data.fit_images.flatten(1), data.eval_images.flatten(1)
        elif features == "autoencoder":
            key = model_cache_key(cfg, model=cfg.model.encoder, max_epochs=cfg.model.encoder_max_epochs)
            fit_x, eval_x = autoencoder_codes(job, key)
        else:
            raise UserError(f"model.features={features!r} is not one of pixels, autoencoder")
        if not (torch.isfinite(fit_x).all() and torch.isfinite(eval_x).all()):
            raise UserError(f"model.features={features}: the inputs contain NaN or inf values")
        if cfg.model.get("standardize", True):  # zero mean, unit variance per feature, from the fit set
            mean, std = fit_x.mean(0), fit_x.std(0).clamp(min=1e-6)
            fit_x, eval_x = (fit_x - mean) / std, (eval_x - mean) / std

    settings = {k: v for k, v in cfg.model.items() if k not in FEATURE_KEYS}
    model = instantiate(DictConfig(settings), n_features=fit_x.shape[1], n_classes=len(classes))
    with timer("fit"):
        history = train_model(
            cfg.trainer,
            model,
            tracker.logger,
            job.dir / "checkpoints" / "last.ckpt",
            cfg.resume,
            train_dataloaders=batches((fit_x, fit_y), data.batch_size, shuffle=True, seed=cfg.seed),
            val_dataloaders=batches((eval_x, eval_y), data.batch_size, shuffle=False),
        )
    checkpoint = job.dir / "model.pt"
    save_entry({"state_dict": model.state_dict(), "history": history, "classes": torch.from_numpy(classes)}, checkpoint)

    with timer("score"):
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(x.to(model.device).to(model.dtype)).cpu() for x, _ in
                                batches((eval_x, eval_y), data.batch_size, shuffle=False)])
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
            "final_val_loss": history[-1].get("val/loss") if history else None,
            "curves": history,
            "model": job.choices.get("model"),
            "data": job.choices.get("data"),
            "features": features,
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
            "wandb_dir": tracker.wandb_dir,
        }
    tracker.log_table("predictions", ["id", "label"], [[i, int(classes[p])] for i, p in enumerate(predicted)])

    with timer("plots"):
        tracker.log_figure("confusion_matrix", plots.confusion_figure(confusion, classes.tolist()))
        tracker.log_figure("curves", plots.curves_figure(history))
    return results


def autoencoder_codes(job: Job, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of the fit and eval images under the cached autoencoder with this key."""
    if job.cache is None or not job.cache.path(key).exists():
        raise UserError(
            "model.features=autoencoder: no cached autoencoder matches model.encoder, "
            "model.encoder_max_epochs, data and seed; train it first with model=autoencoder "
            "and the same settings (and cache=true)"
        )
    entry = job.cache.load(key)
    settings = {k: v for k, v in job.cfg.model.encoder.items() if k != "_target_"}
    encoder = ConvAutoencoder(job.data.image_shape, **settings)
    encoder.load_state_dict(entry["state_dict"])
    encoder.eval()
    with torch.no_grad():
        codes = [
            torch.cat([encoder.encode(x) for x, *_ in batches((images,), 1024, shuffle=False)])
            for images in (job.data.fit_images, job.data.eval_images)
        ]
    log.info("features: %d-dimensional codes of cached autoencoder %s", codes[0].shape[1], job.cache.path(key))
    return codes[0], codes[1]
