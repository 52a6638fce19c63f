"""The one model-loading entry point: any checkpoint -> a bundle of a registered model family
(CLIP as a Hugging Face ``CLIPModel``, SigLIP, SigLIP 2; see ``models/families``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..utils.checks import check_device
from ..utils.errors import NegationClipError
from . import open_clip_names
from .tokenizer import ClipTokenizer
from .transform import ImageTransform

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16}
_CKPT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors"}
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: MLP activations: OpenAI's CLIPs (and NegationCLIP) use QuickGELU, LAION open_clip ones GELU.
ACTS = ("quick_gelu", "gelu")


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
    """A model with what it takes to use it: tokenizer, image transform, provenance. Its
    ``family`` (from the model's config) says how to compute features, scores and losses."""

    model: Any  # transformers.CLIPModel, SiglipModel or Siglip2Model
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
    def family(self):
        from .families import family_of
        return family_of(self.model)

    @property
    def embed_dim(self) -> int:
        return self.family.embed_dim(self.model)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
           ) -> "ClipBundle":
        self.model.to(device=device, dtype=dtype)
        return self

    def describe(self) -> str:
        return self.family.describe(self.model)


def _bundle_from_openai_sd(sd: dict, source: str, fmt: str, dtype: torch.dtype,
                           act: tuple[str, str], transform_cfg: dict | None = None) -> ClipBundle:
    from .convert import openai_to_hf

    try:
        model = openai_to_hf(sd, hidden_act=act[0], dtype=dtype)
    except NegationClipError as e:
        raise NegationClipError(f"{source}: {e}") from None
    ctx = model.config.text_config.max_position_embeddings
    size = model.config.vision_config.image_size
    transform = ImageTransform(image_size=size, **(transform_cfg or {}))
    return ClipBundle(model, ClipTokenizer(context_length=ctx), transform,
                      {"source": source, "format": fmt, "act": act[0], "act_origin": act[1]})


# --- activation ---------------------------------------------------------------------------

def _check_act(act: str | None) -> str | None:
    if act is not None and act not in ACTS:
        raise NegationClipError(f"unknown activation {act!r}; use one of {', '.join(ACTS)}")
    return act


def _open_clip_config(folder: Path) -> dict | None:
    f = folder / "open_clip_config.json"
    if not f.is_file():
        return None
    from ..utils.io import load_json
    cfg = load_json(f)
    if not isinstance(cfg, dict):
        raise NegationClipError(f"{f}: expected a JSON object")
    return cfg


def _open_clip_transform(cfg: dict | None, where: Path) -> dict:
    """ImageTransform fields from open_clip's ``preprocess_cfg`` (its default transform is
    torchvision Resize + CenterCrop, i.e. the "openai" rule, with its own mean/std)."""
    pre = (cfg or {}).get("preprocess_cfg") or {}
    out: dict = {}
    if "mean" in pre:
        out["mean"] = tuple(pre["mean"])
    if "std" in pre:
        out["std"] = tuple(pre["std"])
    mode, interp = pre.get("resize_mode", "shortest"), pre.get("interpolation", "bicubic")
    if mode != "shortest" or interp not in ("bicubic", "bilinear"):
        raise NegationClipError(f"{where}/open_clip_config.json: preprocess resize_mode={mode!r}, "
                                f"interpolation={interp!r} is not supported (only 'shortest')")
    out["resample"] = interp
    return out


def _torchscript_act(path: Path) -> str | None:
    """The activation a TorchScript archive's module classes name (QuickGELU or nn.GELU)."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        pkl = next((n for n in zf.namelist() if n.endswith("/data.pkl")), None)
        data = zf.read(pkl) if pkl else b""
    if b"QuickGELU" in data:
        return "quick_gelu"
    if b"activation.GELU" in data:
        return "gelu"
    return None


def _source_act(path: Path, fmt: str) -> tuple[str, str] | None:
    """What the checkpoint itself says about its activation: (act, where it was read)."""
    folder = path if path.is_dir() else path.parent
    if path.is_dir() or path.name in _OPEN_CLIP_FILES:
        cfg = _open_clip_config(folder)
        if cfg is not None:
            mc = cfg.get("model_cfg", cfg)
            q = bool(mc.get("quick_gelu", False)) if isinstance(mc, dict) else False
            return ("quick_gelu" if q else "gelu"), f"{folder / 'open_clip_config.json'} (model_cfg.quick_gelu={q})"
    for name in (path.name, folder.name):
        if "quickgelu" in name.lower().replace("_", "").replace("-", ""):
            return "quick_gelu", f"the name {name!r} (-quickgelu)"
    if fmt == "torchscript":
        act = _torchscript_act(path)
        if act is not None:
            return act, "the TorchScript archive's module classes"
    return None


def _resolve_act(act: str | None, found: tuple[str, str] | None, src: str) -> tuple[str, str]:
    if act is not None:
        if found is not None and found[0] != act:
            print(f"note: {src}: using act={act} (option) although {found[1]} says {found[0]}",
                  file=sys.stderr)
        return act, "option"
    if found is not None:
        return found
    print(f"note: {src} does not say which activation it uses; assuming quick_gelu (OpenAI, "
          "NegationCLIP); pass --act gelu (act='gelu') for LAION open_clip models", file=sys.stderr)
    return "quick_gelu", "assumed (the checkpoint does not say)"


def set_activation(model, act: str) -> None:
    """Switch every MLP of a ``CLIPModel`` (and its config) to ``act``."""
    from transformers.activations import ACT2FN

    for sub, enc in ((model.config.text_config, model.text_model.encoder),
                     (model.config.vision_config, model.vision_model.encoder)):
        sub.hidden_act = act
        for layer in enc.layers:
            layer.mlp.activation_fn = ACT2FN[act]


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


def _hub_file(source: str, name: str, local_only: bool) -> Path | None:
    """A file of a hub model from the local cache (or the hub), None when it has none."""
    try:
        from transformers.utils import cached_file
        f = cached_file(source, name, local_files_only=local_only,
                        _raise_exceptions_for_missing_entries=False,
                        _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    return Path(f) if f else None


def _load_hf(source: str, dtype: torch.dtype, local_only: bool, act: str | None = None) -> ClipBundle:
    """A Hugging Face folder or id, loaded by the family its ``config.json`` names."""
    from .families import family_for_model_type, registry

    if not local_only and not Path(source).is_dir():
        try:  # the local cache first, then the hub only if it answers
            return _load_hf(source, dtype, local_only=True, act=act)
        except NegationClipError:
            if not _hub_reachable():
                raise NegationClipError(
                    f"{source}: not a local file or folder, not in the Hugging Face cache, and the "
                    "hub is unreachable (offline?); pass a local folder or checkpoint") from None
    cfg_file = Path(source) / "config.json" if Path(source).is_dir() else _hub_file(
        source, "config.json", local_only)
    model_type = None
    if cfg_file is not None and cfg_file.is_file():
        from ..utils.io import load_json
        model_type = (load_json(cfg_file) or {}).get("model_type")
    fam = family_for_model_type(model_type) if model_type else None
    if model_type and fam is None:
        raise NegationClipError(f"{cfg_file}: model_type {model_type!r} is not a supported model "
                                f"family; supported: {', '.join(registry())}")
    if fam is not None and fam.name != "clip":
        return fam.load(source, dtype, local_only, act)
    return _load_clip_hf(source, dtype, local_only, act)


def _load_clip_hf(source: str, dtype: torch.dtype, local_only: bool, act: str | None = None
                  ) -> ClipBundle:
    from transformers import CLIPModel

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
    size = model.config.vision_config.image_size
    pre = folder / "preprocessor_config.json" if folder.is_dir() else _hub_file(
        source, "preprocessor_config.json", local_only)
    if pre is not None and pre.is_file():
        from ..utils.io import load_json
        transform = ImageTransform.from_hf_config(load_json(pre), size, where=str(pre))
    else:  # no processor config: CLIPImageProcessor's defaults at the model's size
        transform = ImageTransform(image_size=size, rule="hf")
    if folder.is_dir() and ((folder / "tokenizer.json").exists() or (folder / "vocab.json").exists()):
        tokenizer = ClipTokenizer.from_pretrained(folder, context_length=ctx)
    t_act, v_act = model.config.text_config.hidden_act, model.config.vision_config.hidden_act
    here = t_act if t_act == v_act else f"text {t_act}, vision {v_act}"
    if act is None:
        chosen = (here, "config.json hidden_act")
    else:
        chosen = _resolve_act(act, (here, "config.json hidden_act"), source)
        if act != t_act or act != v_act:
            set_activation(model, act)
    prov = {"source": source, "format": "huggingface", "act": chosen[0], "act_origin": chosen[1]}
    extra = folder / "negationclip.json"
    if folder.is_dir() and extra.exists():
        from ..utils.io import load_json
        prov["saved_from"] = load_json(extra).get("provenance", {})
    return ClipBundle(model, tokenizer, transform, prov)


def _load_open_clip_folder(path: Path, ckpt: Path, src: str, dt: torch.dtype, act: str | None,
                           name_act: tuple[str, str] | None = None) -> ClipBundle:
    from .convert import read_checkpoint

    cfg = _open_clip_config(path)
    if cfg is not None:
        from .open_clip_siglip import is_open_clip_siglip, load_open_clip_siglip
        if is_open_clip_siglip(cfg):  # timm ViT + MAP head, open_clip text: a SiglipModel
            return load_open_clip_siglip(path, ckpt, cfg, src, dt, act)
        open_clip_names.check_supported(cfg, path)
    found = name_act if (name_act is not None and act is None) else _source_act(path, "open_clip")
    chosen = _resolve_act(act, found, src)
    return _bundle_from_openai_sd(read_checkpoint(ckpt), src, "open_clip", dt, chosen,
                                  _open_clip_transform(cfg, path))


def load_clip(source: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: str | torch.dtype | None = torch.float32, *, act: str | None = None,
              local_files_only: bool | None = None) -> ClipBundle:
    """Load any CLIP checkpoint as a Hugging Face ``CLIPModel`` bundle.

    ``source``: a Hugging Face id or folder; an OpenAI/open_clip ``.pt``/``.pth`` (TorchScript
    read without executing code, state dicts with ``torch.load(weights_only=True)``), e.g. the
    released NegationCLIP checkpoints; an open_clip folder (``open_clip_config.json`` + weights);
    or a ``.safetensors`` state dict; a SigLIP / SigLIP 2 Hugging Face folder or cached id
    (``models/families``); an open_clip name (``ViT-B-32/openai``, ``hf-hub:ORG/REPO``,
    ``ViT-B-16-SigLIP/webli``) resolved from the local Hugging Face cache
    (``models/open_clip_names``).

    ``act`` (``"quick_gelu"`` | ``"gelu"``) is the MLP activation; None reads it from the source
    (``config.json`` ``hidden_act``, ``open_clip_config.json`` ``model_cfg.quick_gelu``, a
    ``-quickgelu`` name, a TorchScript archive's classes) and, where the source cannot tell (a
    bare state dict), assumes OpenAI's ``quick_gelu`` with a note on stderr. The choice and where
    it came from are in ``bundle.provenance["act"]`` / ``["act_origin"]``; the preprocessing
    rule in ``["preprocessing"]``. The hub is only asked when ``HF_HUB_OFFLINE`` is unset and
    ``local_files_only`` is not True.
    """
    act = _check_act(act)
    dt = parse_dtype(dtype)
    if not isinstance(device, torch.device):
        check_device(device)  # a device this machine lacks fails before the weights are read
    src = str(source)
    path = Path(src).expanduser()
    if path.is_dir():
        if (path / "config.json").exists():
            bundle = _load_hf(str(path), dt, local_only=True, act=act)
        else:
            ckpt = next((path / f for f in _OPEN_CLIP_FILES if (path / f).exists()), None)
            if ckpt is None:
                raise NegationClipError(f"{path}: folder has neither config.json (Hugging Face) nor "
                                        f"an open_clip checkpoint ({', '.join(_OPEN_CLIP_FILES)})")
            bundle = _load_open_clip_folder(path, ckpt, src, dt, act)
    elif path.is_file():
        from .convert import _is_torchscript, read_checkpoint
        fmt = "torchscript" if _is_torchscript(path) else (
            "safetensors" if path.suffix == ".safetensors" else "state_dict")
        from .open_clip_siglip import is_open_clip_siglip, load_open_clip_siglip
        oc_cfg = _open_clip_config(path.parent) if path.name in _OPEN_CLIP_FILES else None
        sd = None if oc_cfg is not None and is_open_clip_siglip(oc_cfg) else read_checkpoint(path)
        if sd is None:
            bundle = load_open_clip_siglip(path.parent, path, oc_cfg, src, dt, act)
        elif any(k.startswith("text_model.") for k in sd):
            cfg = path.parent / "config.json"
            if not cfg.exists():
                raise NegationClipError(f"{path}: Hugging Face-layout weights need the config.json "
                                        f"beside them; load the folder {path.parent} instead")
            bundle = _load_hf(str(path.parent), dt, local_only=True, act=act)
        else:
            chosen = _resolve_act(act, _source_act(path, fmt), src)
            tcfg = (_open_clip_transform(_open_clip_config(path.parent), path.parent)
                    if path.name in _OPEN_CLIP_FILES else None)
            bundle = _bundle_from_openai_sd(sd, src, fmt, dt, chosen, tcfg)
    elif (oc := open_clip_names.parse(src)) is not None:
        folder = open_clip_names.resolve(oc)
        ckpt = next(folder / f for f in _OPEN_CLIP_FILES if (folder / f).exists())
        name_act = (("quick_gelu", f"the open_clip name {src!r} (OpenAI weights use QuickGELU)")
                    if oc.quick_gelu else None)
        bundle = _load_open_clip_folder(folder, ckpt, src, dt, act, name_act)
        bundle.provenance["resolved"] = str(folder)
    else:
        looks_like_path = (path.suffix in _CKPT_SUFFIXES or src.startswith((".", "/", "~"))
                           or os.sep in src.strip("/").split("/", 1)[-1] or src.count("/") > 1)
        if looks_like_path:
            raise NegationClipError(f"{src}: no such checkpoint file or folder")
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        local = offline if local_files_only is None else local_files_only
        bundle = _load_hf(src, dt, local_only=local, act=act)
    bundle.provenance.setdefault("family", bundle.family.name)
    bundle.provenance["preprocessing"] = bundle.transform.describe()
    return bundle.to(device)
