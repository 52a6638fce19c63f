"""The ``negationclip`` command: parsing and calling only; the work lives in the library.

One module per stage; each command is an ``_add_<name>(sub)`` that builds its parser and sets
``func`` to a ``_cmd_<name>(args)`` that calls the library.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..utils.errors import NegationClipError
from ..utils.paths import os_error
from ._base import ArgumentParser, UsageError, _Formatter
from .apps import _add_segment, _add_segment_eval, _add_t2i
from .ceiling import _add_ceiling
from .compare import _add_compare
from .demo import _add_demo
from .evaluate import _add_build_negrefcocog, _add_eval
from .explore import _add_explore
from .generate import _add_generate
from .models import _add_convert, _add_encode
from .train import _add_train
from .world import _add_world

_COMMANDS = [_add_demo, _add_compare, _add_convert, _add_encode, _add_world, _add_generate, _add_eval,
             _add_build_negrefcocog, _add_train, _add_t2i, _add_segment, _add_segment_eval,
             _add_explore, _add_ceiling]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="negationclip",
        description="Make CLIP models understand negation: generate negation data (P1, P2), "
                    "fine-tune the text encoder, benchmark, and use it downstream.",
        formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"negationclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NegationClipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a writer that missed its own translation: still no traceback
        print(f"error: {os_error(e.filename or '?', e, 'access')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
