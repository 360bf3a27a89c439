"""`python -m experiments [overrides] [-m]`: one job, or a sweep of them, configured by conf/."""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from experiments import console, jobs
from experiments.errors import UserError, one_line
from experiments.hydra_compat import share_config_store
from experiments.resume import sweep_name

# conf/hydra/default.yaml names a multirun's folder by its command line, so the same command resumes it.
OmegaConf.register_new_resolver("sweep_name", sweep_name, use_cache=True, replace=True)
# conf/sweep/search.yaml: Optuna maximises or minimises as the job kind declares its score.
OmegaConf.register_new_resolver("score_direction", jobs.direction, replace=True)
# conf/hydra/default.yaml: --help lists the recipes, sweeps and job kinds, one line each from their files.
CONF = Path(__file__).resolve().parents[2] / "conf"
OmegaConf.register_new_resolver("catalog", partial(console.catalog, CONF), replace=True)
console.quiet_library_warnings()
share_config_store()  # --help 3x faster: Hydra no longer copies every plugin's configs per config group


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from experiments import pipeline  # imported here so `--help` and config errors stay fast

    try:
        return pipeline.run(cfg)
    except (UserError, InstantiationException) as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {one_line(e, name_target=True)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
