"""OpenAI/open_clip CLIP state dicts <-> Hugging Face ``CLIPModel``, and safe checkpoint reading.

The architecture of a bare OpenAI-layout state dict is inferred from its tensor shapes, as
OpenAI's ``build_model`` does, so no config is needed. TorchScript archives (OpenAI's
``ViT-B-32.pt``) are read by unpickling ``data.pkl`` with a restricted unpickler that only
rebuilds tensors: no TorchScript code is executed.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..utils.errors import NegationClipError

# Keys that OpenAI/open_clip checkpoints carry but that are not weights.
_IGNORED = {"input_resolution", "context_length", "vocab_size", "attn_mask"}
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")


# --- reading ------------------------------------------------------------------------------

class _ScriptObject:
    """Stands in for a ``__torch__.*`` TorchScript class: keeps the attribute dict only."""

    def __init__(self, *args, **kwargs):
        self.__dict__["_attrs"] = {}

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__["_attrs"] = state
        elif isinstance(state, tuple) and state and isinstance(state[0], dict):
            self.__dict__["_attrs"] = state[0]


class _TorchScriptUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
        ("collections", "OrderedDict"), ("torch", "device"),
    }

    def __init__(self, fp, zf: zipfile.ZipFile, prefix: str):
        super().__init__(fp)
        self.zf, self.prefix = zf, prefix

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return _ScriptObject
        if (module, name) in self._ALLOWED:
            import importlib
            return getattr(importlib.import_module(module), name)
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]} (only tensor "
                                         f"storages are read)")
        _typename, storage_type, key, _location, _numel = pid
        if not (isinstance(storage_type, torch.dtype) or (isinstance(storage_type, type)
                                                          and hasattr(storage_type, "dtype"))):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        data = self.zf.read(f"{self.prefix}/data/{key}")
        dtype = storage_type
        if not isinstance(dtype, torch.dtype):  # e.g. torch.FloatStorage (legacy archives)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dtype = storage_type.dtype
        storage = torch.UntypedStorage.from_buffer(bytearray(data), dtype=torch.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)


def _collect_tensors(obj: Any, prefix: str, out: dict) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, _ScriptObject):
        for k, v in obj._attrs.items():
            _collect_tensors(v, f"{prefix}{k}.", out)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                _collect_tensors(v, f"{prefix}{k}.", out)


def read_torchscript_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive by dotted name, without executing its code."""
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        if not names:
            raise NegationClipError(f"{path}: zip archive without data.pkl: not a torch checkpoint")
        prefix = names[0][: -len("/data.pkl")]
        unp = _TorchScriptUnpickler(io.BytesIO(zf.read(names[0])), zf, prefix)
        root = unp.load()
    out: dict[str, torch.Tensor] = {}
    _collect_tensors(root, "", out)
    return out


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for w in _WRAPPERS:
                if w in obj and isinstance(obj[w], dict):
                    obj = obj[w]
                    break
            else:
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NegationClipError(f"{path}: no state dict of tensors found in the checkpoint")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):  # saved from DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A flat state dict from a ``.safetensors``, a TorchScript archive or a pickled state dict
    (``torch.load(weights_only=True)``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise NegationClipError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise NegationClipError(f"{path}: not a valid safetensors file ({e})") from None
    try:
        if _is_torchscript(path):
            return read_torchscript_state_dict(path)
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except NegationClipError:
        raise
    except pickle.UnpicklingError as e:
        raise NegationClipError(f"{path}: refused or unreadable pickle ({str(e).splitlines()[0]})") from None
    except Exception as e:  # a damaged or foreign archive fails in many ways; none is a bug here
        first = (str(e).splitlines() or [""])[0][:200]
        raise NegationClipError(
            f"{path}: not a readable torch checkpoint ({type(e).__name__}: {first})") from None
    return _unwrap(obj, path)


# --- architecture -------------------------------------------------------------------------

def _count_layers(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in sd if (m := pat.match(k))})


def infer_openai_config(sd: dict[str, torch.Tensor], *, hidden_act: str = "quick_gelu"):
    """A ``CLIPConfig`` from the shapes of an OpenAI-layout ViT state dict (as ``build_model``)."""
    from transformers import CLIPConfig

    if "visual.layer1.0.conv1.weight" in sd or "visual.attnpool.positional_embedding" in sd:
        raise NegationClipError("ResNet CLIP (RN50/RN101/...) has no Hugging Face CLIPModel "
                                "equivalent; use a ViT checkpoint")
    need = ["visual.conv1.weight", "visual.positional_embedding", "visual.proj",
            "token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight"]
    missing = [k for k in need if k not in sd]
    if missing:
        raise NegationClipError(f"not an OpenAI-layout CLIP state dict: missing {', '.join(missing)}")
    vision_width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    vision_layers = _count_layers(sd, "visual.transformer.resblocks.")
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    if grid * grid + 1 != sd["visual.positional_embedding"].shape[0]:
        raise NegationClipError(
            f"visual.positional_embedding has {sd['visual.positional_embedding'].shape[0]} rows, "
            "which is not 1 + a square grid")
    embed_dim = sd["text_projection"].shape[1]
    ctx = sd["positional_embedding"].shape[0]
    vocab = sd["token_embedding.weight"].shape[0]
    width = sd["ln_final.weight"].shape[0]
    layers = _count_layers(sd, "transformer.resblocks.")
    if vision_layers == 0 or layers == 0:
        raise NegationClipError("state dict has no transformer blocks")
    v_mlp = sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    t_mlp = sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    if sd["visual.proj"].shape != (vision_width, embed_dim):
        raise NegationClipError(f"visual.proj has shape {tuple(sd['visual.proj'].shape)}, expected "
                                f"{(vision_width, embed_dim)}")
    text_cfg = dict(vocab_size=vocab, hidden_size=width, intermediate_size=t_mlp,
                    num_hidden_layers=layers, num_attention_heads=max(1, width // 64),
                    max_position_embeddings=ctx, hidden_act=hidden_act, projection_dim=embed_dim,
                    bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    vision_cfg = dict(hidden_size=vision_width, intermediate_size=v_mlp,
                      num_hidden_layers=vision_layers, num_attention_heads=max(1, vision_width // 64),
                      image_size=grid * patch, patch_size=patch, hidden_act=hidden_act,
                      projection_dim=embed_dim)
    return CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=embed_dim)


# --- mapping ------------------------------------------------------------------------------

def _block_map(o: str, h: str) -> list[tuple[str, str]]:
    return [(f"{o}.ln_1.weight", f"{h}.layer_norm1.weight"), (f"{o}.ln_1.bias", f"{h}.layer_norm1.bias"),
            (f"{o}.ln_2.weight", f"{h}.layer_norm2.weight"), (f"{o}.ln_2.bias", f"{h}.layer_norm2.bias"),
            (f"{o}.mlp.c_fc.weight", f"{h}.mlp.fc1.weight"), (f"{o}.mlp.c_fc.bias", f"{h}.mlp.fc1.bias"),
            (f"{o}.mlp.c_proj.weight", f"{h}.mlp.fc2.weight"), (f"{o}.mlp.c_proj.bias", f"{h}.mlp.fc2.bias"),
            (f"{o}.attn.out_proj.weight", f"{h}.self_attn.out_proj.weight"),
            (f"{o}.attn.out_proj.bias", f"{h}.self_attn.out_proj.bias")]


def _plain_map(cfg) -> list[tuple[str, str]]:
    m = [("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
         ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
         ("ln_final.weight", "text_model.final_layer_norm.weight"),
         ("ln_final.bias", "text_model.final_layer_norm.bias"),
         ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
         ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
         ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
         ("visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"),
         ("visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"),
         ("visual.ln_post.weight", "vision_model.post_layernorm.weight"),
         ("visual.ln_post.bias", "vision_model.post_layernorm.bias"),
         ("logit_scale", "logit_scale")]
    for i in range(cfg.text_config.num_hidden_layers):
        m += _block_map(f"transformer.resblocks.{i}", f"text_model.encoder.layers.{i}")
    for i in range(cfg.vision_config.num_hidden_layers):
        m += _block_map(f"visual.transformer.resblocks.{i}", f"vision_model.encoder.layers.{i}")
    return m


def _qkv(cfg) -> list[tuple[str, str]]:
    out = [(f"transformer.resblocks.{i}.attn", f"text_model.encoder.layers.{i}.self_attn")
           for i in range(cfg.text_config.num_hidden_layers)]
    out += [(f"visual.transformer.resblocks.{i}.attn", f"vision_model.encoder.layers.{i}.self_attn")
            for i in range(cfg.vision_config.num_hidden_layers)]
    return out


def openai_to_hf_state_dict(sd: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """Rename/reshape an OpenAI-layout state dict into ``CLIPModel`` keys; every key must be used."""
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}

    def take(k: str) -> torch.Tensor:
        if k not in sd:
            raise NegationClipError(f"state dict is missing {k}")
        used.add(k)
        return sd[k]

    for o, h in _plain_map(cfg):
        out[h] = take(o)
    for o, h in _qkv(cfg):
        w, b = take(f"{o}.in_proj_weight"), take(f"{o}.in_proj_bias")
        for name, wi, bi in zip(("q", "k", "v"), w.chunk(3, 0), b.chunk(3, 0)):
            out[f"{h}.{name}_proj.weight"] = wi
            out[f"{h}.{name}_proj.bias"] = bi
    out["text_projection.weight"] = take("text_projection").t()
    out["visual_projection.weight"] = take("visual.proj").t()
    extra = sorted(k for k in sd if k not in used and k not in _IGNORED)
    if extra:
        shown = ", ".join(extra[:5]) + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else "")
        raise NegationClipError(f"state dict has unexpected keys: {shown}")
    return {k: v.contiguous() for k, v in out.items()}


def openai_to_hf(sd: dict[str, torch.Tensor], *, hidden_act: str = "quick_gelu",
                 dtype: torch.dtype = torch.float32):
    """Build a Hugging Face ``CLIPModel`` holding the weights of an OpenAI-layout state dict."""
    from transformers import CLIPModel

    cfg = infer_openai_config(sd, hidden_act=hidden_act)
    hf_sd = openai_to_hf_state_dict(sd, cfg)
    with torch.device("meta"):
        model = CLIPModel(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    for k, v in hf_sd.items():
        if k not in expected:
            raise NegationClipError(f"converted key {k} does not exist in CLIPModel")
        if tuple(v.shape) != tuple(expected[k]):
            raise NegationClipError(f"{k}: shape {tuple(v.shape)} does not fit the inferred "
                                    f"architecture ({tuple(expected[k])})")
    missing = [k for k in expected if k not in hf_sd and not k.endswith("position_ids")]
    if missing:
        raise NegationClipError(f"conversion left CLIPModel weights unset: {missing[:5]}")
    model.load_state_dict({k: v.to(dtype) for k, v in hf_sd.items()}, strict=False, assign=True)
    # buffers that were on the meta device (position ids) are rebuilt on CPU
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            mod_name, _, attr = name.rpartition(".")
            mod = model.get_submodule(mod_name)
            n = buf.shape[-1]
            mod.register_buffer(attr, torch.arange(n).expand((1, -1)), persistent=False)
    return model.eval()


def hf_to_openai(model) -> dict[str, torch.Tensor]:
    """The OpenAI-layout state dict of a Hugging Face ``CLIPModel`` (inverse of ``openai_to_hf``)."""
    cfg = model.config
    hf = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for o, h in _plain_map(cfg):
        out[o] = hf[h]
    for o, h in _qkv(cfg):
        out[f"{o}.in_proj_weight"] = torch.cat([hf[f"{h}.{n}_proj.weight"] for n in "qkv"], 0)
        out[f"{o}.in_proj_bias"] = torch.cat([hf[f"{h}.{n}_proj.bias"] for n in "qkv"], 0)
    out["text_projection"] = hf["text_projection.weight"].t()
    out["visual.proj"] = hf["visual_projection.weight"].t()
    return {k: v.detach().clone().contiguous() for k, v in out.items()}
