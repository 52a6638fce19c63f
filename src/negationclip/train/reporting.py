"""Where a training run's numbers go besides ``log.jsonl``: ``--report-to tensorboard|wandb|none``.

Reporters are plug-ins registered by name (``@register("name")``); the loop calls
``reporter.log(h)`` from its one ``record(h)`` function with exactly the dicts it writes to
``log.jsonl``, so every backend shows the same numbers as the log. Each numeric field of a
record becomes the scalar ``<kind>/<field>`` at ``step`` (``train/loss``, ``train/lr``,
``train/captions_per_s``, ``train/gpu_mem_gb`` on CUDA, ``val/val_loss``).

``auto`` (the default) is TensorBoard when the ``tensorboard`` package is installed
(``pip install negationclip[report]``), else nothing; wandb only when asked for by name.
Only the main process reports (rank 0 of a distributed run).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from ..utils import NegationClipError

SKIP = ("kind", "step", "epoch")


def scalars(h: dict) -> dict[str, float]:
    """The ``<kind>/<field>`` -> value scalars of one log record (numbers only, no bools)."""
    kind = h.get("kind", "train")
    return {f"{kind}/{k}": float(v) for k, v in h.items()
            if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Reporter:
    """Receives each log record; ``close`` flushes. The base class reports nowhere (``none``)."""

    name = "none"

    def log(self, h: dict) -> None:
        pass

    def close(self) -> None:
        pass


REPORTERS: dict[str, Callable[[Path, dict], Reporter]] = {}
NEEDS: dict[str, str] = {}  # reporter -> the package it needs


def register(name: str, needs: str | None = None):
    def deco(factory):
        REPORTERS[name] = factory
        if needs:
            NEEDS[name] = needs
        return factory
    return deco


def available(name: str) -> bool:
    pkg = NEEDS.get(name)
    return pkg is None or importlib.util.find_spec(pkg) is not None


def resolve(name: str | None) -> str:
    """``auto`` -> ``tensorboard`` when installed, else ``none``; a named one must be installed."""
    name = (name or "auto").lower()
    if name == "auto":
        return "tensorboard" if available("tensorboard") else "none"
    if name not in REPORTERS:
        raise NegationClipError(f"--report-to {name!r}: unknown; choose from "
                                f"{', '.join(['auto', *sorted(REPORTERS)])}")
    if not available(name):
        raise NegationClipError(f"--report-to {name}: the {NEEDS[name]!r} package is not installed "
                                f"(pip install {NEEDS[name]}), or use --report-to none")
    return name


def make_reporter(name: str | None, out_dir: Path, config: dict) -> Reporter:
    """The reporter ``name`` (after :func:`resolve`) writing under ``out_dir``."""
    return REPORTERS[resolve(name)](Path(out_dir), config)


@register("none")
def _none(out_dir: Path, config: dict) -> Reporter:
    return Reporter()


@register("tensorboard", needs="tensorboard")
class TensorBoardReporter(Reporter):
    """Event files in ``OUT/tensorboard`` (``tensorboard --logdir OUT/tensorboard``)."""

    name = "tensorboard"

    def __init__(self, out_dir: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = out_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))

    def log(self, h: dict) -> None:
        step = int(h.get("step", 0))
        for tag, v in scalars(h).items():
            self.writer.add_scalar(tag, v, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


@register("wandb", needs="wandb")
class WandbReporter(Reporter):
    """A wandb run named after the output folder, with the train config (``WANDB_*`` env vars
    choose project, entity and offline mode as wandb documents)."""

    name = "wandb"

    def __init__(self, out_dir: Path, config: dict):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(name=out_dir.name, dir=str(out_dir), config=config)

    def log(self, h: dict) -> None:
        self.run.log(scalars(h), step=int(h.get("step", 0)))

    def close(self) -> None:
        self.run.finish()
