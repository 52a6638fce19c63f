"""`negationclip train` on streamed captions (open_clip's --dataset-type csv|jsonl|webdataset),
through the CLI, on tiny CSVs / tar shards / JSONL written here.

The loss a run logs is checked against CLIP's loss computed here, independently of the package's
training code: with one batch holding every usable caption, the first step's loss is the
symmetric cross-entropy of the whole set (order-free), so a caption paired with the wrong image,
a lost row or a skipped bad row changes the number."""

from __future__ import annotations

import csv
import io
import json
import tarfile

import pytest
import torch
import torch.nn.functional as F

from negationclip.cli import main

from .conftest import make_dataset


def _reference_loss(bundle, image_paths, captions) -> float:
    """CLIP's symmetric InfoNCE, written out: normalised features, exp(logit_scale) * cosine,
    mean of the two cross-entropies (the released clip_finetune.py loss)."""
    from negationclip.models import encode_images
    with torch.no_grad():
        img = F.normalize(encode_images(bundle, image_paths, normalize=False).float(), dim=-1)
        tok = bundle.tokenizer(captions)
        out = bundle.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
        txt = F.normalize(getattr(out, "pooler_output", out).float(), dim=-1)
        logits = bundle.model.logit_scale.exp() * img @ txt.T
        labels = torch.arange(len(captions))
        return float((F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2)


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _base(tmp_path, tiny):
    from negationclip.models import save
    save(tiny, tmp_path / "base")
    return ["train", "--model", str(tmp_path / "base"), "--lr", "1e-3", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--report-to", "none"]


@pytest.mark.timeout(180)
def test_negbench_csv_layout_streams_in_chunks_and_trains_on_the_right_pairs(tmp_path, tiny, capsys):
    recs = make_dataset(tmp_path / "data", n=9)
    img = tmp_path / "data" / "images"
    # NegBench's released fine-tuning CSVs: comma-separated, filepath + caption among other
    # columns (pandas' to_csv adds an unnamed index column), captions with commas and quotes;
    # two parts joined by a brace pattern; one row points to a missing image (a counted skip)
    rows = [(r["image"], r["negated"].replace(" with no", ', "quoted", with no')) for r in recs]
    rows.insert(4, ("gone.png", "a caption whose image is missing"))
    for part, chunk in enumerate((rows[:5], rows[5:])):
        with open(tmp_path / f"negcap-{part}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["", "filepath", "caption", "positive_objects", "negative_objects"])
            for i, (p, c) in enumerate(chunk):
                w.writerow([i, p, c, "['table']", "['dog']"])
    args = _base(tmp_path, tiny) + [
        "--dataset-type", "csv", "--train-data", str(tmp_path / "negcap-{0..1}.csv"),
        "--csv-separator", ",", "--csv-img-key", "filepath", "--csv-caption-key", "caption",
        "--stream-chunk", "2", "--images", str(img), "--batch-size", "9", "--epochs", "2",
        "--out", str(tmp_path / "run")]
    assert main(args) == 0
    res = json.loads((tmp_path / "run" / "result.json").read_text())
    assert res["n_train"] == 9 and res["steps"] == 2 and res["n_val"] == 0
    assert res["skipped"] == {"captions whose image is missing or unreadable": 1}
    assert "gone.png" in capsys.readouterr().out  # named in the skip note
    first = [h for h in _log(tmp_path / "run") if h["kind"] == "train"][0]
    want = _reference_loss(tiny, [str(img / r["image"]) for r in recs],
                           [c for p, c in rows if p != "gone.png"])
    assert abs(first["loss"] - want) < 1e-4
    assert (tmp_path / "run" / "best" / "config.json").exists()
    # a second run finds every image in the memory-mapped store: nothing is encoded again
    shards = sorted((tmp_path / "cache").rglob("shards/*.npy"))
    assert shards
    assert main(args[:-1] + [str(tmp_path / "run2")]) == 0
    assert sorted((tmp_path / "cache").rglob("shards/*.npy")) == shards


def _tar(path, samples):
    with tarfile.open(path, "w") as tf:
        for key, caption, image_bytes in samples:
            for name, data in ((f"{key}.txt", caption.encode()), (f"{key}.png", image_bytes)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


@pytest.mark.timeout(180)
def test_webdataset_shards_train_and_validate(tmp_path, tiny):
    recs = make_dataset(tmp_path / "data", n=10)
    img = tmp_path / "data" / "images"
    samples = [(f"s{i:04d}", r["negated"], (img / r["image"]).read_bytes()) for i, r in enumerate(recs)]
    (tmp_path / "shards").mkdir()
    _tar(tmp_path / "shards" / "00000.tar", samples[:4])
    _tar(tmp_path / "shards" / "00001.tar", samples[4:7])
    _tar(tmp_path / "val.tar", samples[7:])
    args = _base(tmp_path, tiny) + [
        "--dataset-type", "webdataset", "--train-data", str(tmp_path / "shards" / "{00000..00001}.tar"),
        "--val-data", str(tmp_path / "val.tar"), "--batch-size", "7", "--epochs", "1",
        "--out", str(tmp_path / "run")]
    assert main(args) == 0
    res = json.loads((tmp_path / "run" / "result.json").read_text())
    assert res["n_train"] == 7 and res["n_val"] == 3 and res["steps"] == 1
    log = _log(tmp_path / "run")
    paths = [str(img / r["image"]) for r in recs]
    caps = [r["negated"] for r in recs]
    assert abs(log[0]["val_loss"] - _reference_loss(tiny, paths[7:], caps[7:])) < 1e-4  # before training
    assert abs(log[1]["loss"] - _reference_loss(tiny, paths[:7], caps[:7])) < 1e-4
    assert log[2]["kind"] == "val" and log[2]["val_loss"] != log[0]["val_loss"]


@pytest.mark.timeout(180)
def test_generation_jsonl_streams_with_its_own_field_names(tmp_path, tiny):
    recs = make_dataset(tmp_path / "data", n=8)
    f = tmp_path / "p1.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "run"
    assert main(_base(tmp_path, tiny) + [
        "--dataset-type", "jsonl", "--train-data", str(f), "--csv-img-key", "image",
        "--csv-caption-key", "negated", "--images", str(tmp_path / "data" / "images"),
        "--batch-size", "8", "--max-steps", "1", "--out", str(out)]) == 0
    first = [h for h in _log(out) if h["kind"] == "train"][0]
    want = _reference_loss(tiny, [str(tmp_path / "data" / "images" / r["image"]) for r in recs],
                           [r["negated"] for r in recs])
    assert abs(first["loss"] - want) < 1e-4


def test_bad_streamed_input_is_one_clear_line(tmp_path, tiny, capsys):
    make_dataset(tmp_path / "data", n=3)
    bad = tmp_path / "bad.csv"
    bad.write_text("filepath,title\n000.png,a caption\n")
    base = _base(tmp_path, tiny) + ["--images", str(tmp_path / "data" / "images")]
    cases = [
        (["--dataset-type", "csv", "--train-data", str(bad), "--csv-separator", ",",
          "--csv-caption-key", "caption"], "bad.csv: no column 'caption'"),
        (["--dataset-type", "csv", "--train-data", str(tmp_path / "nope-{0..1}.csv")], "nope-0.csv"),
        (["--train-data", str(bad), "--csv-separator", ",", "--hard-negatives", "original"],
         "--hard-negatives original"),
        (["--train-data", str(bad), "--data", str(bad)], "give the training captions once"),
    ]
    for i, (extra, msg) in enumerate(cases):
        rc = main(base + extra + ["--out", str(tmp_path / f"run{i}")])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and msg in err, (extra, err)
        assert "Traceback" not in err and not (tmp_path / f"run{i}").exists()


@pytest.mark.timeout(240)
def test_a_killed_streamed_run_resumes_to_the_same_weights(tmp_path, tiny):
    from safetensors.torch import load_file

    from negationclip.train import TrainConfig, finetune
    from negationclip.train.streaming import StreamInput

    recs = make_dataset(tmp_path / "data", n=10)
    f = tmp_path / "c.csv"
    f.write_text("filepath\ttitle\n" + "".join(f"{r['image']}\t{r['negated']}\n" for r in recs))
    inp = StreamInput(str(f), "csv", chunk=3)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, seed=1, checkpoint_every_steps=1,
                      cache_dir=str(tmp_path / "cache"), report_to="none")
    kw = dict(image_root=tmp_path / "data" / "images", verbose=False)
    finetune(tiny, inp, cfg, tmp_path / "full", **kw)

    class Kill(Exception):
        pass

    def kill_at_4(step):
        if step == 4:
            raise Kill
    with pytest.raises(Kill):  # epoch 2, second batch: the resume skips into the stream
        finetune(tiny, inp, cfg, tmp_path / "cut", on_step=kill_at_4, **kw)
    res = finetune(tiny, inp, cfg, tmp_path / "cut", resume=True, **kw)
    assert res.steps == 6  # 10 rows, batch 4: 3 steps an epoch
    a = load_file(str(tmp_path / "full" / "state" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "cut" / "state" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_help_teaches_the_streamed_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for opt in ("--dataset-type", "--train-data", "--csv-img-key", "--csv-caption-key",
                "--csv-separator", "--stream-chunk", "{00000..00999}.tar", "NegBench"):
        assert opt in out, opt
