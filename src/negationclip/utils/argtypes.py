"""argparse types for every numeric option and device of every command.

Each wraps a rule of ``utils.checks`` so the CLI and the Python API refuse the same values:
``--batch-size 0`` or ``--limit -1`` stop at parsing with ``error: argument --limit: ...``,
exit 2, before any model is loaded (a negative limit used to drop items silently).
"""

from __future__ import annotations

import argparse

from . import checks
from .errors import NegationClipError


def _wrap(rule, what: str):
    def parse(text: str):
        try:
            return rule(text, what)
        except NegationClipError as e:
            msg = str(e).split(": ", 1)[-1]
            raise argparse.ArgumentTypeError(f"{msg}") from None
    parse.__name__ = what  # argparse names the type in "invalid <name> value" messages
    return parse


positive_int = _wrap(checks.positive_int, "positive integer")
nonneg_int = _wrap(checks.nonneg_int, "integer >= 0")
positive_float = _wrap(checks.positive_float, "number > 0")
nonneg_float = _wrap(checks.nonneg_float, "number >= 0")
probability = _wrap(checks.probability, "number in [0, 1]")
device = _wrap(checks.check_device, "device")
