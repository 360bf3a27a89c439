"""The MLP classifier of assignment 2 Q2: d -> d_h (softplus) -> m (softmax), with hand-derived gradients.

`gradients="manual"` runs every layer through a `torch.autograd.Function` whose backward pass is the
assignment's derivation (batched); `gradients="autograd"` lets torch differentiate the same forward pass.
"""

from __future__ import annotations

from itertools import pairwise

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from experiments.derivations import ManualBatchNorm1d, softmax_cross_entropy_grad, softmax_jacobian

ACTIVATIONS = {"softplus": F.softplus, "relu": F.relu, "sigmoid": torch.sigmoid}
ACTIVATION_GRADIENTS = {  # d activation(h) / dh, as functions of the pre-activation h
    "softplus": torch.sigmoid,  # assignment 2 Q1: softplus' = sigmoid
    "relu": lambda h: (h > 0).to(h.dtype),
    "sigmoid": lambda h: torch.sigmoid(h) * (1 - torch.sigmoid(h)),
}
LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam")


def output_gradient(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """dL_i/do_a per sample (rows): softmax - onehot for cross-entropy; J_softmax 2 (s - onehot) for MSE."""
    onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
    if loss == "cross_entropy":
        return softmax_cross_entropy_grad(logits, target) * logits.shape[0]
    residual = 2 * (torch.softmax(logits, -1) - onehot)
    return (softmax_jacobian(logits) @ residual.unsqueeze(-1)).squeeze(-1)


def data_loss(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Batch-mean loss: cross-entropy, or squared error of the softmax against one-hot targets."""
    if loss == "cross_entropy":
        return F.cross_entropy(logits, target)
    onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
    return ((torch.softmax(logits, -1) - onehot) ** 2).sum(-1).mean()


class ManualLinear(torch.autograd.Function):
    """h = x W^T + b; dL/dx = g W, dL/dW = g^T x, dL/db = sum_i g_i."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # untyped: torch.autograd.Function's own signature
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return grad @ weight, grad.T @ x, grad.sum(0)


class ManualActivation(torch.autograd.Function):
    """h_s = act(h_a); dL/dh_a = dL/dh_s * act'(h_a) (softplus' = sigmoid)."""

    @staticmethod
    def forward(ctx, h, name):
        ctx.save_for_backward(h)
        ctx.name = name
        return ACTIVATIONS[name](h)

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        return grad * ACTIVATION_GRADIENTS[ctx.name](h), None


class ManualLoss(torch.autograd.Function):
    """Batch-mean loss of the logits o_a; dL/do_a = output_gradient / N."""

    @staticmethod
    def forward(ctx, logits, target, loss):
        ctx.save_for_backward(logits, target)
        ctx.loss = loss
        return data_loss(logits, target, loss)

    @staticmethod
    def backward(ctx, grad):
        logits, target = ctx.saved_tensors
        return grad * output_gradient(logits, target, ctx.loss) / logits.shape[0], None, None


class ManualL2(torch.autograd.Function):
    """lambda sum ||W||^2 over the weight matrices; d/dW = 2 lambda W."""

    @staticmethod
    def forward(ctx, l2, *weights):
        ctx.save_for_backward(*weights)
        ctx.l2 = l2
        return l2 * sum((w**2).sum() for w in weights)

    @staticmethod
    def backward(ctx, grad):
        return (None, *(grad * 2 * ctx.l2 * w for w in ctx.saved_tensors))


class MLPClassifier(pl.LightningModule):
    """Fully connected layers with an activation, softmax output, cross-entropy or MSE loss, L2 penalty."""

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_dims: tuple[int, ...] = (256,),
        activation: str = "softplus",
        loss: str = "cross_entropy",
        l2: float = 0.0,
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.0,
        gradients: str = "autograd",
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        hidden_dims = tuple(hidden_dims)
        if not hidden_dims or min(hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be a non-empty list of positive sizes, got {list(hidden_dims)}")
        for setting, value, allowed in (
            ("activation", activation, tuple(ACTIVATIONS)),
            ("loss", loss, LOSSES),
            ("optimizer", optimizer, OPTIMIZERS),
            ("gradients", gradients, ("autograd", "manual")),
        ):
            if value not in allowed:
                raise ValueError(f"{setting}={value!r} is not one of {', '.join(allowed)}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.save_hyperparameters(logger=False)  # the config tree already holds them; no flat copies in W&B
        sizes = (n_features, *hidden_dims, n_classes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        norm = ManualBatchNorm1d if gradients == "manual" else nn.BatchNorm1d
        self.norms = nn.ModuleList(norm(h) for h in hidden_dims) if batchnorm else None

    @property
    def manual(self) -> bool:
        return self.hparams.gradients == "manual"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits o_a (the softmax is in the loss and in `predict_proba`)."""
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = ManualLinear.apply(h, layer.weight, layer.bias) if self.manual else layer(h)
            if i == len(self.layers) - 1:
                return h
            if self.norms is not None:
                h = self.norms[i](h)
            name = self.hparams.activation
            h = ManualActivation.apply(h, name) if self.manual else ACTIVATIONS[name](h)
        raise AssertionError("unreachable")

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(x), -1)

    def objective(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(empirical risk + L2 penalty, empirical risk)."""
        loss_name, l2 = self.hparams.loss, self.hparams.l2
        weights = [layer.weight for layer in self.layers]
        if self.manual:
            risk = ManualLoss.apply(logits, target, loss_name)
            penalty = ManualL2.apply(l2, *weights) if l2 else 0.0
        else:
            risk = data_loss(logits, target, loss_name)
            penalty = l2 * sum((w**2).sum() for w in weights) if l2 else 0.0
        return risk + penalty, risk

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        total, risk = self.objective(logits, y)
        with torch.no_grad():
            grad_norm = output_gradient(logits, y, self.hparams.loss).norm(dim=-1).mean()
            acc = (logits.argmax(-1) == y).to(logits.dtype).mean()
        # sync_dist: under DDP the epoch values average every process's shard
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/risk", risk, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/acc", acc, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/output_grad_norm", grad_norm, on_step=False, on_epoch=True, sync_dist=True)
        return total

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", data_loss(logits, y, self.hparams.loss), prog_bar=True, sync_dist=True)
        self.log("val/acc", (logits.argmax(-1) == y).to(logits.dtype).mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.hparams.optimizer == "sgd":  # assignment 2 Q2 k: theta <- theta - eta grad (plain SGD)
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
