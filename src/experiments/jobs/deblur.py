"""task=deblur: assignment 3 s9's deblurring by ISTA and FISTA, on Beck and Teboulle's (2009) setup.

The blurred image is b = K u + noise, with K a Gaussian blur with reflexive (mirror) boundaries applied
as a convolution. The image is written in an orthonormal basis, u = W x, and the solver minimises
1/2 ||b - K W x||^2 + lam ||x||_1 over the coefficients x. Channels are solved at once, as columns.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from experiments import lasso, plots
from experiments.accelerators import device_for
from experiments.data import ImageDataModule
from experiments.errors import UserError, check_types, in_setting
from experiments.files import write_csv
from experiments.jobs import MAX, JobKind
from experiments.training import Job

log = logging.getLogger(__name__)


def gaussian_kernel(kernel_size: int, sigma: float) -> torch.Tensor:
    """The 1-D factor g of a normalised kernel_size x kernel_size Gaussian outer(g, g) (MATLAB's
    fspecial('gaussian', kernel_size, sigma))."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and at least 1 (a centred kernel), got {kernel_size}")
    offsets = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    return g / g.sum()


def mirror_indices(n: int, pad: int) -> torch.Tensor:
    """Indices of a length-n axis padded by `pad` mirrored samples each side, edge sample repeated."""
    inside = torch.arange(n)
    return torch.cat([inside[:pad].flip(0), inside, inside[n - pad :].flip(0)])


class Blur:
    """Convolution with the separable kernel outer(g, g) under reflexive boundaries, on images held as
    columns (H*W, k).

    Two 1-D passes give exactly the 2-D convolution at 2/size of its cost (a 9x9 float64 conv2d takes
    20 times longer on a CPU).
    """

    def __init__(self, g: torch.Tensor, height: int, width: int) -> None:
        size = len(g)
        if size % 2 == 0 or size < 1:
            raise ValueError(f"kernel_size must be odd (a centred kernel), got {size}")
        if size > min(height, width):
            raise ValueError(f"kernel_size={size} is larger than the {height}x{width} image; use a smaller kernel or a "
                             "larger image")
        self.pad = size // 2
        self.down, self.across = g.view(1, 1, size, 1), g.view(1, 1, 1, size)
        self.shape = (height, width)
        self.rows = mirror_indices(height, self.pad).to(g.device)
        self.cols = mirror_indices(width, self.pad).to(g.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        images = x.T.reshape(-1, 1, *self.shape)
        padded = images[:, :, self.rows][:, :, :, self.cols]
        return F.conv2d(F.conv2d(padded, self.down), self.across).reshape(x.shape[1], -1).T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        # A "valid" correlation's adjoint is the "full" correlation with the flipped kernel; summing the
        # mirrored border back onto the pixels it copied is the padding's.
        images = F.pad(y.T.reshape(-1, 1, *self.shape), (2 * self.pad,) * 4)
        padded = F.conv2d(F.conv2d(images, self.down.flip(2)), self.across.flip(3))
        folded = torch.zeros(*padded.shape[:3], self.shape[1], dtype=y.dtype, device=y.device)
        folded.index_add_(3, self.cols, padded)
        out = torch.zeros(*padded.shape[:2], *self.shape, dtype=y.dtype, device=y.device)
        out.index_add_(2, self.rows, folded)
        return out.reshape(y.shape[1], -1).T


class HaarBasis:
    """An orthonormal `levels`-level 2-D Haar transform (ptwt): synthesis W and analysis W^T = W^-1."""

    def __init__(self, height: int, width: int, levels: int = 3) -> None:
        if levels < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        if height % 2**levels or width % 2**levels:
            raise ValueError(f"levels={levels}: a Haar basis of {levels} levels needs height and width divisible by "
                             f"{2**levels}, got {height}x{width}; resize the image or use the identity basis")
        self.shape, self.levels = (height, width), levels

    def analysis(self, u: torch.Tensor) -> torch.Tensor:
        """Images as columns (H*W, k) -> coefficients as columns (H*W, k)."""
        import ptwt

        approx, *details = ptwt.wavedec2(u.T.reshape(-1, *self.shape), "haar", level=self.levels, mode="zero")
        parts = [approx.flatten(1)] + [band.flatten(1) for level in details for band in level]
        return torch.cat(parts, 1).T

    def synthesis(self, x: torch.Tensor) -> torch.Tensor:
        import ptwt
        from ptwt.constants import WaveletDetailTuple2d

        k, (h, w) = x.shape[1], self.shape
        rows = x.T
        h, w = h >> self.levels, w >> self.levels
        approx, offset = rows[:, : h * w].reshape(k, h, w), h * w
        details = []
        for _ in range(self.levels):
            bands = [rows[:, offset + i * h * w : offset + (i + 1) * h * w].reshape(k, h, w) for i in range(3)]
            details.append(WaveletDetailTuple2d(*bands))
            offset += 3 * h * w
            h, w = 2 * h, 2 * w
        return ptwt.waverec2((approx, *details), "haar").reshape(k, -1).T


class IdentityBasis:
    """The pixels themselves: the l1 penalty on the image."""

    def analysis(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def synthesis(self, x: torch.Tensor) -> torch.Tensor:
        return x


class BlurInBasis:
    """A = K W: coefficients -> blurred image, the operator the solver sees."""

    def __init__(self, blur: Blur, basis: HaarBasis | IdentityBasis) -> None:
        self.blur, self.basis = blur, basis

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(self.basis.synthesis(x))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.basis.analysis(self.blur.adjoint(y))


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB, for images in [0, 1]."""
    mse = float(((image - reference) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def load_image(task: DictConfig, data_image: np.ndarray | None) -> np.ndarray:
    """The sharp image (C, H, W) in [0, 1]: scikit-image's bundled one, or one from the data group."""
    if task.image == "data":
        if data_image is None:
            raise UserError("task.image=data: the data group has no image to deblur")
        image = data_image
    else:
        import skimage.data

        if task.image not in skimage.data.__all__ or task.image in ("download_all", "lbp_frontal_face"):
            raise UserError(f"task.image={task.image!r} is not an image of skimage.data (e.g. camera) nor 'data'")
        image = getattr(skimage.data, task.image)()
        image = (image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64))
        image = image[None] if image.ndim == 2 else np.moveaxis(image[..., :3], -1, 0)
    if task.size is not None:
        from skimage.transform import resize

        # Without anti-aliasing: at a factor of 2 this is the 2x2 block mean, which the reference figures used.
        image = resize(image, (image.shape[0], task.size, task.size), anti_aliasing=False)
    return np.clip(np.asarray(image, dtype=np.float64), 0, 1)


def make_basis(name: str, height: int, width: int, levels: int) -> HaarBasis | IdentityBasis:
    return HaarBasis(height, width, levels) if name == "haar" else IdentityBasis()


BASES = ("haar", "identity")
DTYPES = ("float64", "float32")


@dataclass
class Plan:
    """The problem, built and checked: the sharp image as columns and the operator A = K W."""

    sharp: torch.Tensor  # (H*W, C)
    shape: tuple[int, int, int]  # (C, H, W)
    blur: Blur
    operator: BlurInBasis


def check(cfg: DictConfig, data: ImageDataModule | None) -> Plan:
    """Every task setting, the image and the operators built for its size, before any solving or logging."""
    task = cfg.task
    check_types(task, "task", whole=("ista_iterations", "fista_iterations", "reference_iterations", "kernel_size",
                                     "levels", "index", "size"), real=("lam", "sigma", "noise", "tol"))
    if task.lam < 0:
        raise UserError(f"task.lam must be >= 0, got {task.lam}")
    if task.sigma <= 0 or task.noise < 0:
        raise UserError(f"task.sigma must be > 0 and task.noise >= 0, got {task.sigma}, {task.noise}")
    if min(task.ista_iterations, task.fista_iterations) < 1 or task.reference_iterations < 0:
        raise UserError("task.ista_iterations and task.fista_iterations must be at least 1, "
                        "task.reference_iterations at least 0")
    if task.dtype not in DTYPES:
        raise UserError(f"task.dtype={task.dtype!r} is not one of {', '.join(DTYPES)}")
    if task.basis not in BASES:
        raise UserError(f"task.basis={task.basis!r} is not one of {', '.join(BASES)}")
    if task.tol < 0:
        raise UserError(f"task.tol must be >= 0 (0: run all iterations), got {task.tol}")
    if task.size is not None and task.size < 1:
        raise UserError(f"task.size must be at least 1 (or null: the image's own size), got {task.size}")
    device, dtype = device_for(cfg.trainer.accelerator), getattr(torch, task.dtype)
    image = torch.from_numpy(load_image(task, data_image(task, data))).to(device, dtype)
    channels, height, width = image.shape
    try:
        blur = Blur(gaussian_kernel(task.kernel_size, task.sigma).to(device, dtype), height, width)
        operator = BlurInBasis(blur, make_basis(task.basis, height, width, task.levels))
    except ValueError as e:  # the operators name their parameter; the task's settings have the same names
        raise in_setting("task", e, task) from None
    return Plan(image.reshape(channels, -1).T, (channels, height, width), blur, operator)


def data_image(task: DictConfig, data: ImageDataModule | None) -> np.ndarray | None:
    """The data group's fit image `task.index` when task.image=data."""
    if data is None:
        return None
    if not 0 <= task.index < len(data.fit_images):
        raise UserError(f"task.index={task.index} is not one of the data's {len(data.fit_images)} fit images")
    return data.fit_images[task.index].double().numpy()


def run(job: Job, plan: Plan) -> dict[str, Any]:
    """Blur and noise the image, then solve by ISTA and by FISTA; curves, panels and scores."""
    cfg, task, timer, tracker = job.cfg, job.cfg.task, job.timer, job.tracker
    sharp, operator, blur = plan.sharp, plan.operator, plan.blur
    channels, height, width = plan.shape
    with timer("problem"):
        generator = torch.Generator().manual_seed(cfg.seed)
        noise = torch.randn(sharp.shape, generator=generator, dtype=torch.float64).to(sharp.device, sharp.dtype)
        blurred = blur(sharp) + task.noise * noise
    log.info("deblurring a %dx%dx%d image: kernel %d sigma %g, noise %g, lam %g, basis %s, on %s",
             channels, height, width, task.kernel_size, task.sigma, task.noise, task.lam, task.basis, sharp.device)

    curves: dict[str, list[float]] = {}
    restored: dict[str, torch.Tensor] = {}
    results: dict[str, Any] = {"psnr_blurred": psnr(blurred.clamp(0, 1), sharp)}
    for method, iterations in (("ista", task.ista_iterations), ("fista", task.fista_iterations)):
        with timer(method):
            result, psnrs = solve_with_psnr(operator, blurred, sharp, task.lam, method, iterations, task.tol)
        restored[method] = operator.basis.synthesis(result.x).clamp(0, 1)
        curves[f"objective_{method}"], curves[f"psnr_{method}"] = result.objective.tolist(), psnrs
        results |= {f"psnr_{method}": psnrs[-1], f"iterations_{method}": result.n_iter,
                    f"converged_{method}": result.converged, f"gap_{method}": result.gap}
        results[f"seconds_per_100_iterations_{method}"] = round(100 * timer.seconds[method] / result.n_iter, 4)
    results |= objective_checkpoints(curves)
    if task.reference_iterations > 0:
        with timer("reference"):
            reference = lasso.solve(operator, blurred, task.lam, method="fista", max_iter=task.reference_iterations,
                                   tol=0, x0=result.x,  # `result` is FISTA's: go on from where it stopped
                                   progress="FISTA for F*")
        results |= suboptimality_iterations(curves, float(reference.objective.min()))
    results |= {"task": "deblur", "image": task.image, "shape": [channels, height, width], "lam": task.lam,
                "basis": task.basis, "seed": cfg.seed, "device": str(sharp.device),
                "devices": {"solve": str(sharp.device)}}  # where the stages ran (as every kind records)

    with timer("plots"):
        log_curves(job, curves, results.get("objective_reference"))
        panels = {"original": sharp, "blurred": blurred.clamp(0, 1), "ista": restored["ista"], "fista": restored["fista"]}
        as_images = {name: columns.T.reshape(channels, height, width).cpu().numpy() for name, columns in panels.items()}
        captions = ["original", f"blurred {results['psnr_blurred']:.2f} dB",
                    f"ISTA {results['psnr_ista']:.2f} dB", f"FISTA {results['psnr_fista']:.2f} dB"]
        tracker.log_figure("deblurring", plots.image_row_figure, list(as_images.values()), captions)
        tracker.log_images("deblurring_panel", [plots.to_displayable(i) for i in as_images.values()], captions)
        np.save(job.dir / "restored_fista.npy", as_images["fista"].astype(np.float32))
    return results


def solve_with_psnr(
    operator: BlurInBasis, blurred: torch.Tensor, sharp: torch.Tensor, lam: float, method: str, iterations: int,
    tol: float,
) -> tuple[lasso.LassoResult, list[float]]:
    """Solve from the blurred image's coefficients, recording the restored image's PSNR at every iteration."""
    psnrs: list[float] = []

    def record(iteration: int, x: torch.Tensor) -> None:
        psnrs.append(psnr(operator.basis.synthesis(x).clamp(0, 1), sharp))

    result = lasso.solve(operator, blurred, lam, method=method, max_iter=iterations, tol=tol,
                        x0=operator.basis.analysis(blurred), callback=record, progress=method.upper())
    return result, psnrs


def objective_checkpoints(curves: dict[str, list[float]]) -> dict[str, float | None]:
    """The assignment's comparison: FISTA's objective after 100 iterations against ISTA's after 1000."""
    ista_curve, fista_curve = curves["objective_ista"], curves["objective_fista"]
    return {"objective_ista_at_1000": ista_curve[999] if len(ista_curve) >= 1000 else None,
            "objective_fista_at_100": fista_curve[99] if len(fista_curve) >= 100 else None}


def suboptimality_iterations(curves: dict[str, list[float]], reference: float) -> dict[str, Any]:
    """The first ISTA and FISTA iterations within 1e-4 and 1e-6 (relative) of F*, estimated by a longer run's
    objective; None for a level a method did not reach in its iterations."""
    optimum = min(min(curves["objective_ista"]), min(curves["objective_fista"]), reference)
    out: dict[str, Any] = {"objective_reference": optimum}
    for method in ("ista", "fista"):
        relative = (np.asarray(curves[f"objective_{method}"]) - optimum) / abs(optimum)
        for tol, name in ((1e-4, "1e-4"), (1e-6, "1e-6")):
            out[f"{method}_iterations_to_{name}"] = lasso.first_iteration_within(relative.tolist(), tol)
    return out


def log_curves(job: Job, curves: dict[str, list[float]], optimum: float | None) -> None:
    """Objective and PSNR against iteration: curves.csv, a figure, and W&B metrics by iteration."""
    n = max(len(c) for c in curves.values())
    names = list(curves)
    rows = [[i + 1] + [c[i] if i < len(c) else None for c in curves.values()] for i in range(n)]
    write_csv(job.dir / "curves.csv", ["iteration", *names], rows)
    job.tracker.log_figure("deblurring_curves", plots.solver_curves_figure, curves, optimum)
    job.tracker.log_series("solver", "iteration", [dict(zip(["iteration", *names], row)) for row in rows])


KIND = JobKind(
    name="deblur",
    tagged_by=("task",),
    scores={"psnr_fista": MAX, "psnr_ista": MAX},
    columns=[
        ("PSNR FISTA", "psnr_fista"),
        ("PSNR ISTA", "psnr_ista"),
        ("PSNR blurred", "psnr_blurred"),
        ("lam", "lam"),
        ("basis", "basis"),
        ("image", "image"),
        ("objective_fista_at_100", "objective_fista_at_100"),
        ("objective_ista_at_1000", "objective_ista_at_1000"),
    ],
    labelled_by=("lam", "basis"),
    reads=("task", "trainer.accelerator"),
    needs_data=lambda cfg: cfg.task.image == "data",
    check=check,
    run=run,
    shown=("psnr_ista", "psnr_blurred"),
)
