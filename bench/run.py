"""`make bench`: each figure as a ratio against a baseline measured in the same run, on this machine.
Literature figures stand beside the ratio as references, never as its baseline.

1. sweep: the nine-job latent_dims sweep on Fashion-MNIST, wall time with the model cache vs cache=false.
2. throughput: autoencoder training, the Lightning module vs a plain PyTorch loop of the same model (on the CPU,
   and on the GPU too where one is visible).
3. tsne: the t-SNE stage, openTSNE vs scikit-learn's TSNE on the same autoencoder codes (time and KL).
4. mlp: the default task=classify on raw pixels against scikit-learn's MLPClassifier trained as long on the same
   images (test accuracy), and manual vs autograd gradients (s/epoch).
5. tsne_exact: reducer=tsne_exact vs openTSNE on 5,000 and 10,000 codes (time, and KL under the exact P).
   tsne_sampled: reducer=tsne_sampled into 8 dimensions on 10,000 codes vs openTSNE into 2 (time) and
   tsne_exact into 8 (KL under the exact P, k-means accuracy).
6. joblib: the latent_dims sweep on hydra/launcher=joblib (n_jobs=2) vs the basic launcher.
7. ista: the Lasso solver's iterations (ISTA vs FISTA) and its batched speed against scikit-learn.
8. deblur: task=deblur on the 256x256 camera: FISTA's iterations to 1e-4 and 1e-6 of F* against ISTA's
   (20,000 more iterations estimate F*), objectives at 100 vs 1000 iterations, seconds per 100 iterations
   (float64 and float32; on the GPU too where one is visible).
10. help: `python -m experiments --help` against `python -c "import hydra"` (wall time).
9. lista: the default task=lista job: code error after 16 layers vs 16 iterations of ISTA and FISTA.
11. umap: reducer=umap (exact neighbours, experiments.umap_exact) vs umap-learn's own UMAP on every image's code
   of N2D's dense autoencoder, each in a fresh process as a job runs it (time; the eval rows' GMM accuracy).
12. make_run: make run's job (+recipe=random_conv_pca, seed 0) vs the same command on the code before its speed-up,
   checked out beside this one with git worktree (the job's seconds; acc and NMI).

Each section lives with its kind (training_speed.py, sweeps.py, embedding.py, solvers.py): what it measures and how
its measurements read as the table's rows. Writes outputs/bench/bench.md (the README's table) and bench.json. `--quick` runs it all on the digits;
`--only mlp,tsne_exact` re-measures some sections and keeps the others from the last bench.json, each with
the machine and date it was measured on. A level never reached prints "not reached", never a number.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import time
from pathlib import Path

import embedding
import solvers
import sweeps
import training_speed
from common import REPO, Context, machine, trained_codes

from experiments.console import LIGHTNING_INFO, quiet_library_warnings
from experiments.data import Digits, FashionMNIST

SECTIONS = {**training_speed.SECTIONS, **embedding.SECTIONS, **sweeps.SECTIONS, **solvers.SECTIONS}
ORDER = ("throughput", "tsne", "mlp", "tsne_exact", "tsne_sampled", "sweep", "ista", "joblib", "deblur", "lista",
         "help", "umap", "make_run")


def table(results: dict) -> str:
    """The README's table. Each section keeps the machine, data and date it was measured on (`--only`
    re-measures some sections and leaves the others as they were)."""
    stamps = {(r["machine"], r["data"], r["date"]) for r in results.values()}
    rows = [(*row, f"{r['machine']}; {r['data']}; {r['date']}")
            for name in ORDER if (r := results.get(name)) for row in SECTIONS[name].rows(r)]
    if len(stamps) == 1:
        machine_, data, date = stamps.pop()
        lines = [f"Machine: {machine_}. Data: {data}. {date}.", "", "| figure | ratio | absolute |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c, _ in rows]
    else:
        lines = ["| figure | ratio | absolute | measured on |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the digits instead of Fashion-MNIST, to check the script")
    parser.add_argument("--only", default=",".join(ORDER), help=f"comma-separated sections of {ORDER}")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    args = parser.parse_args()
    only = set(args.only.split(","))
    if unknown := only - set(ORDER):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {ORDER}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The Trainers built here (throughput, the t-SNE sections' codes) quiet, as the CLI's jobs are: Lightning's
    # device lines and tips (INFO), torch's LeafSpec notice.
    logging.getLogger(LIGHTNING_INFO).setLevel(logging.WARNING)
    quiet_library_warnings()
    data = Digits(eval_fraction=0.3) if args.quick else FashionMNIST()
    data.setup()
    where = "scikit-learn digits (--quick)" if args.quick else "Fashion-MNIST (60k fit, 10k eval), default config"
    previous = out / "bench.json"
    results = json.loads(previous.read_text()) if previous.exists() and only != set(ORDER) else {}
    stamp = {"machine": machine(), "data": where, "date": time.strftime("%Y-%m-%d")}
    print(f"machine: {stamp['machine']}", flush=True)
    size = 1000 if args.quick else 10000
    context = Context(data, out, args.quick, functools.cache(lambda: trained_codes(data, size)))  # both t-SNEs'
    for section in ORDER:
        if section in only:
            results[section] = {**SECTIONS[section].measure(context), **stamp}
            print(f"{section}:", results[section], flush=True)
    previous.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (out / "bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
