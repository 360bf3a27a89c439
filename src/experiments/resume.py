"""What makes an interrupted sweep safe to run again: a sweep folder named by what shapes its jobs,
finished jobs skipped only when their settings and code match, one W&B run id per job folder.

Imports nothing heavy: `python -m experiments` uses `sweep_name` to name the folder before any job runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from experiments.errors import UserError
from experiments.fingerprint import settings_key

log = logging.getLogger(__name__)

# Settings of the groups a job reads that change how it shows things, not what it computes.
NOT_IN_RESULTS_KEY_OF = {
    "trainer": {"enable_progress_bar", "enable_model_summary", "log_every_n_steps"},
    "task": {"score"},  # which score a sweeper optimises: every score is in results.json whatever it is
    "data": {"class_names"},  # what the plots and tables call the classes
}
# Hydra settings that decide where and how a sweep's jobs run, not what they compute.
WHERE_NOT_WHAT = ("hydra.launcher", "hydra/launcher", "hydra.sweep.dir", "hydra.run", "hydra.job_logging",
                  "hydra/job_logging", "hydra.hydra_logging", "hydra/hydra_logging", "hydra.verbose", "hydra.output_subdir",
                  "hydra.mode")
# Command-line flags whose value names the config (and so shapes every job), with their long names.
CONFIG_FLAGS = {"--config-name": "--config-name", "-cn": "--config-name", "--config-path": "--config-path",
                "-cp": "--config-path", "--config-dir": "--config-dir", "-cd": "--config-dir"}


def sweep_name(argv: list[str] | None = None) -> str:
    """A folder name for a multirun, from its command line: the same command finds the same folder, and
    two commands whose jobs differ never share one.

    Everything that shapes the jobs counts: overrides, sweeper parameters (`hydra.sweeper.params.x=...`)
    and the config's name and path. What only decides where the jobs run (launcher, sweep folder, logging)
    and `resume` are left out, so the same sweep on another launcher, or with resume=false, finds the
    same folder.
    """
    args = sys.argv[1:] if argv is None else argv
    kept: list[str] = []
    for i, arg in enumerate(args):
        flag = arg.split("=", 1)[0]
        if flag in CONFIG_FLAGS:
            value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            kept.append(f"{CONFIG_FLAGS[flag]}={value}")
        elif arg.startswith("-") or (i > 0 and args[i - 1] in CONFIG_FLAGS):
            continue
        elif not arg.lstrip("+~").startswith(WHERE_NOT_WHAT) and not arg.lstrip("+~").startswith("resume="):
            kept.append(arg)
    readable = ",".join(a.lstrip("-") for a in kept).replace("/", "_") or "default"
    readable = "".join(c if c.isalnum() or c in "=,._+-" else "_" for c in readable)[:80]
    return f"{readable}-{hashlib.sha1(' '.join(kept).encode()).hexdigest()[:8]}"


def results_key(settings: dict[str, Any], data_digest: str) -> str:
    """The hash of what shapes a job's results: the settings its kind reads (`JobKind.settings`: never the logger,
    the launcher or the plots) less how training is shown, and the content of its data files."""
    kept = {}
    for key, value in settings.items():
        if key in NOT_IN_RESULTS_KEY_OF and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in NOT_IN_RESULTS_KEY_OF[key]}
        kept[key] = value
    return settings_key({"config": kept, "data_files": data_digest})


def finished_results(job_dir: Path, config_hash: str, code: str, folder: str = "hydra.sweep.dir"
                     ) -> dict[str, Any] | None:
    """The job folder's results.json if the job already finished with this config and this code; else None.

    Results of another config in the same folder are an error, naming the setting that chooses the folder
    (`folder`): resuming over them would mix two sweeps.
    Results of other code are recomputed (said in the log). An unreadable results.json (a crash while it
    was written, on a filesystem that lost it) counts as unfinished.
    """
    path = job_dir / "results.json"
    if not path.exists():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("resume: %s is unreadable (%s); running the job again", path, e)
        return None
    if not isinstance(results, dict) or "config_hash" not in results:
        log.warning("resume: %s is not a finished job's results; running the job again", path)
        return None
    if results["config_hash"] != config_hash:
        raise UserError(
            f"resume: {job_dir} holds the results of a different config; choose another {folder} "
            "(or resume=false to overwrite it)"
        )
    if results.get("code_version") != code:
        log.info("resume: %s was made by code %s, the code is now %s; running the job again", path,
                 results.get("code_version"), code)
        return None
    return results


def stable_run_id(job_dir: Path) -> str:
    """The job folder's W&B run id: a job run again resumes its W&B run instead of starting a duplicate."""
    return hashlib.sha1(str(job_dir.resolve()).encode()).hexdigest()[:16]
