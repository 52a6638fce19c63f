"""The commands' argparse types: they live in ``utils.argtypes`` (no CLI imports there, so the
``benchmarks/`` scripts use the same rules without importing every command)."""

from ..utils.argtypes import (  # noqa: F401
    device,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
)
