"""Optuna's Hydra sweeper, made to go on with a study kept in a database.

Hydra's Optuna sweeper loads an existing study (`hydra.sweeper.storage=sqlite:///...`), but then runs all
`n_trials` again, numbered from job 0, so a search that was stopped and run again repeats jobs into folders
that hold other trials. This one counts what the study has finished, runs only the rest, and numbers the new
jobs after the study's trials. (Hydra finds sweepers only in the `hydra_plugins` package, hence this file.)
"""

from __future__ import annotations

import logging

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


class ContinuingOptunaSweeper(OptunaSweeper):
    def sweep(self, arguments: list[str]) -> None:
        import optuna  # here, not at the top: Hydra imports every plugin module for --help and config errors
        from optuna.trial import TrialState

        impl = self.sweeper
        if impl.storage:
            try:
                study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
            except KeyError:  # no such study yet: Optuna's sweeper creates it
                study = None
            if study is not None:
                trials = study.get_trials(deepcopy=False)
                for trial in trials:  # left running by a search that was killed
                    if trial.state == TrialState.RUNNING:
                        study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
                finished = sum(trial.state == TrialState.COMPLETE for trial in trials)
                impl.n_trials = max(impl.n_trials - finished, 0)
                impl.job_idx = len(trials)
                if hasattr(impl.sampler, "reseed_rng"):
                    impl.sampler.reseed_rng()  # a seeded sampler would propose the study's first trials again
                log.info("study %s has %d finished trials: %d more, as jobs %d and on", impl.study_name, finished,
                         impl.n_trials, impl.job_idx)
        return super().sweep(arguments)
