"""Bench sections on training: the Lightning module against a plain loop (throughput), and the MLP against
scikit-learn's and its manual gradients against autograd (mlp)."""

from __future__ import annotations

import time
import warnings

import pytorch_lightning as pl
import torch
from common import Context, Row, Section, cli_results, seconds

from experiments.data import Digits, ImageDataModule, batches
from experiments.models.autoencoder import ConvAutoencoder


class EpochClock(pl.Callback):
    """Seconds of each training epoch, without Lightning's setup and teardown."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()  # the epoch's last steps may still be queued on the GPU
        self.seconds.append(time.perf_counter() - self.start)


def lightning_epoch(data: ImageDataModule, seed: int, accelerator: str) -> float:
    torch.manual_seed(seed)
    model = ConvAutoencoder(data.image_shape)
    clock = EpochClock()
    trainer = pl.Trainer(
        max_epochs=1, accelerator=accelerator, devices=1, logger=False, callbacks=[clock], limit_val_batches=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=data.train_dataloader(), val_dataloaders=data.val_dataloader())
    return clock.seconds[0]


def plain_epoch(data: ImageDataModule, seed: int, accelerator: str) -> float:
    torch.manual_seed(seed)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    model = ConvAutoencoder(data.image_shape).to(device)
    optimizer = model.configure_optimizers()
    model.train()
    start = time.perf_counter()
    for images, _ in data.train_dataloader():
        images = images.to(device)
        loss = torch.nn.functional.mse_loss(model(images), images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()  # the last steps may still be queued, as for EpochClock
    return time.perf_counter() - start


def throughput(context: Context, repeats: int = 2) -> dict:
    """Best of `repeats` epochs each, alternating so that both see the same machine state; on the CPU, and on
    the GPU where one is visible."""
    data, result = context.data, {}
    for accelerator in ["cpu"] + (["gpu"] if torch.cuda.is_available() else []):
        lightning, plain = [], []
        for i in range(repeats):
            plain.append(plain_epoch(data, i, accelerator))
            lightning.append(lightning_epoch(data, i, accelerator))
        n = len(data.fit_images)
        result[accelerator] = {"lightning_img_s": n / min(lightning), "plain_img_s": n / min(plain),
                               "ratio": min(plain) / min(lightning)}
    return result


def throughput_rows(r: dict) -> list[Row]:
    on = {a: r[a] for a in ("cpu", "gpu") if a in r} or {"cpu": r}  # a bench.json from before the GPU rows
    return [(f"autoencoder training on the {a.upper()}: Lightning module vs plain PyTorch loop (images/s)",
             f"{t['ratio']:.2f} of plain", f"{t['lightning_img_s']:.0f} vs {t['plain_img_s']:.0f} img/s")
            for a, t in on.items()]


def mlp(context: Context) -> dict:
    """task=classify on raw pixels against scikit-learn's MLPClassifier with the same layer, optimiser, standardised
    pixels and epochs; and an epoch with manual gradients against autograd."""
    from sklearn.neural_network import MLPClassifier as SklearnMLP
    from sklearn.preprocessing import StandardScaler

    data = Digits(eval_fraction=0.3, seed=0) if context.quick else context.data
    data.setup()
    results = cli_results(context.out / "mlp", ["task=classify", *(["data=digits", "data.eval_fraction=0.3"]
                                                                   if context.quick else [])])
    scaler = StandardScaler().fit(data.fit_images.flatten(1).numpy())
    start = time.perf_counter()
    baseline = SklearnMLP(hidden_layer_sizes=(512,), learning_rate_init=1e-3, batch_size=256,
                          max_iter=len(results["curves"]), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: stopped at max_iter, as asked
        baseline.fit(scaler.transform(data.fit_images.flatten(1).numpy()), data.fit_labels)
    sklearn_s = time.perf_counter() - start
    sklearn_acc = float(baseline.score(scaler.transform(data.eval_images.flatten(1).numpy()), data.eval_labels))
    epoch_s = gradient_epochs(data)
    return {"test_acc": results["test_acc"], "sklearn_test_acc": sklearn_acc, "sklearn_fit_s": sklearn_s,
            "epochs": len(results["curves"]), "fit_s": results["seconds"]["fit"],
            "autograd_epoch_s": epoch_s["autograd"], "manual_epoch_s": epoch_s["manual"],
            "manual_over_autograd": epoch_s["manual"] / epoch_s["autograd"]}


def gradient_epochs(data: ImageDataModule) -> dict[str, float]:
    """Seconds of an MLP epoch with each kind of gradients, alternated, best of two each."""
    from experiments.models.mlp import MLPClassifier

    x, y, epoch_s = data.fit_images.flatten(1), torch.from_numpy(data.fit_labels), {}
    for gradients in ("autograd", "manual", "autograd", "manual"):
        torch.manual_seed(0)
        model = MLPClassifier(x.shape[1], 10, hidden_dims=(512,), optimizer="adam", lr=1e-3, gradients=gradients)
        optimizer = model.configure_optimizers()
        start = time.perf_counter()
        for xb, yb in batches((x, y), 256, shuffle=True, seed=0):
            total, _ = model.objective(model(xb), yb)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        epoch_s[gradients] = min(epoch_s.get(gradients, float("inf")), time.perf_counter() - start)
    return epoch_s


def mlp_rows(r: dict) -> list[Row]:
    rows = [("MLP epoch, gradients=manual vs autograd (s/epoch)", f"{r['manual_over_autograd']:.2f}x the time",
             f"{seconds(r['manual_epoch_s'])} vs {seconds(r['autograd_epoch_s'])}")]
    if "sklearn_test_acc" in r:
        rows.insert(0, ((f"task=classify on raw pixels, default config ({r['epochs']} epochs): test accuracy vs "
                         "scikit-learn's MLPClassifier, same layer, optimiser and epochs (reference: 0.877 in the "
                         "dataset's benchmark)"), f"{r['test_acc'] / r['sklearn_test_acc']:.3f} of it",
                        (f"{r['test_acc']:.4f} in {seconds(r['fit_s'])} vs {r['sklearn_test_acc']:.4f} in "
                         f"{seconds(r['sklearn_fit_s'])}")))
    return rows


SECTIONS = {"throughput": Section(throughput, throughput_rows), "mlp": Section(mlp, mlp_rows)}
