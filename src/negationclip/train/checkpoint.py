"""The best model (a Hugging Face folder) and the resume state of a run, both written atomically.

Resume state (``<out>/state/``): the trainable tensors (safetensors), optimizer, scheduler and
grad-scaler state, torch RNG states, and ``state.json`` (data position, best validation loss,
history, and what the run was: trainable names/shapes, weights-deciding config). Everything
is read back with ``torch.load(weights_only=True)`` / safetensors: no pickled code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..utils import NegationClipError, atomic_dir, load_json, load_torch_state, torch_bytes

STATE = "state"
BEST = "best"




def has_state(out_dir: str | Path) -> bool:
    folder = Path(out_dir) / STATE
    if not folder.exists():
        # a kill between atomic_dir's two renames leaves only the previous state, set aside
        olds = sorted(Path(out_dir).glob(f".{STATE}.old.*"), key=lambda p: p.stat().st_mtime)
        if olds and (olds[-1] / "state.json").exists():
            olds[-1].rename(folder)
    return (folder / "state.json").exists()


def rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_state(out_dir: str | Path, *, model: torch.nn.Module, optimizer, scheduler,
               scaler=None, meta: dict[str, Any]) -> Path:
    """Write the resume state into ``<out>/state`` in one rename (never half-written)."""
    from safetensors.torch import save_file

    target = Path(out_dir) / STATE
    tensors = {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters()
               if p.requires_grad}
    with atomic_dir(target) as tmp:
        save_file(tensors, str(tmp / "trainable.safetensors"))
        (tmp / "optimizer.pt").write_bytes(torch_bytes(optimizer.state_dict()))
        (tmp / "scheduler.pt").write_bytes(torch_bytes(scheduler.state_dict()))
        if scaler is not None:
            (tmp / "scaler.pt").write_bytes(torch_bytes(scaler.state_dict()))
        (tmp / "rng.pt").write_bytes(torch_bytes(rng_state()))
        meta = dict(meta, trainable={n: list(t.shape) for n, t in tensors.items()})
        (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return target


def load_state(out_dir: str | Path, *, model: torch.nn.Module, optimizer, scheduler,
               scaler=None, expect: dict[str, Any]) -> dict[str, Any]:
    """Restore a run; a state from another architecture or recipe is a clear error."""
    from safetensors.torch import load_file

    folder = Path(out_dir) / STATE
    meta = load_json(folder / "state.json")
    was = (meta.get("config") or {}).get("method", "negationclip")
    now = (expect.get("config") or {}).get("method", "negationclip")
    if was != now:
        raise NegationClipError(f"{folder}: cannot resume: the run was trained with method {was!r}, "
                                f"not {now!r}; resume with --method {was} or start a fresh --out")
    mine = {n: list(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    theirs = meta.get("trainable", {})
    if mine != theirs:
        diff = sorted(set(mine) ^ set(theirs)) or [n for n in mine if mine[n] != theirs.get(n)]
        raise NegationClipError(
            f"{folder}: resume state is for another architecture or set of trainable parameters "
            f"(differs at {diff[:3]}{' ...' if len(diff) > 3 else ''}: e.g. "
            f"{diff[0]} {theirs.get(diff[0])} in the state vs {mine.get(diff[0])} in the model); "
            "use a fresh --out or the model the run started from")
    for key, want in expect.items():
        have = meta.get(key)
        if have != want:
            if isinstance(want, dict) and isinstance(have, dict):
                changed = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
                detail = ", ".join(f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in changed[:4])
            else:
                detail = f"{have!r} -> {want!r}"
            raise NegationClipError(
                f"{folder}: cannot resume: the run's {key} changed ({detail}); resume with the "
                "same settings and data, or start a fresh --out")
    tensors = load_file(str(folder / "trainable.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))
    optimizer.load_state_dict(load_torch_state(folder / "optimizer.pt"))
    scheduler.load_state_dict(load_torch_state(folder / "scheduler.pt"))
    if scaler is not None and (folder / "scaler.pt").exists():
        scaler.load_state_dict(load_torch_state(folder / "scaler.pt"))
    set_rng_state(load_torch_state(folder / "rng.pt"))
    return meta


def save_best(bundle, out_dir: str | Path, *, provenance: dict[str, Any],
              openai: bool = False) -> Path:
    """Write the model as ``<out>/best`` (Hugging Face folder, atomic) and optionally
    ``<out>/best_openai.pt`` (OpenAI-style state dict)."""
    from ..models import export_openai, save

    old = bundle.provenance
    bundle.provenance = dict(old, **provenance)
    try:
        path = save(bundle, Path(out_dir) / BEST)
        if openai:
            export_openai(bundle, Path(out_dir) / "best_openai.pt")
    finally:
        bundle.provenance = old
    return path
