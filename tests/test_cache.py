import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch
from helpers import QUICK, run_job
from spawned import slow_train_and_count, trained

from experiments.cache import Cache
from experiments.errors import UserError
from experiments.fingerprint import settings_key as cache_key


def test_cache_key_depends_on_every_value_but_not_on_dict_order():
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1, "b": [1, 2]}) != cache_key({"a": 1, "b": [1, 3]})


def test_cache_trains_once_then_returns_the_stored_model(tmp_path):
    cache = Cache(tmp_path)
    calls = []
    _, hit1 = cache.get_or_compute("k", lambda: calls.append(1) or trained(3.0))
    second, hit2 = cache.get_or_compute("k", lambda: calls.append(1) or trained(9.0))
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert torch.equal(second["state_dict"]["w"], torch.full((2,), 3.0))
    assert second["history"] == [{"epoch": 0, "loss": 3.0}]


def test_a_failed_training_leaves_no_cache_entry(tmp_path):
    cache = Cache(tmp_path)

    def fail():
        raise RuntimeError("killed mid-training")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", fail)
    assert not cache.path("k").exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_an_entry_leaves_no_lock_file_and_is_readable_by_the_group(tmp_path):
    import os
    import stat

    old = os.umask(0o002)
    try:
        Cache(tmp_path).get_or_compute("k", lambda: trained(1.0))
    finally:
        os.umask(old)
    assert [p.name for p in tmp_path.iterdir()] == ["k.pt"]
    assert stat.S_IMODE((tmp_path / "k.pt").stat().st_mode) == 0o664


def test_an_unreadable_entry_is_trained_again(tmp_path):
    cache = Cache(tmp_path)
    cache.path("k").write_bytes(b"half a file")
    model, hit = cache.get_or_compute("k", lambda: trained(1.0))
    assert not hit and torch.equal(model["state_dict"]["w"], torch.ones(2))


def test_parallel_jobs_needing_the_same_model_train_it_once(tmp_path):
    counter = tmp_path / "count.txt"
    with mp.get_context("spawn").Pool(3) as pool:
        hits = pool.starmap(slow_train_and_count, [(str(tmp_path / "cache"), str(counter))] * 3)
    assert Path(counter).read_text().count("trained") == 1
    assert sorted(hits) == [False, True, True]


def test_a_cache_folder_that_cannot_be_made_or_written_is_refused_before_training_or_wandb(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"cache_dir=.*a_file/cache: cannot create it \(Not a directory\)"):
        run_job(tmp_path, *QUICK, f"cache_dir={blocker / 'cache'}", "logger=wandb")
    assert not (tmp_path / "run" / "wandb").exists(), "no W&B run was created"
    # a folder of another user's, as it looks to this one (the tests may run as root, who writes anywhere)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match="shared: this user cannot write there; choose another folder, or cache=false"):
        Cache(tmp_path / "shared").create()
