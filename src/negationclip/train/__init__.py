"""Text-encoder fine-tuning (NegationCLIP) and the contrastive loss shared with pretraining.

``finetune(model, records, TrainConfig(...), out_dir, image_root=...)`` is the Python API;
``negationclip train`` the command line. See ``loop.py`` for the loop. Names are imported
lazily so that building the CLI parser (which reads ``config``) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "config",
    "CaptionRecord": "data", "Example": "data", "build_examples": "data",
    "read_records": "data", "split_examples": "data",
    "FinetuneResult": "loop", "finetune": "loop",
    "contrastive_loss": "loss", "hard_negative_hinge": "loss", "loss_value": "loss",
    "configure_trainable": "trainable",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'negationclip.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value
