"""Hydra-configured experiments on learned representations: train, reduce, cluster, score, track."""

from experiments.errors import UserError

__all__ = ["UserError"]
