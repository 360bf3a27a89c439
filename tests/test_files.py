"""Atomic writes: complete or absent, readable by whoever may read the folder, no leftovers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from experiments.files import atomic_path, remove_stale_temporaries, temporary_name, write_json, write_text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_written_file_has_the_mode_open_would_give_it_under_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "results.json", "{}")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives, for comparison
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode)


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"done": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text('{"do')
        raise RuntimeError("killed while writing")
    assert path.read_text() == '{\n  "done": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_temporaries_of_dead_writers_are_removed_and_those_of_live_ones_kept(tmp_path):
    path = tmp_path / "entry.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=False)
    dead_pid = int(dead.stdout)
    live = temporary_name(path)  # this process's own
    live.write_text("being written")
    crashed = live.with_name(live.name.replace(f".{os.getpid()}.", f".{dead_pid}."))
    crashed.write_text("half")
    other_file = temporary_name(tmp_path / "other.pt").with_name(crashed.name.replace("entry.pt", "other.pt"))
    other_file.write_text("half of another file")
    assert remove_stale_temporaries(path) == [crashed]
    assert live.exists() and other_file.exists() and not crashed.exists()
