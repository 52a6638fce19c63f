"""Streaming readers (open_clip conventions): CSV/TSV incl. NegBench's layout, JSONL,
webdataset tar shards written here with tarfile, brace expansion, per-rank shares."""

import csv
import io
import json
import tarfile

import pytest

from negationclip.train.streaming import (NEGBENCH_CSV, CsvFormat, IndexedTextSource,
                                          StreamingDataset, braceexpand, expand_urls,
                                          tokenized_batches)
from negationclip.utils import NegationClipError


def test_braceexpand_like_the_braceexpand_package():
    assert braceexpand("s/{000..003}.tar") == ["s/000.tar", "s/001.tar", "s/002.tar", "s/003.tar"]
    assert braceexpand("{8..11}") == ["8", "9", "10", "11"]
    assert braceexpand("a{x,y}{1..2}") == ["ax1", "ax2", "ay1", "ay2"]
    assert braceexpand("{3..1}") == ["3", "2", "1"]
    assert braceexpand("{0..6..3}") == ["0", "3", "6"]
    assert braceexpand("lit{}x") == ["lit{}x"]
    assert expand_urls("a{0..1}.tar::b.tar") == ["a0.tar", "a1.tar", "b.tar"]


def _negbench_csv(path, n):
    """NegBench's fine-tuning CSV: comma-separated, filepath + caption (+ object lists)."""
    rows = []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "caption", "positive_objects", "negative_objects"])
        for i in range(n):
            cap = f"a photo {i}, with no dog" if i % 3 else f'a "quoted"\nmulti-line caption {i}'
            w.writerow([f"/data/cc12m/{i:06d}.jpg", cap, "['cat']", "['dog']"])
            rows.append((f"/data/cc12m/{i:06d}.jpg", cap))
    return rows


def test_csv_chunks_equal_a_full_read(tmp_path):
    p = tmp_path / "negbench.csv"
    rows = _negbench_csv(p, 23)
    with open(p, newline="") as f:  # the reference: the csv module over the whole file
        ref = [(r["filepath"], r["caption"]) for r in csv.DictReader(f)]
    assert ref == rows
    src = IndexedTextSource(p, "csv", NEGBENCH_CSV, chunk=5)
    assert len(src) == 23 and src.chunks == 5 and src.starts.dtype.name == "int64"
    got = [(s.image_path, s.caption) for c in range(src.chunks) for s in src.read_chunk(c)]
    assert got == ref


def test_open_clip_default_tsv_and_a_wrong_key(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_text("filepath\ttitle\n" + "".join(f"img{i}.jpg\tcaption {i}\n" for i in range(7)))
    ds = StreamingDataset(str(p), "csv", CsvFormat(), chunk=3, seed=1)
    seen = sorted((s.key, s.caption) for s in ds.epoch(0))
    assert seen == sorted((f"img{i}.jpg", f"caption {i}") for i in range(7))
    with pytest.raises(NegationClipError, match=r"no column 'filepath' or 'caption'.*--csv-separator ','"):
        IndexedTextSource(p, "csv", NEGBENCH_CSV)


def test_jsonl_bad_line_names_the_record(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps({"filepath": "x.jpg", "caption": "ok"}) + "\n{broken\n")
    src = IndexedTextSource(p, "jsonl", NEGBENCH_CSV, chunk=8)
    with pytest.raises(NegationClipError, match=r"a.jsonl: record 2: not JSON"):
        src.read_chunk(0)


def _shard(path, start, n):
    with tarfile.open(path, "w") as tf:
        for i in range(start, start + n):
            for ext, data in (("jpg", bytes([i % 256]) * 10), ("txt", f"caption {i}".encode()),
                              ("json", b"{}")):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def test_webdataset_shards_split_over_ranks(tmp_path):
    for s in range(4):
        _shard(tmp_path / f"{s:05d}.tar", s * 5, 5)
    spec = str(tmp_path / "{00000..00003}.tar")
    all_ = list(StreamingDataset(spec, "webdataset", seed=2).epoch(0))
    assert sorted(s.caption for s in all_) == sorted(f"caption {i}" for i in range(20))
    assert all(s.image_bytes == bytes([int(s.caption.split()[1]) % 256]) * 10 for s in all_)
    parts = [[s.key for s in StreamingDataset(spec, "webdataset", seed=2, rank=r, world=2).epoch(0)]
             for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 10 and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(s.key for s in all_)
    # a new epoch reorders the shards
    assert [s.key for s in StreamingDataset(spec, "webdataset", seed=2).epoch(1)] != [s.key for s in all_]


def test_epochs_cover_every_record_once_and_tokenise_per_batch(tmp_path):
    p = tmp_path / "n.csv"
    _negbench_csv(p, 50)
    ds = StreamingDataset([str(p)], "csv", NEGBENCH_CSV, chunk=8, seed=0, rank=0, world=1)
    calls = []

    def tok(texts):
        calls.append(len(texts))
        return [len(t) for t in texts]

    out = list(tokenized_batches(ds.epoch(3), tok, 16))
    assert calls == [16, 16, 16, 2] and sum(len(b) for b, _ in out) == 50
    assert len({s.key for b, _ in out for s in b}) == 50
    with pytest.raises(NegationClipError, match="streaming reads"):
        StreamingDataset(str(p), "json")


def _line_by_line_starts(path, quoted, chunk):
    """The record rule written out line by line (the scan before it was vectorised): a CSV
    record continues while its quote count is odd; blank lines are not records."""
    offsets, n = [], 0
    with open(path, "rb") as f:
        def record():
            line = f.readline()
            while quoted and line and line.count(b'"') % 2:
                more = f.readline()
                if not more:
                    break
                line += more
            return line
        if quoted:
            record()
        while True:
            start = f.tell()
            line = record()
            if not line:
                break
            if not line.strip():
                continue
            if n % chunk == 0:
                offsets.append(start)
            n += 1
    return offsets, n


def test_vectorised_index_scan_equals_the_line_by_line_rule(tmp_path):
    import random

    from negationclip.train.streaming import _record_starts
    rng = random.Random(0)
    p = tmp_path / "t.csv"
    for trial in range(150):
        parts = []
        for i in range(rng.randint(0, 40)):
            r = rng.random()
            parts.append("\n" if r < 0.1 else "  \r\n" if r < 0.15 else
                         f'a{i},"q ""x""\nmore",z\n' if r < 0.3 else f"a{i},cap {i}\n")
        text = "".join(parts)
        p.write_bytes((text.rstrip("\n") if rng.random() < 0.3 else text).encode())
        for quoted in (True, False):
            for chunk in (1, 3, 7):
                for block in (1, 5, 1 << 22):  # records across block edges
                    got = _record_starts(p, quoted, chunk, block)
                    assert (got[0].tolist(), got[1]) == _line_by_line_starts(p, quoted, chunk)
