"""What the console shows: library noise silenced at its source, nothing else hidden.

- Lightning's advertising tips ("💡 Tip: ... litlogger"): `DropTips`, a logging filter on Lightning's
  rank_zero logger (conf/hydra/default.yaml attaches it).
- torch's FutureWarning about `LeafSpec`, raised inside Lightning's pytree helper on every fit, and Lightning's
  "The `srun` command is available on your system but is not used" on any machine with SLURM's tools: targeted
  warnings filters (`quiet_library_warnings`, called by the entry point).
- openTSNE's INFO lines: its logger at WARNING (conf/hydra/default.yaml).
- W&B's banner and hints: the run is started with `silent=True` (tracking.py), and the job logs where the
  run is and how to look at it or upload it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LIGHTNING_INFO = "pytorch_lightning.utilities.rank_zero"


class DropTips(logging.Filter):
    """Drop log records that advertise other products (Lightning's "💡 Tip: ..." lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def quiet_library_warnings() -> None:
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
    # Lightning's hint on any machine with SLURM's client tools (a login node, the local cluster's host): a job run
    # here without srun is run here on purpose; a sweep reaches SLURM through hydra/launcher=slurm_cpu or slurm_gpu,
    # whose jobs srun starts (and where Lightning's SLURM environment takes the ranks from SLURM)
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used",
                            category=UserWarning)


@contextmanager
def quiet(logger_name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise a logger's level for a block (a Trainer built only to check its settings says nothing)."""
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


PROGRESS_DELAY_S = 2.0  # a bar shows once the work has taken this long: short runs stay quiet
PROGRESS_REFRESH_S = 0.1  # and is redrawn, with its postfix (set with refresh=False: a refresh would draw
#                           the bar before the delay), at most this often


def progress_bar(total: int, description: str, enabled: bool = True) -> Any:
    """A tqdm bar for long work (t-SNE, FISTA)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=not enabled, delay=PROGRESS_DELAY_S,
                mininterval=PROGRESS_REFRESH_S, leave=False, dynamic_ncols=True)


def catalog(conf_dir: Path, group: str) -> str:
    """The options of a config group, one line each: its name and the first line of its file's comment (below a
    `# @package` line). `--help`'s first screen lists the recipes, sweeps and job kinds with it."""
    rows = []
    for path in sorted((conf_dir / group).glob("*.yaml")):
        comments = [line[2:].strip() for line in path.read_text().splitlines()
                    if line.startswith("# ") and not line.startswith("# @package")]
        rows.append(f"  {path.stem:<18} {comments[0] if comments else ''}".rstrip())
    return "\n".join(rows)
