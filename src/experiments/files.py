"""Atomic file writes: a reader, or a crash, never sees half a file.

A file is written under a temporary name in its folder, flushed to the disk (fsync), then renamed over
the real name. The temporary file is created as `open()` would create the real one (mode 0666 less the
process's umask), so what is written is readable by whoever may read its folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A temporary file whose writer is gone (another host's, or older than this) is left over from a crash.
STALE_AFTER_S = 24 * 3600


def temporary_name(path: Path) -> Path:
    """.<name>.<host>.<pid>.<random>.tmp beside `path`: unique, and it says who is writing it."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a new, empty temporary path beside `path`; it replaces `path`, synced to the disk, only if the
    block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the mode open() gives, under the umask
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files that crashed writers of `path` left beside it; return them.

    A temporary file is stale when its writer, on this host, no longer runs, or when it is older than a day
    (a writer on another host).
    """
    path = Path(path)
    removed = []
    host = socket.gethostname()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 : -len(".tmp")].rsplit(".", 2)
        try:
            age = time.time() - tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        mine = len(parts) == 3 and parts[0] == host and parts[1].isdigit()
        if (mine and not process_alive(int(parts[1]))) or age > STALE_AFTER_S:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, columns: list[str], rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
