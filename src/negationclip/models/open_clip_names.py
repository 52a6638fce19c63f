"""open_clip-style model names resolved from the local Hugging Face cache.

``ARCH/TAG`` (``ViT-B-32/openai``, ``ViT-B-32/laion2b_s34b_b79k``, ``ViT-B-16-SigLIP/webli``)
names a hub repository as open_clip's pretrained table does; ``hf-hub:ORG/REPO`` names it
directly. The repository's snapshot (``models--ORG--REPO/snapshots/<refs/main>/`` under
``HF_HUB_CACHE``) must hold ``open_clip_config.json`` and ``open_clip_model.safetensors`` or
``open_clip_pytorch_model.bin``; nothing is downloaded. OpenAI-tagged weights use QuickGELU
(open_clip forces it for them); otherwise the config's ``quick_gelu`` decides.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..utils.errors import NegationClipError

OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

#: (architecture, tag) -> (hub repository, QuickGELU) for the commonest open_clip names; the
#: "webli" tag of a SigLIP architecture is ``timm/<architecture>``.
PRETRAINED: dict[tuple[str, str], tuple[str, bool]] = {
    ("ViT-B-32", "openai"): ("timm/vit_base_patch32_clip_224.openai", True),
    ("ViT-B-16", "openai"): ("timm/vit_base_patch16_clip_224.openai", True),
    ("ViT-L-14", "openai"): ("timm/vit_large_patch14_clip_224.openai", True),
    ("ViT-L-14-336", "openai"): ("timm/vit_large_patch14_clip_336.openai", True),
    ("ViT-B-32", "laion2b_s34b_b79k"): ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", False),
    ("ViT-B-32", "datacomp_xl_s13b_b90k"): ("laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K", False),
    ("ViT-B-16", "laion2b_s34b_b88k"): ("laion/CLIP-ViT-B-16-laion2B-s34B-b88K", False),
    ("ViT-L-14", "laion2b_s32b_b82k"): ("laion/CLIP-ViT-L-14-laion2B-s32B-b82K", False),
}
_ARCH = re.compile(r"^(ViT|RN\d|convnext|EVA|coca|xlm|roberta|ViTamin|MobileCLIP|nllb|mt5)[\w.-]*$")


@dataclass
class OpenClipName:
    name: str
    repo: str
    quick_gelu: bool | None  # None: the config says


def hub_cache_dir() -> Path:
    """``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub`` (read each call,
    so a changed environment is honoured)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def parse(name: str) -> OpenClipName | None:
    """The repository an open_clip name points at; None when ``name`` is not one (a plain
    Hugging Face id such as ``openai/clip-vit-base-patch32``)."""
    if name.startswith("hf-hub:"):
        repo = name[len("hf-hub:"):].strip("/")
        if repo.count("/") != 1:
            raise NegationClipError(f"{name}: expected hf-hub:ORG/REPO")
        return OpenClipName(name, repo, None)
    if name.count("/") != 1:
        return None
    arch, tag = name.split("/")
    if (arch, tag) in PRETRAINED:
        repo, q = PRETRAINED[(arch, tag)]
        return OpenClipName(name, repo, q or None)
    if not _ARCH.match(arch) or not re.match(r"^[a-z0-9_]+$", tag):
        return None
    base = arch[: -len("-quickgelu")] if arch.lower().endswith("-quickgelu") else arch
    if tag == "webli" and "siglip" in arch.lower():
        return OpenClipName(name, f"timm/{arch}", None)
    if (base, tag) in PRETRAINED:
        repo, _ = PRETRAINED[(base, tag)]
        return OpenClipName(name, repo, True if base != arch else None)
    known = sorted(f"{a}/{t}" for a, t in PRETRAINED) + ["<SigLIP arch>/webli", "hf-hub:ORG/REPO"]
    raise NegationClipError(f"{name}: unknown open_clip name; known: {', '.join(known)}"
                            f"{cached_summary()}")


def cached_open_clip_repos() -> list[str]:
    """Repositories in the local hub cache whose current snapshot holds open_clip weights."""
    out = []
    root = hub_cache_dir()
    if not root.is_dir():
        return out
    for d in sorted(root.glob("models--*")):
        snap = _snapshot(d)
        if snap is not None and any((snap / f).is_file() for f in OPEN_CLIP_FILES):
            out.append(d.name[len("models--"):].replace("--", "/", 1))
    return out


def cached_summary() -> str:
    repos = cached_open_clip_repos()
    return (f"; open_clip models in the local cache ({hub_cache_dir()}): "
            + (", ".join(f"hf-hub:{r}" for r in repos) if repos else "none"))


def _snapshot(repo_dir: Path) -> Path | None:
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snap = repo_dir / "snapshots" / ref.read_text().strip()
        return snap if snap.is_dir() else None
    snaps = sorted((repo_dir / "snapshots").glob("*")) if (repo_dir / "snapshots").is_dir() else []
    return snaps[-1] if len(snaps) == 1 else None


def resolve(oc: OpenClipName) -> Path:
    """The cached snapshot folder of ``oc`` (with open_clip weights), or a clear error."""
    repo_dir = hub_cache_dir() / ("models--" + oc.repo.replace("/", "--"))
    snap = _snapshot(repo_dir) if repo_dir.is_dir() else None
    if snap is None:
        raise NegationClipError(f"{oc.name}: {oc.repo} is not in the local Hugging Face cache "
                                f"(nothing is downloaded){cached_summary()}")
    if not (snap / "open_clip_config.json").is_file() or not any(
            (snap / f).is_file() for f in OPEN_CLIP_FILES):
        raise NegationClipError(f"{snap}: no open_clip_config.json with {' or '.join(OPEN_CLIP_FILES)}"
                                f"{cached_summary()}")
    return snap


def check_supported(cfg: dict, where: Path) -> None:
    """What is neither open_clip CLIP (OpenAI layout) nor open_clip SigLIP (a timm ViT with a MAP
    head, converted by ``models.open_clip_siglip``) is refused clearly."""
    mc = cfg.get("model_cfg", cfg) if isinstance(cfg, dict) else {}
    vis, txt = mc.get("vision_cfg") or {}, mc.get("text_cfg") or {}
    if "init_logit_bias" in mc or vis.get("timm_model_name") or txt.get("hf_tokenizer_name") \
            or mc.get("custom_text"):
        raise NegationClipError(
            f"{where}/open_clip_config.json: an open_clip-layout model with a timm vision tower "
            f"({vis.get('timm_model_name')}, pool {vis.get('timm_pool')!r}) or a custom text tower "
            "is not supported; supported: open_clip CLIP (OpenAI-layout) weights, open_clip SigLIP "
            "(a timm ViT with a MAP head, timm_pool 'map'), and SigLIP / SigLIP 2 as Hugging Face "
            "folders (SiglipModel / Siglip2Model, e.g. google/siglip-base-patch16-224)")
