"""Sparse coding as an encoder (assignment 3 s1b): images x ~ D z with sparse codes z, D learned from the data."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from experiments import lasso


class SparseCoding(pl.LightningModule):
    """A dictionary D of `latent_dim` unit-norm atoms, learned by alternating two steps per batch:
    the codes, argmin_z 1/2 ||x - D z||^2 + lam ||z||_1 by FISTA (`lasso.lasso_gram`: the batch's images at once, each
    warm-started from its code of the previous epoch), then a gradient step on D for those codes.

    The encoder is the solver, run to `encode_tol`; the decoder is D itself.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int = 64,
        lam: float = 0.1,
        lr: float = 1e-2,
        fit_iterations: int = 30,
        encode_iterations: int = 1000,
        encode_tol: float = 1e-3,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        for parameter, iterations in (("fit_iterations", fit_iterations), ("encode_iterations", encode_iterations)):
            if iterations < 1:
                raise ValueError(f"{parameter} must be at least 1, got {iterations}")
        self.save_hyperparameters(logger=False)  # the config tree already holds them; no flat copies in W&B
        self.image_shape = tuple(image_shape)
        atoms = torch.randn(int(torch.tensor(image_shape).prod()), latent_dim)
        self.dictionary = torch.nn.Parameter(atoms / atoms.norm(dim=0))
        self.warm_codes: torch.Tensor | None = None  # (latent_dim, n_fit): each fit image's last code
        self.encoded: list[tuple[bool, float]] = []  # per encoded batch: did FISTA converge, its final gap

    def sparse_codes(self, images: torch.Tensor, x0: torch.Tensor | None, iterations: int, tol: float) -> lasso.LassoResult:
        """FISTA's codes (latent_dim, k) for the images' columns (pixels, k), D held fixed (batched, in Gram
        form: one latent_dim x latent_dim product per iteration whatever the image size)."""
        # In float32 even under mixed precision (accelerator=gpu): the duality gap needs the digits.
        with torch.autocast(self.device.type, enabled=False):
            return lasso.lasso_gram(self.dictionary.detach().float(), images.flatten(1).T.float(), self.hparams.lam,
                                   max_iter=iterations, tol=tol, x0=x0)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        result = self.sparse_codes(images, None, self.hparams.encode_iterations, self.hparams.encode_tol)
        self.encoded.append((result.converged, result.gap))
        return result.x.T

    def solver_report(self) -> dict[str, bool | float | None]:
        """Whether FISTA reached `encode_tol` for every batch encoded so far, and the largest final gap."""
        converged = all(done for done, _ in self.encoded)
        return {"codes_converged": converged,
                "codes_max_gap": max(gap for _, gap in self.encoded) if converged and self.encoded else None}

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """D z, as images."""
        return (codes @ self.dictionary.T).reshape(-1, *self.image_shape)

    def atoms(self) -> torch.Tensor:
        """The dictionary's atoms as images (latent_dim, C, H, W)."""
        return self.dictionary.detach().T.reshape(-1, *self.image_shape)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images, index = batch  # each image's index: its warm start
        warm = self.warm_start(index)
        codes = self.sparse_codes(images, warm[:, index], self.hparams.fit_iterations, tol=0).x
        warm[:, index] = codes
        return self.step_losses(images, codes, "train")

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        images = batch[0]
        self.step_losses(images, self.sparse_codes(images, None, self.hparams.fit_iterations, tol=0).x, "val")

    def step_losses(self, images: torch.Tensor, codes: torch.Tensor, stage: str) -> torch.Tensor:
        """The loss 1/2 ||x - D z||^2 per image; logs the pixels' MSE and the codes' fraction of zeros."""
        residual = images.flatten(1).T - self.dictionary @ codes
        loss = 0.5 * (residual * residual).sum(0).mean()
        per_epoch = {"on_step": False, "on_epoch": True, "sync_dist": True}
        self.log(f"{stage}/recon_mse", (residual * residual).mean(), prog_bar=True, **per_epoch)
        self.log(f"{stage}/sparsity", (codes == 0).float().mean(), prog_bar=True, **per_epoch)
        self.log(f"{stage}/loss", loss, **per_epoch)
        return loss

    def warm_start(self, index: torch.Tensor) -> torch.Tensor:
        """The code store, grown to hold image `index.max()`; new images start from zero codes."""
        needed = int(index.max()) + 1
        if self.warm_codes is not None and self.warm_codes.device != self.device:  # restored from a checkpoint
            self.warm_codes = self.warm_codes.to(self.device)
        if self.warm_codes is None or self.warm_codes.shape[1] < needed:
            grown = torch.zeros(self.hparams.latent_dim, needed, device=self.device, dtype=self.dictionary.dtype)
            if self.warm_codes is not None:
                grown[:, : self.warm_codes.shape[1]] = self.warm_codes
            self.warm_codes = grown
        return self.warm_codes

    # The warm starts are training state, not model: they travel in checkpoints (a resumed training goes on
    # from each image's last code, as the uninterrupted one does) but not in the cached model.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["warm_codes"] = self.warm_codes

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.warm_codes = checkpoint.get("warm_codes")

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        # Projected gradient: atoms back on the unit sphere, else the l1 penalty shrinks codes by growing atoms.
        with torch.no_grad():
            self.dictionary /= self.dictionary.norm(dim=0).clamp_min(1e-12)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
