"""open_clip-layout SigLIP (``ViT-B-16-SigLIP/webli``, ``hf-hub:timm/ViT-B-16-SigLIP``) as a
Hugging Face ``SiglipModel``.

open_clip builds SigLIP from a timm ``VisionTransformer`` with a MAP (latent-query attention
pool) head, saved as ``visual.trunk.*``, and its own ``TextTransformer`` (``text.*``:
bidirectional, pooling the last position, a biased projection), with ``logit_scale`` and
``logit_bias``. That is ``SiglipModel``'s architecture, so the weights map one to one: the
fused ``qkv`` / ``in_proj`` split into q/k/v, the MAP head's ``q`` and ``kv`` fuse into the
head's ``in_proj``. The architecture comes from the tensors' shapes; what shapes cannot tell
(head counts, activations, norm eps) from ``open_clip_config.json`` (the timm name's size for
the vision heads unless ``timm_model_kwargs.num_heads`` says). Activations are open_clip's, not
big_vision's: timm's towers use exact GELU; the text tower GELU (tanh-approximated where
``act_kwargs`` says, as SigLIP 2 configs do) or QuickGELU, so the converted model reproduces
open_clip's forward. Every source tensor is used and every target tensor filled, or it is a
clear error: anything open_clip could add that ``SiglipModel`` lacks (layer scale, q/k norm,
a class token, a vision projection) refuses rather than loading wrongly.

The tokenizer is the Hugging Face one ``text_cfg.hf_tokenizer_name`` names (T5 SentencePiece
for SigLIP, Gemma for SigLIP 2), read from a local folder or the local hub cache, with open_clip's
cleaning (``tokenizer_kwargs.clean``, ``canonicalize`` for SigLIP), padding to the context
length and no attention mask (open_clip's tower attends to padding). Images: open_clip's
SigLIP preprocessing (``preprocess_cfg``; its defaults: squash-resize bicubic, mean/std 0.5)
as a ``SiglipImageProcessor``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from ..utils.errors import NegationClipError

#: timm ViT sizes -> attention heads (``vit_<size>_patch<p>_siglip_<res>``)
TIMM_HEADS = {"tiny": 3, "small": 6, "medium": 8, "base": 12, "large": 16, "so150m": 16,
              "so400m": 16, "giantopt": 16}
_TIMM_ACTS = {None: "gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
#: text_cfg keys that change the math and that ``SiglipModel`` has no counterpart for
_TEXT_REFUSE = {"embed_cls": False, "ls_init_value": None, "qk_norm": False,
                "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
                "scale_attn": False, "scale_fc": False, "final_ln_after_pool": False,
                "hf_model_name": None, "use_pad_mask": False, "block_type": None}


def model_cfg(cfg: dict) -> dict:
    mc = cfg.get("model_cfg", cfg) if isinstance(cfg, dict) else {}
    return mc if isinstance(mc, dict) else {}


def is_open_clip_siglip(cfg: dict) -> bool:
    """A timm vision tower with a MAP head and open_clip's own text tower: SigLIP's layout."""
    mc = model_cfg(cfg)
    vis = mc.get("vision_cfg") or {}
    return bool(vis.get("timm_model_name")) and vis.get("timm_pool") == "map"


def _refuse(where, what: str):
    raise NegationClipError(f"{where}: open_clip SigLIP with {what} has no Hugging Face "
                            "SiglipModel counterpart; not converted")


def _count(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for k in sd for m in [pat.match(k)] if m})


def _vision_heads(vis: dict, width: int, where) -> int:
    kw = vis.get("timm_model_kwargs") or {}
    if "num_heads" in kw:
        return int(kw["num_heads"])
    name = str(vis.get("timm_model_name"))
    m = re.match(r"^vit_([a-z0-9]+?)_patch\d+", name)
    if m is None or m.group(1) not in TIMM_HEADS or width % TIMM_HEADS[m.group(1)]:
        raise NegationClipError(f"{where}: cannot tell the attention heads of timm model {name!r} "
                                f"(width {width}); known sizes: {', '.join(TIMM_HEADS)}; or set "
                                "vision_cfg.timm_model_kwargs.num_heads")
    return TIMM_HEADS[m.group(1)]


def _text_act(mc: dict, txt: dict, where) -> str:
    if mc.get("quick_gelu"):
        return "quick_gelu"
    kw = txt.get("act_kwargs") or {}
    if not kw:
        return "gelu"
    if kw == {"approximate": "tanh"}:
        return "gelu_pytorch_tanh"
    raise NegationClipError(f"{where}: text_cfg.act_kwargs={kw} is not supported "
                            "(GELU, GELU tanh or QuickGELU)")


def siglip_config(sd: dict, cfg: dict, where, token_ids: dict | None = None):
    """A ``SiglipConfig`` for an open_clip SigLIP state dict (shapes) and its config;
    ``token_ids``: the tokenizer's pad / bos / eos ids (recorded, not used by the forward)."""
    from transformers import SiglipConfig

    mc = model_cfg(cfg)
    vis, txt = mc.get("vision_cfg") or {}, mc.get("text_cfg") or {}
    name = str(vis.get("timm_model_name"))
    if name.startswith("naflexvit"):
        _refuse(where, f"a NaFlex timm tower ({name})")
    if vis.get("timm_proj", "linear") not in ("none", "", None) or any(
            k.startswith("visual.head.") for k in sd):
        _refuse(where, f"a vision projection (timm_proj={vis.get('timm_proj', 'linear')!r})")
    for k, ok in _TEXT_REFUSE.items():
        if txt.get(k, ok) != ok:
            _refuse(where, f"text_cfg.{k}={txt[k]!r}")
    if txt.get("text_arch", "clip") != "clip":
        _refuse(where, f"text_cfg.text_arch={txt['text_arch']!r}")
    if txt.get("pool_type", "argmax") != "last" or not txt.get("no_causal_mask", False):
        _refuse(where, f"text pooling {txt.get('pool_type', 'argmax')!r} / causal mask "
                       f"(SiglipModel pools the last position, bidirectionally)")
    kw = vis.get("timm_model_kwargs") or {}
    bad = sorted(set(kw) - {"num_heads", "embed_dim", "depth", "mlp_ratio", "patch_size",
                            "img_size", "act_layer", "class_token", "global_pool"})
    if bad or kw.get("class_token") or kw.get("global_pool", "map") != "map":
        _refuse(where, f"timm_model_kwargs {kw}")
    if kw.get("act_layer") not in _TIMM_ACTS:
        _refuse(where, f"timm act_layer {kw.get('act_layer')!r}")
    try:
        pos = sd["visual.trunk.pos_embed"]
        patch = sd["visual.trunk.patch_embed.proj.weight"]
        tok = sd["text.token_embedding.weight"]
        tpos = sd["text.positional_embedding"]
        fc1 = sd["visual.trunk.blocks.0.mlp.fc1.weight"]
        tfc = sd["text.transformer.resblocks.0.mlp.c_fc.weight"]
        proj = sd.get("text.text_projection.weight", sd.get("text.text_projection"))
    except KeyError as e:
        raise NegationClipError(f"{where}: not an open_clip SigLIP state dict (no {e.args[0]})") from None
    if proj is None:
        _refuse(where, "no text projection (proj_type 'none')")
    width, n_pos = int(pos.shape[-1]), int(pos.shape[-2])
    p = int(patch.shape[-1])
    grid = math.isqrt(n_pos)
    if grid * grid != n_pos or patch.shape[-2] != p:
        _refuse(where, f"{n_pos} position embeddings (not a square grid of patches: a class "
                       "token or a non-square image)")
    image_size = grid * p
    want = vis.get("image_size", image_size)
    if (want if isinstance(want, int) else tuple(want)) not in (image_size, (image_size, image_size)):
        raise NegationClipError(f"{where}: vision_cfg.image_size={want} but the weights hold a "
                                f"{grid}x{grid} grid of {p}-pixel patches ({image_size})")
    t_width = int(tok.shape[1])
    t_heads = int(txt.get("heads", 8))
    if t_width % t_heads:
        raise NegationClipError(f"{where}: text width {t_width} is not divisible by "
                                f"text_cfg.heads={t_heads}")
    embed = int(proj.shape[0] if proj.dim() == 2 and "text.text_projection.weight" in sd
                else proj.shape[1])
    if embed != width:
        raise NegationClipError(f"{where}: text embeddings ({embed}) and the vision tower "
                                f"({width}) differ; SiglipModel needs one space")
    t_eps = float((txt.get("norm_kwargs") or {}).get("eps", 1e-5))
    return SiglipConfig(
        text_config=dict(vocab_size=int(tok.shape[0]), hidden_size=t_width,
                         intermediate_size=int(tfc.shape[0]), projection_size=embed,
                         num_hidden_layers=_count(sd, "text.transformer.resblocks."),
                         num_attention_heads=t_heads, max_position_embeddings=int(tpos.shape[0]),
                         hidden_act=_text_act(mc, txt, where), layer_norm_eps=t_eps,
                         **(token_ids or {"pad_token_id": None, "bos_token_id": None,
                                          "eos_token_id": None})),
        vision_config=dict(hidden_size=width, intermediate_size=int(fc1.shape[0]),
                           num_hidden_layers=_count(sd, "visual.trunk.blocks."),
                           num_attention_heads=_vision_heads(vis, width, where),
                           num_channels=int(patch.shape[1]), image_size=image_size, patch_size=p,
                           hidden_act=_TIMM_ACTS[kw.get("act_layer")], layer_norm_eps=1e-6))


def _split3(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.chunk(3, dim=0))


def open_clip_siglip_to_hf_state_dict(sd: dict, cfg) -> dict:
    """Map an open_clip SigLIP state dict onto ``SiglipModel`` names (``cfg``: its SiglipConfig)."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(k: str) -> torch.Tensor:
        used.add(k)
        return sd[k]

    def copy(src: str, dst: str) -> None:
        out[dst] = take(src)

    v, vt = "vision_model.", "visual.trunk."
    copy(vt + "patch_embed.proj.weight", v + "embeddings.patch_embedding.weight")
    copy(vt + "patch_embed.proj.bias", v + "embeddings.patch_embedding.bias")
    out[v + "embeddings.position_embedding.weight"] = take(vt + "pos_embed").reshape(
        -1, cfg.vision_config.hidden_size)
    def blocks(src: str, dst: str, n: int, names: tuple[str, ...], fused: str) -> None:
        """Pre-norm blocks: (norm1, norm2, attn out, mlp in, mlp out) renamed, the fused
        q/k/v projection (``fused`` + weight/bias) split in three."""
        hf = ("layer_norm1", "layer_norm2", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")
        for i in range(n):
            s, d = f"{src}{i}.", f"{dst}{i}."
            for a, b in zip(names, hf):
                copy(s + a + ".weight", d + b + ".weight")
                copy(s + a + ".bias", d + b + ".bias")
            for kind in ("weight", "bias"):
                for name, x in zip("qkv", _split3(take(s + fused.format(kind)))):
                    out[d + f"self_attn.{name}_proj.{kind}"] = x

    blocks(vt + "blocks.", v + "encoder.layers.", cfg.vision_config.num_hidden_layers,
           ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2"), "attn.qkv.{}")
    copy(vt + "norm.weight", v + "post_layernorm.weight")
    copy(vt + "norm.bias", v + "post_layernorm.bias")
    h, ah = v + "head.", vt + "attn_pool."
    out[h + "probe"] = take(ah + "latent")
    for kind in ("weight", "bias"):
        out[h + f"attention.in_proj_{kind}"] = torch.cat([take(ah + f"q.{kind}"), take(ah + f"kv.{kind}")])
        for a, b in (("proj", "attention.out_proj"), ("norm", "layernorm"), ("mlp.fc1", "mlp.fc1"),
                     ("mlp.fc2", "mlp.fc2")):
            copy(ah + f"{a}.{kind}", h + f"{b}.{kind}")

    t = "text_model."
    copy("text.token_embedding.weight", t + "embeddings.token_embedding.weight")
    copy("text.positional_embedding", t + "embeddings.position_embedding.weight")
    blocks("text.transformer.resblocks.", t + "encoder.layers.", cfg.text_config.num_hidden_layers,
           ("ln_1", "ln_2", "attn.out_proj", "mlp.c_fc", "mlp.c_proj"), "attn.in_proj_{}")
    copy("text.ln_final.weight", t + "final_layer_norm.weight")
    copy("text.ln_final.bias", t + "final_layer_norm.bias")
    if "text.text_projection.weight" in sd:  # proj_bias: an nn.Linear
        copy("text.text_projection.weight", t + "head.weight")
        copy("text.text_projection.bias", t + "head.bias")
    else:  # a [width, embed] matrix applied as x @ P
        p = take("text.text_projection")
        out[t + "head.weight"] = p.t().contiguous()
        out[t + "head.bias"] = torch.zeros(p.shape[1], dtype=p.dtype)
    out["logit_scale"] = take("logit_scale").reshape(1)
    out["logit_bias"] = take("logit_bias").reshape(1)
    left = sorted(k for k in sd if k not in used and not k.endswith("attn_mask"))
    if left:
        raise NegationClipError(f"{len(left)} tensors have no SiglipModel counterpart (e.g. "
                                f"{', '.join(left[:4])})")
    return out


def open_clip_siglip_to_hf(sd: dict, cfg: dict, where, dtype: torch.dtype = torch.float32,
                           token_ids: dict | None = None):
    """A ``SiglipModel`` (eval mode) holding the open_clip SigLIP weights ``sd``."""
    from transformers import SiglipModel

    conf = siglip_config(sd, cfg, where, token_ids)
    try:
        hf_sd = open_clip_siglip_to_hf_state_dict(sd, conf)
    except KeyError as e:
        raise NegationClipError(f"{where}: not an open_clip SigLIP state dict (no {e.args[0]})") from None
    except NegationClipError as e:
        raise NegationClipError(f"{where}: {e}") from None
    model = SiglipModel(conf)
    try:
        model.load_state_dict(hf_sd, strict=True)
    except RuntimeError as e:
        raise NegationClipError(f"{where}: weights do not fit the inferred SiglipModel "
                                f"({str(e).splitlines()[0][:300]})") from None
    return model.to(dtype).eval()


# --- tokenizer and preprocessing --------------------------------------------------------------

def _tokenizer_folder(name: str, model_folder: Path, where) -> Path:
    """The folder of tokenizer ``name``: a local folder, the hub-cache snapshot of ``ORG/REPO``,
    or the model's own folder when it holds tokenizer files (open_clip's hub repos do)."""
    from . import open_clip_names

    cands = []
    if name:
        local = Path(name).expanduser()
        if local.is_dir():
            return local
        repo = name[len("hf-hub:"):] if name.startswith("hf-hub:") else name
        if repo.count("/") == 1:
            d = open_clip_names.hub_cache_dir() / ("models--" + repo.replace("/", "--"))
            snap = open_clip_names._snapshot(d) if d.is_dir() else None
            if snap is not None and (snap / "tokenizer_config.json").is_file():
                return snap
            cands.append(str(d))
    if (model_folder / "tokenizer_config.json").is_file():
        return model_folder
    raise NegationClipError(
        f"{where}: the SigLIP tokenizer {name or '(none named)'} (text_cfg.hf_tokenizer_name) is not "
        f"in the local Hugging Face cache nor beside the weights (looked in "
        f"{', '.join(cands + [str(model_folder)])}; nothing is downloaded)")


def load_tokenizer(cfg: dict, model_folder: Path, where, context_length: int):
    from transformers import AutoTokenizer

    from .families.siglip import FixedLengthTokenizer
    from .tokenizer import TEXT_CLEANERS

    txt = model_cfg(cfg).get("text_cfg") or {}
    kw = dict(txt.get("tokenizer_kwargs") or {})
    clean = kw.pop("clean", "whitespace")  # open_clip HFTokenizer's default
    if kw or txt.get("tokenizer_mode"):
        _refuse(where, f"tokenizer options {kw or txt.get('tokenizer_mode')}")
    if clean not in TEXT_CLEANERS:
        raise NegationClipError(f"{where}: tokenizer_kwargs.clean={clean!r}; one of "
                                f"{', '.join(TEXT_CLEANERS)}")
    folder = _tokenizer_folder(str(txt.get("hf_tokenizer_name") or ""), model_folder, where)
    try:
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, ImportError) as e:
        raise NegationClipError(f"{folder}: not a loadable tokenizer for {where} "
                                f"({str(e).splitlines()[0][:200]})") from None
    hf.padding_side = "right"  # open_clip forces it: the tower pools the last position
    return FixedLengthTokenizer(hf, context_length, clean=clean, use_mask=False), folder


def image_processor(cfg: dict, image_size: int, where):
    """open_clip's SigLIP preprocessing as a ``SiglipImageProcessor`` (PIL backend where the
    installed transformers has one: open_clip resizes PIL images)."""
    try:
        from transformers import SiglipImageProcessorPil as Processor
    except ImportError:  # older transformers: the one processor is PIL-based
        from transformers import SiglipImageProcessor as Processor
    from PIL import Image

    pre = (cfg or {}).get("preprocess_cfg") or {}
    mode = pre.get("resize_mode", "squash")
    interp = pre.get("interpolation", "bicubic")
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}.get(interp)
    if mode != "squash" or resample is None:
        raise NegationClipError(f"{where}: SigLIP preprocess resize_mode={mode!r}, interpolation="
                                f"{interp!r} is not supported (squash, bicubic or bilinear)")
    size = pre.get("size", image_size)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return Processor(size={"height": int(h), "width": int(w)}, resample=resample,
                     image_mean=list(pre.get("mean", (0.5, 0.5, 0.5))),
                     image_std=list(pre.get("std", (0.5, 0.5, 0.5))), do_convert_rgb=True)


def load_open_clip_siglip(folder: Path, ckpt: Path, cfg: dict, src: str, dtype: torch.dtype,
                          act: str | None):
    """A ``ClipBundle`` of the SigLIP family for an open_clip SigLIP folder."""
    from .convert import read_checkpoint
    from .families.siglip import ProcessorTransform
    from .load import ClipBundle

    where = folder / "open_clip_config.json"
    txt = model_cfg(cfg).get("text_cfg") or {}
    tok, tok_folder = load_tokenizer(cfg, folder, where, int(txt.get("context_length", 77)))
    ids = {f"{k}_token_id": getattr(tok.hf, f"{k}_token_id", None) for k in ("pad", "bos", "eos")}
    model = open_clip_siglip_to_hf(read_checkpoint(ckpt), cfg, where, dtype, ids)
    t_act = model.config.text_config.hidden_act
    if act is not None and act != t_act:
        raise NegationClipError(f"{src}: --act/act={act!r} applies to CLIP checkpoints; this "
                                f"SigLIP uses {t_act} as {where} says")
    if model.config.text_config.max_position_embeddings != tok.context_length:
        raise NegationClipError(f"{where}: text_cfg.context_length={tok.context_length} but the "
                                f"weights hold {model.config.text_config.max_position_embeddings} "
                                "positions")
    proc = image_processor(cfg, model.config.vision_config.image_size, where)
    prov = {"source": src, "format": "open_clip", "family": "siglip", "act": t_act,
            "act_origin": f"{where} (text_cfg; timm towers use GELU)",
            "converted": "open_clip SigLIP (timm ViT + MAP head) -> SiglipModel",
            "tokenizer": str(tok_folder), "text_clean": tok.clean}
    return ClipBundle(model, tok, ProcessorTransform(proc), prov)
