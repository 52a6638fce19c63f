"""Text-encoder fine-tuning (NegationCLIP) and the contrastive loss shared with pretraining.

``finetune(model, records, TrainConfig(...), out_dir, image_root=...)`` is the Python API;
``negationclip train`` the command line. See ``finetune.py`` for the loop.
"""

from .config import TrainConfig
from .data import CaptionRecord, Example, build_examples, read_records, split_examples
from .finetune import FinetuneResult, finetune
from .loss import contrastive_loss, hard_negative_hinge, loss_value
from .trainable import configure_trainable

__all__ = ["CaptionRecord", "Example", "FinetuneResult", "TrainConfig", "build_examples",
           "configure_trainable", "contrastive_loss", "finetune", "hard_negative_hinge",
           "loss_value", "read_records", "split_examples"]
