"""`cxr <step>`: the command line that dvc.yaml stages (and people) run."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from cxr_model.config import load_config
from cxr_model.errors import CxrError

STEP_NAMES = ("import-data", "ingest", "validate", "profile", "train", "evaluate", "register", "promote")


def setup_logging(verbose: bool = False) -> None:
    """Timestamped progress lines on stderr for the cxr loggers."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr", description="cxr pneumonia pipeline steps")
    parser.add_argument("--params", help="parameters file (default: $CXR_PARAMS or ./params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in STEP_NAMES:
        sub.add_parser(name, help=f"run the {name} step")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        cfg = load_config(args.params)
        from cxr_model import steps

        result = steps.STEPS[args.command](cfg)
    except CxrError as exc:
        print(f"cxr {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
