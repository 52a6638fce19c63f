"""Value checks shared by the CLI's argparse types and the Python API.

One rule per kind of value (a count, a size, a probability, a device), so ``--batch-size 0``,
``encode_text(..., batch_size=-5)`` and ``--limit -1`` all fail the same clear way instead of
silently doing something else (a negative slice end drops items; a negative batch size loops
zero times and returns uninitialised memory).
"""

from __future__ import annotations

import math

from .errors import NegationClipError


def _int(value, name: str) -> int:
    if isinstance(value, bool):
        raise NegationClipError(f"{name}: expected an integer, got {value!r}")
    if not isinstance(value, int):
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise NegationClipError(f"{name}: expected an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise NegationClipError(f"{name}: expected an integer, got {value!r}")
        return int(f)
    return value


def positive_int(value, name: str = "value") -> int:
    """An integer >= 1 (batch sizes, steps, counts that must not be empty)."""
    v = _int(value, name)
    if v < 1:
        raise NegationClipError(f"{name}: must be a positive integer (>= 1), got {value!r}")
    return v


def nonneg_int(value, name: str = "value") -> int:
    """An integer >= 0 (seeds, warm-up steps, retries)."""
    v = _int(value, name)
    if v < 0:
        raise NegationClipError(f"{name}: must be an integer >= 0, got {value!r}")
    return v


def optional_positive_int(value, name: str = "value") -> int | None:
    """None (no limit) or an integer >= 1 (``limit``: 0 or a negative is never what is meant)."""
    return None if value is None else positive_int(value, name)


def _float(value, name: str) -> float:
    if isinstance(value, bool):
        raise NegationClipError(f"{name}: expected a number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise NegationClipError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(f):
        raise NegationClipError(f"{name}: must be a finite number, got {value!r}")
    return f


def positive_float(value, name: str = "value") -> float:
    f = _float(value, name)
    if f <= 0:
        raise NegationClipError(f"{name}: must be > 0, got {value!r}")
    return f


def nonneg_float(value, name: str = "value") -> float:
    f = _float(value, name)
    if f < 0:
        raise NegationClipError(f"{name}: must be >= 0, got {value!r}")
    return f


def probability(value, name: str = "value") -> float:
    """A number in [0, 1] (fractions, thresholds, top-p)."""
    f = _float(value, name)
    if not 0.0 <= f <= 1.0:
        raise NegationClipError(f"{name}: must be between 0 and 1, got {value!r}")
    return f


def check_device(spec, name: str = "device") -> str:
    """A torch device this build and machine have: ``cpu``, ``cuda``, ``cuda:N`` (N below the
    GPU count), ``mps``, or ``auto``; anything else fails before a model is loaded."""
    text = str(spec).strip()
    if text in ("auto", "cpu"):
        return text
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise NegationClipError(f"{name}: {text!r} is not a torch device (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise NegationClipError(f"{name}: {text!r} asked, but this torch build/machine has no "
                                    f"CUDA device (use --device cpu)")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise NegationClipError(f"{name}: {text!r} asked, but there {'is' if n == 1 else 'are'} "
                                    f"only {n} CUDA device{'s' if n != 1 else ''} (cuda:0"
                                    + (f"..cuda:{n - 1}" if n > 1 else "") + ")")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise NegationClipError(f"{name}: 'mps' asked, but MPS is not available here")
    elif dev.type not in ("cpu", "meta"):
        if not getattr(getattr(torch, dev.type, None), "is_available", lambda: False)():
            raise NegationClipError(f"{name}: {text!r} is not available on this machine")
    return text
