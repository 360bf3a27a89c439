"""Learned ISTA (Gregor and LeCun 2010): T unrolled ISTA steps whose matrices and thresholds are trained."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from experiments.derivations import soft_threshold
from experiments.lasso import MatrixOperator, lipschitz_constant


def nmse_db(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """10 log10(sum ||estimate - truth||^2 / sum ||truth||^2) over a batch of columns: the LISTA papers' score."""
    return 10 * float(torch.log10(((estimate - truth) ** 2).sum() / (truth**2).sum()))


class LISTA(pl.LightningModule):
    """z_{t+1} = soft_threshold(W_t b + S_t z_t, theta_t) for t < T, starting from z_0 = 0.

    Initialised as ISTA on the dictionary A (W = A^T / L, S = I - A^T A / L, theta = lam / L), so before
    training T layers give exactly ISTA's T-th iterate; training fits them to `target` codes (the solver's).
    `tied`: one W, S shared by every layer, as in Gregor and LeCun; else one per layer (thresholds are
    always per layer).
    """

    def __init__(self, dictionary: torch.Tensor, layers: int = 16, lam: float = 0.1, lr: float = 1e-4,
                 tied: bool = True) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.save_hyperparameters(ignore=["dictionary"], logger=False)  # the config tree holds them
        A = dictionary.to(torch.float32)
        L = lipschitz_constant(MatrixOperator(A), A.shape[1], A)
        copies = 1 if tied else layers
        self.W = torch.nn.Parameter((A.T / L).expand(copies, -1, -1).clone())
        self.S = torch.nn.Parameter((torch.eye(A.shape[1]) - A.T @ A / L).expand(copies, -1, -1).clone())
        self.theta = torch.nn.Parameter(torch.full((layers,), lam / L))

    def forward(self, b: torch.Tensor, all_layers: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Codes (n, k) for signals b (m, k): after the last layer, or after each layer with `all_layers`."""
        z = torch.zeros(self.S.shape[1], b.shape[1], dtype=b.dtype, device=b.device)
        outputs = []
        for t in range(self.hparams.layers):
            i = 0 if self.hparams.tied else t
            z = soft_threshold(self.W[i] @ b + self.S[i] @ z, self.theta[t])
            outputs.append(z)
        return outputs if all_layers else z

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        signals, targets = batch  # rows are examples; the solver works on columns
        loss = ((self(signals.T) - targets.T) ** 2).sum(0).mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        signals, targets = batch
        codes = self(signals.T)
        self.log("val/loss", ((codes - targets.T) ** 2).sum(0).mean(), prog_bar=True)
        self.log("val/nmse_db", nmse_db(codes, targets.T), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
