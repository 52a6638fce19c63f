"""The loss-curve PNG of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..utils import atomic_write_bytes


def plot_loss_curve(history: Sequence[dict], path: str | Path, *, title: str = "") -> Path | None:
    """Training loss per step (raw and smoothed) and validation loss; None if nothing to plot."""
    train = [(h["step"], h["loss"]) for h in history if h.get("kind") == "train"]
    val = [(h["step"], h["val_loss"]) for h in history if h.get("kind") == "val"]
    if not train and not val:
        return None
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        xs, ys = zip(*train)
        ax.plot(xs, ys, color="tab:blue", alpha=0.3, linewidth=0.8, label="train (per step)")
        k = max(1, len(ys) // 50)
        if k > 1:
            sm = [sum(ys[max(0, i - k + 1): i + 1]) / len(ys[max(0, i - k + 1): i + 1])
                  for i in range(len(ys))]
            ax.plot(xs, sm, color="tab:blue", linewidth=1.6, label=f"train (mean of {k})")
    if val:
        xs, ys = zip(*val)
        ax.plot(xs, ys, "o-", color="tab:orange", linewidth=1.6, label="validation")
        trained = [i for i, x in enumerate(xs) if x > 0] or list(range(len(xs)))
        best = min(trained, key=ys.__getitem__)  # the saved checkpoint (step 0 is the base)
        ax.plot([xs[best]], [ys[best]], "*", color="tab:red", markersize=12, label="best (saved)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("contrastive loss")
    ax.set_title(title or "NegationCLIP fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
