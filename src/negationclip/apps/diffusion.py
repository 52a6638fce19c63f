"""NegationCLIP text encoders in diffusers pipelines (Stable Diffusion 1.x/2.x, SDXL, ...).

The paper's claim is that a negation-aware text encoder is a drop-in part: only the text
encoder (and, when the vocabulary differs, the tokenizer) of the pipeline changes; UNet, VAE
and scheduler stay bit-identical, so any change in the images comes from the text side.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..utils import JsonlWriter, NegationClipError, atomic_write_bytes, load_json, progress, read_jsonl

# What a UNet's cross-attention width usually means, for error messages only.
_KNOWN_WIDTHS = {
    512: "a ViT-B CLIP's (B/32, B/16)",
    768: "CLIP ViT-L/14's, as in Stable Diffusion 1.x",
    1024: "OpenCLIP ViT-H/14's, as in Stable Diffusion 2.x",
    1280: "OpenCLIP ViT-bigG/14's, as in SDXL's second encoder",
    2048: "SDXL's two encoders concatenated (768 + 1280)",
}


def describe_width(width: int) -> str:
    what = _KNOWN_WIDTHS.get(int(width))
    return f"width {width}" + (f", {what}" if what else "")


# --- text encoder sources -------------------------------------------------------------------

@dataclass
class TextEncoder:
    """A CLIP text tower ready to go into a pipeline, with its tokenizer and where it came from."""

    model: Any                     # CLIPTextModel or CLIPTextModelWithProjection
    tokenizer: Any                 # Hugging Face CLIPTokenizer(Fast)
    provenance: dict = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)


def text_tower(model):
    """The CLIP text transformer inside a text model (transformers 5 flattened ``CLIPTextModel``
    into the transformer itself; ``CLIPTextModelWithProjection`` still wraps one)."""
    return getattr(model, "text_model", model)


def _is_text_encoder_folder(path: Path) -> bool:
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.is_file()):
        return False
    data = load_json(cfg)
    return isinstance(data, dict) and data.get("model_type") == "clip_text_model"


def text_encoder_from_clip_model(clip_model, tokenizer, *, with_projection: bool = False,
                                 provenance: dict | None = None) -> TextEncoder:
    """Cut the text tower (and, if asked, its projection) out of a transformers ``CLIPModel``."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tcfg = clip_model.config.text_config.__class__.from_dict(clip_model.config.text_config.to_dict())
    tcfg.projection_dim = int(clip_model.config.projection_dim)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    param = next(clip_model.parameters())
    model = cls(tcfg).to(dtype=param.dtype)
    text_tower(model).load_state_dict(text_tower(clip_model.text_model).state_dict(), strict=True)
    if with_projection:
        model.text_projection.load_state_dict(clip_model.text_projection.state_dict(), strict=True)
    model.eval()
    return TextEncoder(model, tokenizer, dict(provenance or {}))


def load_text_encoder(source: str | os.PathLike, *, with_projection: bool = False,
                      dtype: torch.dtype = torch.float32, act: str | None = None) -> TextEncoder:
    """Read a text encoder from a CLIPTextModel folder or from any source ``load_clip`` reads."""
    path = Path(source)
    if _is_text_encoder_folder(path):
        from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

        cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
        quiet_hf_progress()
        try:
            model, info = cls.from_pretrained(str(path), dtype=dtype, local_files_only=True,
                                              output_loading_info=True)
        except (OSError, ValueError) as e:
            raise NegationClipError(f"{path}: cannot read the text encoder: {e}") from None
        missing = list(info.get("missing_keys") or []) + list(info.get("mismatched_keys") or [])
        if missing:
            # from_pretrained would silently initialise these at random: refuse instead
            hint = (" (this pipeline slot needs a text projection: pass the full CLIP checkpoint)"
                    if any("text_projection" in str(k) for k in missing) else "")
            raise NegationClipError(f"{path}: the text encoder lacks {len(missing)} weight(s), e.g. "
                                    f"{', '.join(str(k) for k in missing[:3])}{hint}")
        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError):
            from ..models.tokenizer import ClipTokenizer

            tok = ClipTokenizer().hf  # the folder has no tokenizer: CLIP's own vocabulary
        model.eval()
        return TextEncoder(model, tok, {"source": str(path), "format": "text-encoder-folder"})
    from ..models import load_clip

    bundle = load_clip(str(source), dtype=dtype, act=act)
    prov = dict(getattr(bundle, "provenance", {}) or {})
    prov.setdefault("source", str(source))
    return text_encoder_from_clip_model(bundle.model, bundle.tokenizer.hf,
                                        with_projection=with_projection, provenance=prov)


# --- pipelines -------------------------------------------------------------------------------

def quiet_hf_progress() -> None:
    """Follow NEGATIONCLIP_NO_PROGRESS for diffusers/transformers' own loading bars too."""
    from ..utils.progress import progress_disabled

    if progress_disabled():
        import diffusers.utils.logging as dl
        import transformers.utils.logging as tl

        dl.disable_progress_bar()
        tl.disable_progress_bar()


def load_pipeline(source: str | os.PathLike, *, device: str = "cpu",
                  dtype: torch.dtype = torch.float32, safety_checker: bool = True):
    """Load a diffusers pipeline from a local folder or the local Hugging Face cache, offline.

    ``safety_checker=False`` drops a safety checker the folder ships; none is ever downloaded.
    """
    from diffusers import DiffusionPipeline

    path = Path(source)
    from diffusers.utils import deprecation_utils

    # diffusers renamed torch_dtype to dtype (and warns on the old name) in late 0.3x releases
    dtype_key = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    kwargs: dict[str, Any] = {dtype_key: dtype, "trust_remote_code": False}
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise NegationClipError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
        index = load_json(path / "model_index.json")
        has_checker = isinstance(index, dict) and index.get("safety_checker") not in (None, [None, None])
    else:
        s = str(source)
        if path.exists() or s.startswith(("/", ".", "~")) or s.count("/") > 1:
            raise NegationClipError(f"{source}: not a diffusers pipeline folder (and not a "
                                    "Hugging Face id)")
        kwargs["local_files_only"] = True
        has_checker = True
    if not safety_checker and has_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    quiet_hf_progress()
    try:
        pipe = DiffusionPipeline.from_pretrained(str(source), **kwargs)
    except NegationClipError:
        raise
    except (OSError, ValueError, EnvironmentError) as e:
        where = "folder" if path.is_dir() else "Hugging Face id (offline: only the local cache is read)"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NegationClipError(f"{source}: cannot load the diffusers pipeline from this {where}: "
                                f"{first}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def pipeline_text_slots(pipe) -> list[str]:
    """The pipeline's CLIP text-encoder components (``text_encoder``, ``text_encoder_2``...)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    slots = []
    for name, comp in pipe.components.items():
        if name.startswith("text_encoder") and isinstance(comp, (CLIPTextModel, CLIPTextModelWithProjection)):
            slots.append(name)
    return sorted(slots)


def _expected_width(pipe, slot: str) -> tuple[int, str]:
    """The width the pipeline's consumer of ``slot`` needs, and how we know."""
    old = getattr(pipe, slot)
    unet = getattr(pipe, "unet", None)
    cross = getattr(getattr(unet, "config", None), "cross_attention_dim", None)
    slots = pipeline_text_slots(pipe)
    if isinstance(cross, int) and len(slots) == 1:
        return cross, "its UNet cross-attends to"
    return int(old.config.hidden_size), f"its {slot} has"


@dataclass
class SwapReport:
    slot: str
    width: int
    layers_source: int
    layers_used: int
    tokenizer: str                 # "kept" (same vocabulary) or "replaced"
    source: dict

    def lines(self) -> list[str]:
        out = [f"{self.slot}: NegationCLIP text encoder ({describe_width(self.width)}) "
               f"from {self.source.get('source', '?')}"]
        if self.layers_used != self.layers_source:
            out.append(f"  used the first {self.layers_used} of its {self.layers_source} layers, "
                       "as the pipeline's own encoder does (penultimate-layer conditioning)")
        out.append(f"  tokenizer {self.tokenizer}")
        return out


def _same_vocab(a, b) -> bool:
    try:
        return a.get_vocab() == b.get_vocab()
    except Exception:  # tokenizers without get_vocab: be safe and replace
        return False


def swap_text_encoder(pipe, encoder: TextEncoder, *, slot: str = "text_encoder",
                      tokenizer: str = "auto") -> SwapReport:
    """Put ``encoder`` into ``pipe`` in place of ``slot``; refuse anything that does not fit.

    ``tokenizer``: "auto" keeps the pipeline's tokenizer when the vocabularies are identical
    (its padding convention is what the UNet was trained with) and replaces it otherwise;
    "keep" / "replace" force one or the other.
    """
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if tokenizer not in ("auto", "keep", "replace"):
        raise NegationClipError(f"tokenizer must be auto, keep or replace, not {tokenizer!r}")
    slots = pipeline_text_slots(pipe)
    if slot not in slots:
        raise NegationClipError(
            f"{type(pipe).__name__} has no CLIP text encoder called {slot!r} "
            f"(it has: {', '.join(slots) or 'none'})")
    old = getattr(pipe, slot)
    src = encoder.provenance.get("source", "the given checkpoint")
    want, how = _expected_width(pipe, slot)
    if encoder.width != want:
        raise NegationClipError(
            f"{src}: a text encoder of {describe_width(encoder.width)} does not fit "
            f"{type(pipe).__name__}: {how} {describe_width(want)}; use a NegationCLIP "
            "fine-tuned from the CLIP the pipeline was built on")
    oc, nc = old.config, encoder.model.config
    for key in ("num_attention_heads", "intermediate_size", "max_position_embeddings"):
        if getattr(oc, key) != getattr(nc, key):
            raise NegationClipError(
                f"{src}: text encoder {key}={getattr(nc, key)} but the pipeline's {slot} has "
                f"{getattr(oc, key)}; this is a different CLIP architecture")
    if nc.num_hidden_layers < oc.num_hidden_layers:
        raise NegationClipError(
            f"{src}: text encoder has {nc.num_hidden_layers} layers, the pipeline's {slot} "
            f"has {oc.num_hidden_layers}; this is a different CLIP architecture")
    needs_proj = isinstance(old, CLIPTextModelWithProjection)
    model = encoder.model
    if needs_proj and not isinstance(model, CLIPTextModelWithProjection):
        raise NegationClipError(f"{src}: {slot} needs a text projection (CLIPTextModelWithProjection); "
                                "load it with with_projection=True from a full CLIP checkpoint")
    if needs_proj and oc.projection_dim != nc.projection_dim:
        raise NegationClipError(f"{src}: text projection dim {nc.projection_dim}, the pipeline's "
                                f"{slot} needs {oc.projection_dim}")
    if not needs_proj and isinstance(model, CLIPTextModelWithProjection):
        model = text_encoder_from_clip_like(model, CLIPTextModel)
    layers_source = int(nc.num_hidden_layers)
    if nc.num_hidden_layers > oc.num_hidden_layers:
        # SD 2.x ships OpenCLIP ViT-H's text tower with its last block removed: conditioning
        # is the penultimate layer (after the final layer norm). Do the same to ours.
        model = _truncate_layers(model, int(oc.num_hidden_layers))
    tok_old = getattr(pipe, slot.replace("text_encoder", "tokenizer"), None)
    replace = tokenizer == "replace" or (tokenizer == "auto" and
                                         (tok_old is None or not _same_vocab(tok_old, encoder.tokenizer)))
    if replace:
        if len(encoder.tokenizer) > model.config.vocab_size:
            raise NegationClipError(f"{src}: tokenizer has {len(encoder.tokenizer)} tokens but the "
                                    f"encoder embeds only {model.config.vocab_size}")
        new_tok = encoder.tokenizer
        new_tok.model_max_length = int(model.config.max_position_embeddings)
    else:
        if tok_old is not None and len(tok_old) > model.config.vocab_size:
            raise NegationClipError(f"{src}: the pipeline's tokenizer has {len(tok_old)} tokens but "
                                    f"the encoder embeds only {model.config.vocab_size}")
    ref = next(old.parameters())
    model = model.to(device=ref.device, dtype=ref.dtype).eval()
    model.requires_grad_(False)
    mods = {slot: model}
    if replace:
        mods[slot.replace("text_encoder", "tokenizer")] = new_tok
    pipe.register_modules(**mods)
    return SwapReport(slot=slot, width=encoder.width, layers_source=layers_source,
                      layers_used=int(model.config.num_hidden_layers),
                      tokenizer="replaced" if replace else "kept (same vocabulary)",
                      source=dict(encoder.provenance))


def text_encoder_from_clip_like(model, cls):
    """Re-wrap a text tower as ``cls`` (drops a projection that the slot does not use)."""
    cfg = model.config.__class__.from_dict(model.config.to_dict())
    new = cls(cfg).to(dtype=next(model.parameters()).dtype)
    text_tower(new).load_state_dict(text_tower(model).state_dict(), strict=True)
    return new


def _truncate_layers(model, n: int):
    cfg = model.config.__class__.from_dict(model.config.to_dict())
    cfg.num_hidden_layers = n
    new = type(model)(cfg).to(dtype=next(model.parameters()).dtype)
    layer = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.")
    state = {k: v for k, v in model.state_dict().items()
             if not ((m := layer.search(k)) and int(m.group(1)) >= n)}
    new.load_state_dict(state, strict=True)
    return new


# --- prompts and generation ---------------------------------------------------------------

@dataclass
class Prompt:
    id: str
    prompt: str
    present: str | None = None     # X of "X with no Y" (the negation score's control)
    absent: str | None = None      # Y of "X with no Y"


def read_prompts(path: str | os.PathLike) -> list[Prompt]:
    """Prompts from a .txt file (one a line, '#' comments), a .jsonl file
    (``{"prompt": ..., "id"?: ..., "present"?: X, "absent"?: Y}`` a line) or a .json list of
    such objects (the shipped set, ``negation_prompt_set()``, is one)."""
    path = Path(path)
    if not path.is_file():
        raise NegationClipError(f"{path}: prompt file not found")
    out: list[Prompt] = []
    seen: set[str] = set()
    if path.suffix in (".jsonl", ".json"):
        if path.suffix == ".json":
            data = load_json(path)
            data = data.get("prompts") if isinstance(data, dict) else data
            if not isinstance(data, list):
                raise NegationClipError(f"{path}: expected a list of prompt objects "
                                        "(or {\"prompts\": [...]})")
            rows = [(f"record {i}", rec) for i, rec in enumerate(data)]
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise NegationClipError(f"{path}: not UTF-8 text") from None
            rows = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rows.append((str(lineno), json.loads(line)))
                except json.JSONDecodeError as e:
                    raise NegationClipError(f"{path}:{lineno}: malformed JSON: {e.msg}") from None
        for lineno, rec in rows:
            if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str) or not rec["prompt"].strip():
                raise NegationClipError(f"{path}:{lineno}: each prompt needs a non-empty \"prompt\" string")
            pid = str(rec.get("id", f"p{len(out):04d}"))
            for k in ("present", "absent"):
                if rec.get(k) is not None and not isinstance(rec[k], str):
                    raise NegationClipError(f"{path}:{lineno}: \"{k}\" must be a string")
            p = Prompt(pid, rec["prompt"].strip(), rec.get("present"), rec.get("absent"))
            if p.id in seen:
                raise NegationClipError(f"{path}:{lineno}: duplicate prompt id {p.id!r}")
            seen.add(p.id)
            out.append(p)
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise NegationClipError(f"{path}: not UTF-8 text") from None
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(Prompt(f"p{len(out):04d}", line))
    if not out:
        raise NegationClipError(f"{path}: no prompts")
    return out


@dataclass
class GenerationConfig:
    seeds: Sequence[int] = (0,)
    steps: int = 30
    guidance_scale: float = 7.5
    height: int | None = None
    width: int | None = None
    batch_size: int = 4
    negative_prompt: str | None = None


MANIFEST = "manifest.jsonl"


def negation_prompt_set() -> Path:
    """The shipped 40 "X with no Y" prompts (``present`` = X, ``absent`` = Y)."""
    return Path(__file__).resolve().parent / "data" / "negation_prompts.json"


def _image_name(p: Prompt, seed: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in p.id)[:60]
    return f"images/{safe}_s{seed}.png"


def finished_images(out_dir: str | os.PathLike, prompts: Sequence[Prompt], *,
                    repair: bool = False) -> dict[tuple[str, int], dict]:
    """Manifest records whose PNG exists and whose prompt text is still the prompt of that id
    (an edited prompt file regenerates the edited prompts; the latest record wins)."""
    out = Path(out_dir)
    text = {p.id: p.prompt for p in prompts}
    done = {}
    for r in read_jsonl(out / MANIFEST, repair=repair):
        key = (r["id"], int(r["seed"]))
        if text.get(r["id"]) == r.get("prompt") and (out / r.get("file", "")).is_file():
            done[key] = r
        else:
            done.pop(key, None)
    return done


def generate(pipe, prompts: Sequence[Prompt], out_dir: str | os.PathLike,
             config: GenerationConfig | None = None, *, label: str = "") -> list[dict]:
    """Generate one image per (prompt, seed) into ``out_dir``; resumable.

    Each image's noise comes from its own ``torch.Generator(seed)``, so an image does not
    depend on batch size or on which other prompts ran: the same (prompt, seed) under two
    text encoders starts from the same latent. ``manifest.jsonl`` has one record per image,
    written after the PNG, so a killed run resumes without losing or duplicating records.
    """
    import io

    cfg = config or GenerationConfig()
    if cfg.steps < 1 or cfg.batch_size < 1 or not cfg.seeds:
        raise NegationClipError("generation needs steps >= 1, batch size >= 1 and at least one seed")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    done = finished_images(out, prompts, repair=True)
    todo = [(p, int(s)) for p in prompts for s in cfg.seeds if (p.id, int(s)) not in done]
    gen_device = "cpu" if pipe.device.type == "mps" else pipe.device
    kw: dict[str, Any] = {"num_inference_steps": cfg.steps, "guidance_scale": cfg.guidance_scale}
    if cfg.height:
        kw["height"] = cfg.height
    if cfg.width:
        kw["width"] = cfg.width
    with JsonlWriter(out / MANIFEST) as w, progress(total=len(todo), desc=f"t2i {label}".strip(),
                                                     unit="img") as bar:
        for i in range(0, len(todo), cfg.batch_size):
            chunk = todo[i:i + cfg.batch_size]
            gens = [torch.Generator(device=gen_device).manual_seed(s) for _, s in chunk]
            extra = dict(kw)
            if cfg.negative_prompt:
                extra["negative_prompt"] = [cfg.negative_prompt] * len(chunk)
            with torch.inference_mode():
                res = pipe(prompt=[p.prompt for p, _ in chunk], generator=gens, **extra)
            nsfw = getattr(res, "nsfw_content_detected", None) or [None] * len(chunk)
            for (p, s), img, flag in zip(chunk, res.images, nsfw):
                name = _image_name(p, s)
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                atomic_write_bytes(out / name, buf.getvalue())
                rec = {"id": p.id, "seed": s, "prompt": p.prompt, "file": name,
                       "present": p.present, "absent": p.absent,
                       "nsfw_flagged": None if flag is None else bool(flag)}
                w.write(rec)
                done[(p.id, s)] = rec
            bar.update(len(chunk))
    return [done[(p.id, int(s))] for p in prompts for s in cfg.seeds]


# --- contact sheet --------------------------------------------------------------------------

def contact_sheet(runs: dict[str, str | os.PathLike], path: str | os.PathLike, *,
                  thumb: int = 192, max_rows: int | None = None) -> Path:
    """One PNG: a row per prompt, a column per (run, seed); runs are generation folders
    (e.g. {"original": ..., "negationclip": ...}) so the same seed sits side by side."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    if not runs:
        raise NegationClipError("contact sheet: no runs given")
    tables: dict[str, dict[tuple[str, int], dict]] = {}
    order: list[str] = []
    seeds: list[int] = []
    prompts: dict[str, str] = {}
    for label, folder in runs.items():
        recs = read_jsonl(Path(folder) / MANIFEST)
        if not recs:
            raise NegationClipError(f"{Path(folder) / MANIFEST}: no generated images")
        tables[label] = {(r["id"], int(r["seed"])): r for r in recs}
        for r in recs:
            if r["id"] not in prompts:
                order.append(r["id"])
                prompts[r["id"]] = r["prompt"]
            if int(r["seed"]) not in seeds:
                seeds.append(int(r["seed"]))
    if max_rows:
        order = order[:max_rows]
    from ..models.transform import open_image as _open_image

    font = ImageFont.load_default()
    cap_h, head_h, pad = 28, 18, 4
    cols = [(label, s) for label in runs for s in seeds]
    W = len(cols) * (thumb + pad) + pad
    H = head_h + len(order) * (thumb + cap_h + pad) + pad
    sheet = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (label, s) in enumerate(cols):
        draw.text((pad + c * (thumb + pad), 3), f"{label} seed {s}"[:thumb // 6], fill="black", font=font)
    for r, pid in enumerate(order):
        y = head_h + r * (thumb + cap_h + pad)
        draw.text((pad, y + thumb + 2), prompts[pid][: max(10, W // 6)], fill="black", font=font)
        for c, (label, s) in enumerate(cols):
            rec = tables[label].get((pid, s))
            x = pad + c * (thumb + pad)
            if rec is None or not (Path(runs[label]) / rec["file"]).is_file():
                draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], outline="red")
                draw.text((x + 4, y + 4), "missing", fill="red", font=font)
                continue
            try:
                im = _open_image(Path(runs[label]) / rec["file"])
            except NegationClipError:
                draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], outline="red")
                draw.text((x + 4, y + 4), "unreadable", fill="red", font=font)
                continue
            sheet.paste(im.resize((thumb, thumb)), (x, y))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
