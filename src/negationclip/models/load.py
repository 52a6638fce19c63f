"""The one model-loading entry point: any CLIP checkpoint -> a Hugging Face ``CLIPModel`` bundle."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..utils.checks import check_device
from ..utils.errors import NegationClipError
from .tokenizer import ClipTokenizer
from .transform import ImageTransform

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16}
_CKPT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors"}
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise NegationClipError(f"unknown dtype {dtype!r}; use one of float32, float16, bfloat16") from None


@dataclass
class ClipBundle:
    """A CLIP model with what it takes to use it: tokenizer, image transform, provenance."""

    model: Any  # transformers.CLIPModel
    tokenizer: ClipTokenizer
    transform: ImageTransform
    provenance: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
           ) -> "ClipBundle":
        self.model.to(device=device, dtype=dtype)
        return self

    def describe(self) -> str:
        t, v = self.model.config.text_config, self.model.config.vision_config
        return (f"CLIP ViT (vision {v.num_hidden_layers}x{v.hidden_size}, patch {v.patch_size}, "
                f"{v.image_size}px; text {t.num_hidden_layers}x{t.hidden_size}, ctx "
                f"{t.max_position_embeddings}; embed {self.embed_dim})")


def _bundle_from_openai_sd(sd: dict, source: str, fmt: str, dtype: torch.dtype,
                           hidden_act: str) -> ClipBundle:
    from .convert import openai_to_hf

    try:
        model = openai_to_hf(sd, hidden_act=hidden_act, dtype=dtype)
    except NegationClipError as e:
        raise NegationClipError(f"{source}: {e}") from None
    ctx = model.config.text_config.max_position_embeddings
    return ClipBundle(model, ClipTokenizer(context_length=ctx),
                      ImageTransform(image_size=model.config.vision_config.image_size),
                      {"source": source, "format": fmt, "activation": hidden_act})


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub: without it, huggingface_hub retries for tens of seconds."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hf(source: str, dtype: torch.dtype, local_only: bool) -> ClipBundle:
    from transformers import CLIPModel

    if not local_only and not Path(source).is_dir():
        try:  # the local cache first, then the hub only if it answers
            return _load_hf(source, dtype, local_only=True)
        except NegationClipError:
            if not _hub_reachable():
                raise NegationClipError(
                    f"{source}: not a local file or folder, not in the Hugging Face cache, and the "
                    "hub is unreachable (offline?); pass a local folder or checkpoint") from None
    try:
        model = CLIPModel.from_pretrained(source, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError) as e:
        msg = str(e).splitlines()[0][:300]
        if local_only:
            raise NegationClipError(f"{source}: not a loadable Hugging Face CLIP folder ({msg})") from None
        raise NegationClipError(
            f"{source}: not a local file or folder, and the Hugging Face hub could not provide it "
            f"(no network, or not in the local cache? {msg})") from None
    model.eval()
    ctx = model.config.text_config.max_position_embeddings
    folder = Path(source)
    tokenizer = ClipTokenizer(context_length=ctx)
    transform = ImageTransform(image_size=model.config.vision_config.image_size)
    if folder.is_dir():
        if (folder / "tokenizer.json").exists() or (folder / "vocab.json").exists():
            tokenizer = ClipTokenizer.from_pretrained(folder, context_length=ctx)
        if (folder / "preprocessor_config.json").exists():
            from ..utils.io import load_json
            transform = ImageTransform.from_hf_config(load_json(folder / "preprocessor_config.json"),
                                                      model.config.vision_config.image_size)
    prov = {"source": source, "format": "huggingface"}
    extra = folder / "negationclip.json"
    if folder.is_dir() and extra.exists():
        from ..utils.io import load_json
        prov["saved_from"] = load_json(extra).get("provenance", {})
    return ClipBundle(model, tokenizer, transform, prov)


def load_clip(source: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: str | torch.dtype | None = torch.float32, *, hidden_act: str = "quick_gelu",
              local_files_only: bool | None = None) -> ClipBundle:
    """Load any CLIP checkpoint as a Hugging Face ``CLIPModel`` bundle.

    ``source``: a Hugging Face id or folder; an OpenAI/open_clip ``.pt``/``.pth`` (TorchScript
    read without executing code, state dicts with ``torch.load(weights_only=True)``), e.g. the
    released NegationCLIP checkpoints; or a ``.safetensors`` state dict. ``hidden_act`` is the
    MLP activation of bare state dicts: OpenAI and NegationCLIP use ``quick_gelu``; open_clip
    models trained from scratch (LAION) use ``gelu``. The hub is only asked when
    ``HF_HUB_OFFLINE`` is unset and ``local_files_only`` is not True.
    """
    dt = parse_dtype(dtype)
    if not isinstance(device, torch.device):
        check_device(device)  # a device this machine lacks fails before the weights are read
    src = str(source)
    path = Path(src).expanduser()
    if path.is_dir():
        if (path / "config.json").exists():
            bundle = _load_hf(str(path), dt, local_only=True)
        else:
            ckpt = next((path / f for f in _OPEN_CLIP_FILES if (path / f).exists()), None)
            if ckpt is None:
                raise NegationClipError(f"{path}: folder has neither config.json (Hugging Face) nor "
                                        f"an open_clip checkpoint ({', '.join(_OPEN_CLIP_FILES)})")
            from .convert import read_checkpoint
            bundle = _bundle_from_openai_sd(read_checkpoint(ckpt), src, "open_clip", dt, hidden_act)
    elif path.is_file():
        from .convert import _is_torchscript, read_checkpoint
        fmt = "torchscript" if _is_torchscript(path) else (
            "safetensors" if path.suffix == ".safetensors" else "state_dict")
        sd = read_checkpoint(path)
        if any(k.startswith("text_model.") for k in sd):
            cfg = path.parent / "config.json"
            if not cfg.exists():
                raise NegationClipError(f"{path}: Hugging Face-layout weights need the config.json "
                                        f"beside them; load the folder {path.parent} instead")
            bundle = _load_hf(str(path.parent), dt, local_only=True)
        else:
            bundle = _bundle_from_openai_sd(sd, src, fmt, dt, hidden_act)
    else:
        looks_like_path = (path.suffix in _CKPT_SUFFIXES or src.startswith((".", "/", "~"))
                           or os.sep in src.strip("/").split("/", 1)[-1] or src.count("/") > 1)
        if looks_like_path:
            raise NegationClipError(f"{src}: no such checkpoint file or folder")
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        local = offline if local_files_only is None else local_files_only
        bundle = _load_hf(src, dt, local_only=local)
    return bundle.to(device)
