"""--report-to: the reporters see exactly what log.jsonl holds; unknown / missing ones fail early."""

import importlib.util

import pytest

from negationclip.train import TrainConfig, finetune
from negationclip.train import reporting
from negationclip.utils import NegationClipError, read_jsonl


def _cfg(tmp_path, **kw):
    base = dict(epochs=2, batch_size=4, lr=1e-3, val_fraction=0.25, checkpoint_every_steps=100,
                cache_dir=str(tmp_path / "cache"), seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_scalars_equal_the_log(dataset, tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, recs = dataset
    assert reporting.resolve("auto") == "tensorboard"  # the default when installed
    res = finetune(tiny, recs, _cfg(tmp_path), tmp_path / "run", image_root=root / "images",
                   verbose=False)
    log = read_jsonl(res.out_dir / "log.jsonl")
    acc = EventAccumulator(str(res.out_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/captions_per_s", "val/val_loss"} <= tags
    for tag, kind, key in [("train/loss", "train", "loss"), ("train/lr", "train", "lr"),
                           ("train/captions_per_s", "train", "captions_per_s"),
                           ("val/val_loss", "val", "val_loss")]:
        want = [(h["step"], h[key]) for h in log if h["kind"] == kind]
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert len(got) == len(want) > 0, tag
        for (s1, v1), (s2, v2) in zip(got, want):
            # event files store float32
            assert s1 == s2 and v1 == pytest.approx(v2, rel=1e-6, abs=1e-12), (tag, s1)


def test_none_writes_no_event_files(dataset, tiny, tmp_path):
    root, recs = dataset
    res = finetune(tiny, recs, _cfg(tmp_path, epochs=1, report_to="none"), tmp_path / "run",
                   image_root=root / "images", verbose=False)
    assert not (res.out_dir / "tensorboard").exists()
    assert read_jsonl(res.out_dir / "log.jsonl")


def test_unknown_or_missing_reporter_fails_before_training(monkeypatch):
    with pytest.raises(NegationClipError, match="unknown"):
        TrainConfig(report_to="mlflow").validate()
    monkeypatch.setitem(reporting.NEEDS, "wandb", "no_such_package_xyz")
    with pytest.raises(NegationClipError, match="not installed"):
        TrainConfig(report_to="wandb").validate()
    monkeypatch.setitem(reporting.NEEDS, "tensorboard", "no_such_package_xyz")
    assert reporting.resolve("auto") == "none"


def test_plugin_registry_receives_every_record(dataset, tiny, tmp_path):
    seen, closed = [], []

    class Collect(reporting.Reporter):
        def log(self, h):
            seen.append(dict(h))

        def close(self):
            closed.append(True)

    reporting.register("collect_test")(lambda out, cfg: Collect())
    try:
        root, recs = dataset
        res = finetune(tiny, recs, _cfg(tmp_path, epochs=1, report_to="collect_test"),
                       tmp_path / "run", image_root=root / "images", verbose=False)
    finally:
        reporting.REPORTERS.pop("collect_test")
    assert seen == read_jsonl(res.out_dir / "log.jsonl") and closed == [True]
    assert reporting.scalars({"kind": "val", "step": 3, "epoch": 0, "val_loss": 1.5, "ok": True}) \
        == {"val/val_loss": 1.5}
