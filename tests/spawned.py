"""Functions that the tests run in processes of their own (multiprocessing's spawn). A spawned process
imports the module of the function it runs: this one imports only what they need (torch and the cache),
not the helpers' Lightning, W&B and Hydra, which cost a spawned process several seconds."""

from __future__ import annotations

import time

import torch

from experiments.cache import Cache


def trained(value: float) -> dict:
    return {"state_dict": {"w": torch.full((2,), value)}, "history": [{"epoch": 0, "loss": value}]}


def slow_train_and_count(root: str, counter: str) -> bool:
    """Train (a 0.5 s sleep) through the cache, writing a line to `counter` if this process trained."""

    def train() -> dict:
        with open(counter, "a") as f:
            f.write("trained\n")
        time.sleep(0.5)
        return trained(1.0)

    return Cache(root).get_or_compute("shared", train)[1]
