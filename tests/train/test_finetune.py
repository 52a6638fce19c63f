import json
import math

import pytest
import torch
from safetensors.torch import load_file

from negationclip.train import TrainConfig, finetune
from negationclip.utils import NegationClipError, read_jsonl


def _cfg(tmp_path, **kw):
    base = dict(epochs=3, batch_size=4, lr=1e-3, val_fraction=0.25, checkpoint_every_steps=2,
                cache_dir=str(tmp_path / "cache"), seed=7)
    base.update(kw)
    return TrainConfig(**base)


class Boom(Exception):
    pass


def test_frozen_parameters_bit_identical_and_text_encoder_learns(dataset, tiny, tmp_path):
    root, recs = dataset
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    res = finetune(tiny, recs, _cfg(tmp_path, train_logit_scale=False, hard_negatives="original"),
                   tmp_path / "run", image_root=root / "images", verbose=False)
    after = dict(res.bundle.model.named_parameters())
    frozen = [n for n in before if n.startswith(("vision_model.", "visual_projection.",
                                                  "text_model.final_layer_norm.")) or n == "logit_scale"]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    saved = load_file(str(res.best_dir / "model.safetensors"))
    assert all(torch.equal(before[n], saved[n]) for n in frozen if n in saved)
    learn = [n for n in before if n not in frozen]
    assert all(not torch.equal(before[n], after[n]) for n in learn
               if n.startswith("text_model.encoder") and n.endswith("weight"))
    # the training loss went down (epoch 3 vs epoch 1); log, plot and result are written
    log = read_jsonl(res.out_dir / "log.jsonl")
    per_epoch = [[h["loss"] for h in log if h["kind"] == "train" and h["epoch"] == e] for e in (0, 2)]
    assert sum(per_epoch[1]) / len(per_epoch[1]) < sum(per_epoch[0]) / len(per_epoch[0])
    assert res.initial_val_loss is not None and res.best_val_loss is not None
    assert [h["step"] for h in log if h["kind"] == "train"] == list(range(1, res.steps + 1))
    assert (res.out_dir / "loss_curve.png").stat().st_size > 1000
    assert json.loads((res.out_dir / "result.json").read_text())["steps"] == res.steps == 9


def test_resume_after_interruption_reaches_the_same_weights(dataset, tiny, tmp_path):
    root, recs = dataset
    cfg = _cfg(tmp_path, hard_negatives="both", hard_negative_margin=0.1)
    full = finetune(tiny, recs, cfg, tmp_path / "full", image_root=root / "images", verbose=False)

    def crash(step):
        if step == 5:
            raise Boom()

    with pytest.raises(Boom):
        finetune(tiny, recs, cfg, tmp_path / "cut", image_root=root / "images", on_step=crash,
                 verbose=False)
    with pytest.raises(NegationClipError, match="already holds a run"):
        finetune(tiny, recs, cfg, tmp_path / "cut", image_root=root / "images", verbose=False)
    again = finetune(tiny, recs, cfg, tmp_path / "cut", image_root=root / "images", resume=True,
                     verbose=False)
    a = load_file(str(tmp_path / "full" / "state" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "cut" / "state" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.best_step == full.best_step and again.best_val_loss == full.best_val_loss
    strip = lambda hs: [{k: v for k, v in h.items() if k != "captions_per_s"} for h in hs]
    assert strip(again.history) == strip(full.history)
    steps = [h["step"] for h in read_jsonl(tmp_path / "cut" / "log.jsonl") if h["kind"] == "train"]
    assert steps == list(range(1, 10))  # the redone step is not logged twice


def test_resume_refuses_another_architecture_or_recipe(dataset, tiny, tmp_path):
    from negationclip.models import tiny_clip_bundle

    root, recs = dataset
    cfg = _cfg(tmp_path, epochs=1)
    finetune(tiny, recs, cfg, tmp_path / "run", image_root=root / "images", verbose=False)
    other = tiny_clip_bundle(seed=0, text_width=64, text_layers=1, vision_width=32,
                             vision_layers=1, embed_dim=16)
    with pytest.raises(NegationClipError, match="another architecture"):
        finetune(other, recs, cfg, tmp_path / "run", image_root=root / "images", resume=True,
                 verbose=False)
    with pytest.raises(NegationClipError, match="lr"):
        finetune(tiny, recs, _cfg(tmp_path, epochs=1, lr=5e-4), tmp_path / "run",
                 image_root=root / "images", resume=True, verbose=False)


def test_bad_images_are_counted_before_training(dataset, tiny, tmp_path, capsys):
    root, recs = dataset
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    bad = recs + [dict(recs[0], id="m", image="missing.png"), dict(recs[1], id="c", image="broken.png")]
    res = finetune(tiny, bad, _cfg(tmp_path, epochs=1), tmp_path / "run", image_root=root / "images")
    assert res.skipped == {"captions whose image is missing or unreadable": 2}
    assert res.n_train + res.n_val == len(recs)
    out = capsys.readouterr().out
    assert "skipped 2 captions" in out and out.index("skipped 2") < out.index("validation loss before")


def test_empty_training_set_and_nan_loss_are_clear_errors(dataset, tiny, tmp_path):
    root, recs = dataset
    with pytest.raises(NegationClipError, match="empty training set.*missing or unreadable"):
        finetune(tiny, recs, _cfg(tmp_path), tmp_path / "a", image_root=tmp_path / "nowhere",
                 verbose=False)
    with pytest.raises(NegationClipError, match="empty training set"):
        finetune(tiny, [], _cfg(tmp_path), tmp_path / "b", image_root=root / "images", verbose=False)
    with torch.no_grad():
        tiny.model.text_projection.weight[0, 0] = math.nan
    with pytest.raises(NegationClipError, match="loss is nan at step 1"):
        finetune(tiny, recs, _cfg(tmp_path, val_fraction=0.0), tmp_path / "c",
                 image_root=root / "images", verbose=False)


def test_config_is_checked():
    with pytest.raises(NegationClipError, match="hard_negatives"):
        TrainConfig(hard_negatives="everything").validate()
    with pytest.raises(NegationClipError, match="batch_size"):
        TrainConfig(batch_size=1).validate()
    assert TrainConfig.from_dict(TrainConfig(lr=3e-6).to_dict()) == TrainConfig(lr=3e-6)


def test_explicit_validation_records(dataset, tiny, tmp_path):
    root, recs = dataset
    res = finetune(tiny, recs[:9], _cfg(tmp_path, epochs=1), tmp_path / "run",
                   image_root=root / "images", val_records=recs[9:], verbose=False)
    assert (res.n_train, res.n_val) == (9, 3)
    assert res.best_dir is not None and (res.best_dir / "config.json").exists()


def test_length_groups_train_the_same_weights(dataset, tiny, tmp_path, monkeypatch):
    """--text-buckets changes how captions are batched through the text tower, not the result."""
    import copy

    from negationclip.train import loop
    calls = []
    real = loop.text_features_by_length

    def spy(fwd, ids, mask, buckets):
        calls.append(buckets)
        return real(lambda i, m: (calls.append(i.shape), fwd(i, m))[1], ids, mask, buckets)

    monkeypatch.setattr(loop, "text_features_by_length", spy)
    root, recs = dataset
    runs = {}
    for k in (1, 3):
        res = finetune(copy.deepcopy(tiny), recs, _cfg(tmp_path, epochs=2, batch_size=6, text_buckets=k),
                       tmp_path / f"k{k}", image_root=root / "images", verbose=False)
        runs[k] = res
    grouped = [c for c in calls if not isinstance(c, int)]
    assert 3 in calls and len({tuple(c) for c in grouped}) > 2  # groups of other widths ran
    a, b = (dict(runs[k].bundle.model.named_parameters()) for k in (1, 3))
    # a key bias has a zero true gradient (softmax ignores a shift shared by all keys), so Adam
    # turns its rounding noise into full steps: the one parameter left out
    assert max(float((a[n] - b[n]).detach().abs().max()) for n in a if not n.endswith("k_proj.bias")) < 1e-5
    la = [h["loss"] for h in runs[1].history if h["kind"] == "train"]
    lb = [h["loss"] for h in runs[3].history if h["kind"] == "train"]
    assert len(la) == len(lb) > 2 and la == pytest.approx(lb, abs=1e-5)
