"""Writing models: Hugging Face folders, OpenAI-style state dicts, text-encoder folders.

Every writer goes through a temporary folder/file and a rename, so a failed save leaves no
half-written output.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


from .. import __version__
from ..utils.errors import NegationClipError
from ..utils.io import atomic_dir, atomic_write_bytes, torch_bytes
from .load import ClipBundle


def _meta(bundle: ClipBundle) -> dict:
    return {"negationclip_version": __version__, "provenance": bundle.provenance}


def save(bundle: ClipBundle, folder: str | os.PathLike) -> Path:
    """A Hugging Face folder (safetensors weights, tokenizer, preprocessor config) that
    ``CLIPModel.from_pretrained`` and ``load_clip`` read."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        bundle.model.save_pretrained(str(tmp), safe_serialization=True)
        bundle.tokenizer.save_pretrained(tmp)
        (tmp / "preprocessor_config.json").write_text(
            json.dumps(bundle.transform.to_hf_config(), indent=2) + "\n")
        (tmp / "negationclip.json").write_text(json.dumps(_meta(bundle), indent=2, default=str) + "\n")
    return folder


def export_openai(bundle: ClipBundle, path: str | os.PathLike) -> Path:
    """An OpenAI-layout state dict (``.pt``/``.pth`` via torch.save, or ``.safetensors``)."""
    from .convert import hf_to_openai

    cfg = bundle.model.config
    for name, sub in (("text", cfg.text_config), ("vision", cfg.vision_config)):
        if sub.num_attention_heads != max(1, sub.hidden_size // 64):
            raise NegationClipError(
                f"the {name} tower has {sub.num_attention_heads} heads for width {sub.hidden_size}; "
                "the OpenAI layout implies width // 64 heads, so the export would load wrongly")
        if sub.hidden_act != "quick_gelu":  # a bare state dict cannot say; loaders assume QuickGELU
            print(f"note: the {name} tower uses {sub.hidden_act}; load the export with "
                  f"--act {sub.hidden_act} (act={sub.hidden_act!r})", file=sys.stderr)
    sd = hf_to_openai(bundle.model)
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save
        atomic_write_bytes(path, save(sd, metadata={"format": "openai-clip"}))
    else:
        atomic_write_bytes(path, torch_bytes(sd))
    return path


def export_text_encoder(bundle: ClipBundle, folder: str | os.PathLike, *,
                        with_projection: bool = False) -> Path:
    """A ``CLIPTextModel`` (or ``CLIPTextModelWithProjection``) + tokenizer folder: what
    diffusers pipelines (``text_encoder``/``tokenizer``) and CLIPSeg's text tower take."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cfg = bundle.model.config.text_config
    if with_projection:
        cfg.projection_dim = bundle.model.config.projection_dim
        te = CLIPTextModelWithProjection(cfg)
        te.text_projection.load_state_dict(bundle.model.text_projection.state_dict())
    else:
        te = CLIPTextModel(cfg)
    # transformers 5 flattened CLIPTextModel (no .text_model wrapper); 4.x had one
    getattr(te, "text_model", te).load_state_dict(bundle.model.text_model.state_dict())
    te.to(bundle.dtype).eval()
    # Keys are written as ``text_model.*`` (the layout of Stable Diffusion's text_encoder and of
    # transformers 4.x), which transformers 5 also reads.
    sd = {f"text_model.{k}": v.detach().contiguous()
          for k, v in getattr(te, "text_model", te).state_dict().items()}
    if with_projection:
        sd["text_projection.weight"] = te.text_projection.weight.detach().contiguous()
    te.config.architectures = [type(te).__name__]
    from safetensors.torch import save_file
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        te.config.save_pretrained(str(tmp))
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        bundle.tokenizer.save_pretrained(tmp)
        (tmp / "negationclip.json").write_text(json.dumps(_meta(bundle), indent=2, default=str) + "\n")
    return folder
