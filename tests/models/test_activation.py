"""The MLP activation is read from the checkpoint (or --act), never silently assumed."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from negationclip.models import encode_images, encode_text, load_clip, save
from negationclip.utils import NegationClipError
from tests.models.test_convert import TEXTS, fake_images, make_openai_model, reference_embeddings


def _with_act(model, act: str):
    """OpenAI's model with its QuickGELU swapped for nn.GELU (open_clip's default) if asked."""
    if act == "gelu":
        for block in list(model.transformer.resblocks) + list(model.visual.transformer.resblocks):
            block.mlp.gelu = torch.nn.GELU()
    return model


def _ref_text(model):
    from negationclip.models import ClipTokenizer
    with torch.no_grad():
        return torch.nn.functional.normalize(model.encode_text(ClipTokenizer().tokenize_openai(TEXTS)), dim=-1)


def _open_clip_folder(tmp_path, name, sd, quick_gelu):
    folder = tmp_path / name
    folder.mkdir()
    torch.save(sd, folder / "open_clip_pytorch_model.bin")
    cfg = {"model_cfg": {"embed_dim": 64, "vision_cfg": {}, "text_cfg": {}},
           "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                              "std": [0.26862954, 0.26130258, 0.27577711]}}
    if quick_gelu is not None:
        cfg["model_cfg"]["quick_gelu"] = quick_gelu
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("quick_gelu,act", [(True, "quick_gelu"), (False, "gelu"), (None, "gelu")])
def test_open_clip_folder_reads_its_activation_and_matches_the_reference(tmp_path, quick_gelu, act, capsys):
    m = make_openai_model(seed=3)
    folder = _open_clip_folder(tmp_path, "oc", m.state_dict(), quick_gelu)
    bundle = load_clip(folder)
    assert bundle.provenance["act"] == act and "open_clip_config.json" in bundle.provenance["act_origin"]
    assert "note:" not in capsys.readouterr().err
    ref = _with_act(m, act)
    images = fake_images()
    ref_t, ref_i = reference_embeddings(ref, bundle, TEXTS, images)
    assert torch.allclose(encode_text(bundle, TEXTS), ref_t, atol=1e-5)
    assert torch.allclose(encode_images(bundle, images), ref_i, atol=1e-5)
    # the other activation gives other embeddings: the test would see a wrong choice
    other = _with_act(make_openai_model(seed=3), "gelu" if act == "quick_gelu" else "quick_gelu")
    wrong_t, _ = reference_embeddings(other, bundle, TEXTS, images)
    assert not torch.allclose(encode_text(bundle, TEXTS), wrong_t, atol=1e-4)


def test_bare_state_dict_assumes_quick_gelu_with_a_note_and_act_overrides(tmp_path, capsys):
    m = make_openai_model(seed=4)
    path = tmp_path / "model.pth"
    torch.save(m.state_dict(), path)
    b = load_clip(path)
    err = capsys.readouterr().err
    assert "note:" in err and "assuming quick_gelu" in err and len(err.strip().splitlines()) == 1
    assert b.provenance["act"] == "quick_gelu" and b.provenance["act_origin"].startswith("assumed")
    g = load_clip(path, act="gelu")
    assert "note:" not in capsys.readouterr().err
    assert g.provenance["act"] == "gelu" and g.provenance["act_origin"] == "option"
    ref_t = _ref_text(_with_act(m, "gelu"))
    assert torch.allclose(encode_text(g, TEXTS), ref_t, atol=1e-5)
    # a -quickgelu name tells
    named = tmp_path / "ViT-B-32-quickgelu.pt"
    shutil.copy(path, named)
    assert load_clip(named).provenance["act"] == "quick_gelu"
    assert "note:" not in capsys.readouterr().err
    with pytest.raises(NegationClipError, match="unknown activation"):
        load_clip(path, act="relu")


def test_hf_folder_keeps_its_hidden_act_and_the_option_overrides_it(tmp_path, capsys):
    m = make_openai_model(seed=5)
    path = tmp_path / "m.pth"
    torch.save(m.state_dict(), path)
    save(load_clip(path, act="gelu"), tmp_path / "hf")
    b = load_clip(tmp_path / "hf")
    assert b.provenance["act"] == "gelu" and b.provenance["act_origin"] == "config.json hidden_act"
    ref_t = _ref_text(_with_act(m, "gelu"))
    assert torch.allclose(encode_text(b, TEXTS), ref_t, atol=1e-5)
    q = load_clip(tmp_path / "hf", act="quick_gelu")
    assert "using act=quick_gelu" in capsys.readouterr().err
    ref_q = _ref_text(make_openai_model(seed=5))
    assert torch.allclose(encode_text(q, TEXTS), ref_q, atol=1e-5)
    assert q.model.config.text_config.hidden_act == "quick_gelu"


def test_provenance_records_the_preprocessing_rule(tmp_path):
    m = make_openai_model(seed=6)
    path = tmp_path / "m.pth"
    torch.save(m.state_dict(), path)
    b = load_clip(path, act="quick_gelu")
    assert b.provenance["preprocessing"]["rule"] == "openai"
    save(b, tmp_path / "hf")  # a negationclip folder keeps the OpenAI rule ...
    assert load_clip(tmp_path / "hf").transform.rule == "openai"
    cfg = json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())
    cfg.pop("negationclip_rule")  # ... a plain Hugging Face folder follows CLIPImageProcessor
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps(cfg))
    hf = load_clip(tmp_path / "hf")
    assert hf.transform.rule == "hf" and hf.provenance["preprocessing"]["rule"] == "hf"
