"""`python -m experiments.report SWEEP_DIR`: rebuild a sweep's summary.csv, summary.md and plots from its
job folders (their results.json), e.g. after jobs finished on other machines or a sweep was cut short."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.summary import write_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. outputs/multirun/DATE/TIME")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder", file=sys.stderr)
        return 2
    tables = write_summary(args.sweep_dir)
    if not tables:
        print(f"error: no job folder with a results.json below {args.sweep_dir}", file=sys.stderr)
        return 2
    jobs = sum(len(t.rows) for t in tables)
    print(f"{jobs} jobs -> {args.sweep_dir / 'summary.csv'}, {args.sweep_dir / 'summary.md'}, {args.sweep_dir / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
