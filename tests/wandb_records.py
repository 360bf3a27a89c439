"""Read what a W&B run logged from its `.wandb` file (offline runs do not reliably write a summary file).

The file is W&B's LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version), then 32 KiB
blocks of chunks, each with a 7-byte header (crc32, length, type: full/first/middle/last) and a piece of
a serialised `wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a W&B record file"
    records, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        room = BLOCK - offset % BLOCK
        if room < HEADER:  # the rest of a block too small for a header is padding
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        chunk = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind == 0 and length == 0:
            offset += BLOCK - offset % BLOCK if offset % BLOCK else 0
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def run_file(run_dir: str | Path) -> Path:
    (path,) = Path(run_dir).glob("run-*.wandb")
    return path


def summary(run_dir: str | Path) -> dict[str, Any]:
    """The last value of each key logged (history) or set (summary); nested keys joined by "/"."""
    values: dict[str, Any] = {}
    for record in read_records(run_file(run_dir)):
        items = record.history.item if record.HasField("history") else record.summary.update
        for item in items:
            key = item.key or "/".join(item.nested_key)
            values[key] = json.loads(item.value_json)
    return values


def history_keys(run_dir: str | Path) -> set[str]:
    keys: set[str] = set()
    for record in read_records(run_file(run_dir)):
        if record.HasField("history"):
            keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return keys


def config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config: what wandb.init got (in the run record) and later updates."""
    values: dict[str, Any] = {}
    for record in read_records(run_file(run_dir)):
        updates = record.run.config.update if record.HasField("run") else record.config.update
        for item in updates:
                values[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return values


def run_info(run_dir: str | Path) -> wandb_internal_pb2.RunRecord:
    runs = [r.run for r in read_records(run_file(run_dir)) if r.HasField("run")]
    return runs[-1]


def exit_code(run_dir: str | Path) -> int | None:
    exits = [r.exit.exit_code for r in read_records(run_file(run_dir)) if r.HasField("exit")]
    return exits[-1] if exits else None
