"""Training methods end to end on a tiny CLIP: trainable sets, data needs, short runs, vision."""

import json

import pytest
import torch

from negationclip.train import TrainConfig, finetune
from negationclip.train.methods import get_method, recipe_config
from negationclip.train.methods.base import vision_trainable
from negationclip.train.trainable import configure_method_trainable
from negationclip.utils import NegationClipError


def _model():
    from negationclip.models import tiny_clip_bundle
    return tiny_clip_bundle(seed=0, text_width=32, text_layers=4, vision_width=32,
                            vision_layers=4, embed_dim=16)


def _trainable(method, vision=None, **cfg):
    b = _model()
    m = get_method(method)
    c = recipe_config(method, **cfg)
    configure_method_trainable(b.model, m, c, vision or m.train_vision)
    return {n for n, p in b.model.named_parameters() if p.requires_grad}, \
        [n for n, _ in b.model.named_parameters()]


def _text(n):
    return n.startswith(("text_model.", "text_projection."))


def test_trainable_sets_parameter_by_parameter():
    on, names = _trainable("negationclip")
    assert on == {n for n in names if (_text(n) and "final_layer_norm" not in n) or n == "logit_scale"}
    on, _ = _trainable("conclip")   # CoN-CLIP locks model.visual only
    assert on == {n for n in names if _text(n) or n == "logit_scale"}
    on, _ = _trainable("negbench")  # both towers, as released
    assert on == set(names)
    on, _ = _trainable("negbench", vision="none")
    assert on == {n for n in names if _text(n) or n == "logit_scale"}
    on, _ = _trainable("tng")       # fixed temperature: no logit scale
    assert on == {n for n in names if _text(n)}
    on, _ = _trainable("omni")      # embeddings + the first half of the text layers (0-5 of 12)
    assert on == {n for n in names if n.startswith(("text_model.embeddings.token_embedding.",
                                                    "text_model.embeddings.position_embedding.",
                                                    "text_model.encoder.layers.0.",
                                                    "text_model.encoder.layers.1."))}
    on, _ = _trainable("negationclip", vision="last-1")
    vis = {n for n in on if n.startswith(("vision_model.", "visual_projection."))}
    assert vis == {n for n in names if n.startswith(("vision_model.encoder.layers.3.",
                                                     "vision_model.post_layernorm.",
                                                     "visual_projection."))}
    assert vision_trainable("vision_model.encoder.layers.11.mlp.fc1.weight", "last-6", 12)
    assert not vision_trainable("vision_model.encoder.layers.5.mlp.fc1.weight", "last-6", 12)
    with pytest.raises(NegationClipError, match="last-K"):
        TrainConfig(train_vision="last").validate()
    with pytest.raises(NegationClipError, match="only 4 layers"):
        _trainable("negationclip", vision="last-9")


def test_recipes_and_options():
    assert recipe_config("tng").lr == 5e-6 and recipe_config("tng").max_steps == 300
    assert recipe_config("conclip", lr=1e-3).lr == 1e-3
    assert recipe_config("negbench").lr == 1e-8
    with pytest.raises(NegationClipError, match="unknown option"):
        TrainConfig(method="negbench", method_options={"mcq_wieght": 1}).validate()
    with pytest.raises(NegationClipError, match="method must be one of"):
        TrainConfig(method="clip-bnl").validate()
    assert get_method("negbench", {"mcq_weight": "0.5"}).opts["mcq_weight"] == 0.5


def _cfg(tmp_path, method, **kw):
    base = dict(epochs=2, batch_size=4, lr=1e-3, val_fraction=0.25, checkpoint_every_steps=2,
                cache_dir=str(tmp_path / "cache"), seed=7, warmup_steps=0, max_steps=None,
                schedule="constant")
    base.update(kw)
    return recipe_config(method, **base)


def _with_present(recs):
    from .conftest import OBJECTS
    return [dict(r, present_objects=[OBJECTS[(i + 1) % 4], "picture"]) for i, r in enumerate(recs)]


@pytest.mark.parametrize("method,kw", [
    ("conclip", dict(mine_negative_images=True)),
    ("negbench", dict(train_vision="last-1")),
    ("tng", {}),
    ("omni", dict(mine_negative_images=True)),
])
def test_each_method_trains_its_set_and_only_it(dataset, tiny, tmp_path, method, kw):
    root, recs = dataset
    recs = _with_present(recs)
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    res = finetune(tiny, recs, _cfg(tmp_path, method, **kw), tmp_path / method,
                   image_root=root / "images", verbose=False)
    after = dict(res.bundle.model.named_parameters())
    m = get_method(method)
    probe = type(tiny)(tiny.model, tiny.tokenizer, tiny.transform, {})
    cfg = _cfg(tmp_path, method, **kw)
    configure_method_trainable(probe.model, m, cfg, cfg.train_vision or m.train_vision)
    on = {n for n, p in probe.model.named_parameters() if p.requires_grad}
    assert on
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved <= on, sorted(moved - on)[:5]
    assert any(n.startswith("text_model.encoder") for n in moved)
    if method == "negbench":
        assert not any(n.startswith("vision_model.embeddings.") for n in moved)
        assert {"vision_model.post_layernorm.weight", "visual_projection.weight"} <= moved
    log = [json.loads(line) for line in (res.out_dir / "log.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(h.get("loss", h.get("val_loss")))) for h in log)
    assert res.steps == sum(1 for h in log if h["kind"] == "train")


def test_missing_fields_fail_before_any_work(dataset, tiny, tmp_path):
    root, recs = dataset
    no_aff = [{k: v for k, v in r.items() if k != "affirmed"} for r in recs]
    for method in ("conclip", "negbench", "omni"):
        with pytest.raises(NegationClipError, match="needs the record field 'affirmed'.*generate p1"):
            finetune(tiny, no_aff, _cfg(tmp_path, method), tmp_path / f"a{method}",
                     image_root=root / "images", verbose=False)
    with pytest.raises(NegationClipError, match="'negative_image'.*--mine-negative-images"):
        finetune(tiny, recs, _cfg(tmp_path, "conclip"), tmp_path / "b", image_root=root / "images",
                 verbose=False)
    with pytest.raises(NegationClipError, match="present_objects.*--instances"):
        finetune(tiny, recs, _cfg(tmp_path, "omni", mine_negative_images=True), tmp_path / "c",
                 image_root=root / "images", verbose=False)
    bare = [{k: v for k, v in r.items() if k != "object"} for r in recs]
    with pytest.raises(NegationClipError, match="tng needs object names.*--instances"):
        finetune(tiny, bare, _cfg(tmp_path, "tng"), tmp_path / "d", image_root=root / "images",
                 verbose=False)
    assert not (tmp_path / "cache").exists()  # nothing was embedded


def test_cli_method_errors_and_recipe(dataset, tmp_path, capsys):
    from negationclip.cli import main
    from negationclip.models import save, tiny_clip_bundle

    root, _ = dataset
    model = save(tiny_clip_bundle(seed=0, text_width=32, text_layers=1, vision_width=32,
                                  vision_layers=1, embed_dim=16), tmp_path / "m")
    rc = main(["train", "--method", "conclip", "--model", str(model), "--data",
               str(root / "p1.jsonl"), "--images", str(root / "images"), "--out",
               str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2 and "error: method conclip needs the record field 'negative_image'" in \
        capsys.readouterr().err
    rc = main(["train", "--method", "tng", "--model", str(model), "--data", str(root / "p1.jsonl"),
               "--images", str(root / "images"), "--out", str(tmp_path / "tng"), "--cache-dir",
               str(tmp_path / "cache"), "--max-steps", "2", "--batch-size", "4",
               "--method-option", "image_labels=released", "--val-fraction", "0"])
    assert rc == 0
    cfg = json.loads((tmp_path / "tng" / "config.json").read_text())
    assert cfg["method"] == "tng" and cfg["lr"] == 5e-6 and cfg["batch_size"] == 4
    assert cfg["method_options"] == {"image_labels": "released"} and not cfg["train_logit_scale"]


def test_vision_training_encodes_images_every_step(dataset, tiny, tmp_path):
    root, recs = dataset
    cfg = _cfg(tmp_path, "negationclip", train_vision="last-1", val_fraction=0.0, epochs=1)
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    res = finetune(tiny, recs, cfg, tmp_path / "v", image_root=root / "images", verbose=False)
    after = dict(res.bundle.model.named_parameters())
    assert not torch.equal(before["visual_projection.weight"], after["visual_projection.weight"])
    assert torch.equal(before["vision_model.embeddings.patch_embedding.weight"],
                       after["vision_model.embeddings.patch_embedding.weight"])
    # the saved model carries the trained vision weights
    from safetensors.torch import load_file
    saved = load_file(str(res.best_dir / "model.safetensors"))
    assert torch.equal(saved["visual_projection.weight"], after["visual_projection.weight"].cpu())


def test_frozen_prefix_cache_gives_the_full_forward(dataset):
    from negationclip.models import image_features
    from negationclip.models.transform import open_image
    from negationclip.train.vision import LiveVision

    root, _ = dataset
    b = _model()
    keys = [str(root / "images" / f"{i:03d}.png") for i in range(5)]
    px = b.transform([open_image(k) for k in keys])
    want = image_features(b.model, px)
    for spec, prefix in (("last-1", True), ("last-4", False), ("all", False)):
        lv = LiveVision(b.model, b.transform, torch.device("cpu"), spec, n_images=len(keys))
        assert lv.use_prefix is prefix
        got = lv.encode(keys[::-1])
        torch.testing.assert_close(got, want.flip(0), rtol=1e-5, atol=1e-6)
        got = lv.encode(keys)  # second call: prefix states and pixels from memory
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    lv = LiveVision(b.model, b.transform, torch.device("cpu"), "last-1", n_images=10 ** 9)
    assert not lv.use_prefix  # past the memory budget: the whole tower runs every step


def test_last_k_computes_prefix_states_instead_of_embeddings(dataset, tmp_path, monkeypatch):
    """Under last-K the pass before training computes the frozen prefix's states (what every
    step reads), not embeddings nobody reads; it checks images like the embedding pass (a bad
    one is a counted skip) and trains the same weights as running the whole tower every step."""
    import copy

    from negationclip.models import tiny_clip_bundle
    from negationclip.models.families.clip import ClipFamily

    root, recs = dataset
    (root / "images" / "003.png").write_bytes(b"not a png")
    two = tiny_clip_bundle(seed=0, text_width=32, text_layers=1, vision_width=32,
                           vision_layers=2, embed_dim=16)
    runs = {}
    for name in ("prefix", "whole"):
        if name == "whole":  # a tower that cannot be split: embedding pass, whole tower per step
            monkeypatch.setattr(ClipFamily, "vision_tokens", lambda self, model: None)
        cfg = _cfg(tmp_path, "negationclip", train_vision="last-1", val_fraction=0.0, epochs=2,
                   cache_dir=str(tmp_path / f"cache-{name}"))
        runs[name] = finetune(copy.deepcopy(two), recs, cfg, tmp_path / name,
                              image_root=root / "images", verbose=False)
    p, w = runs["prefix"], runs["whole"]
    assert p.skipped == w.skipped and sum(p.skipped.values()) == 1
    assert not (tmp_path / "cache-prefix").exists() and (tmp_path / "cache-whole").exists()
    a, b = dict(p.bundle.model.named_parameters()), dict(w.bundle.model.named_parameters())
    assert not torch.equal(a["visual_projection.weight"], dict(two.model.named_parameters())[
        "visual_projection.weight"])
    assert max(float((a[n] - b[n]).detach().abs().max()) for n in a if not n.endswith("k_proj.bias")) < 1e-4
