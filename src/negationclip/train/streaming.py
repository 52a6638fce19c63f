"""Streaming training input in open_clip's conventions, for caption sets too large to hold.

``--dataset-type csv|jsonl|webdataset`` with ``--train-data`` (``::`` between several sources,
``{00000..00999}`` / ``{a,b}`` brace expansion as the ``braceexpand`` package does) and
``--csv-img-key`` / ``--csv-caption-key`` / ``--csv-separator`` (open_clip's defaults:
``filepath``, ``title``, tab; :data:`NEGBENCH_CSV` is NegBench's released fine-tuning layout:
``filepath``, ``caption``, comma).

CSV and JSONL files are indexed once by byte offset every ``chunk`` records (a numpy int64
array: 8 bytes per chunk, not per record, and no Python object per record); a chunk is read
and parsed when needed, so memory holds one chunk, not the file. Epoch order is a seeded
permutation of chunks, then of the rows inside each chunk: a shuffle that reads each byte once
per epoch. Webdataset tar shards are read sequentially with the standard ``tarfile`` module
(the shard order shuffled per epoch; files of one sample share the key before the first dot,
the caption is ``.txt``, the image ``.jpg``/``.jpeg``/``.png``/``.webp``). Shards and chunks
are dealt round-robin to ranks (``rank``/``world``) so every process reads only its share.
Captions are tokenised per batch by :func:`tokenized_batches`, never ahead.

Not streamed: ``--dataset-type json`` (COCO-format captions JSON is one document) keeps the
in-memory reader of :mod:`negationclip.train.data`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..utils import NegationClipError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class CsvFormat:
    img_key: str = "filepath"      # open_clip's --csv-img-key default
    caption_key: str = "title"     # open_clip's --csv-caption-key default
    sep: str = "\t"                # open_clip's --csv-separator default


NEGBENCH_CSV = CsvFormat("filepath", "caption", ",")  # NegBench's fine-tuning CSVs


@dataclass(frozen=True)
class Sample:
    """One caption and where its image is: a path (csv/jsonl) or bytes in a tar (webdataset).
    ``key`` names the image for the embedding cache/store."""

    key: str
    caption: str
    image_path: str | None = None
    image_bytes: bytes | None = None


# --------------------------------------------------------------------------- URLs

_BRACE = re.compile(r"\{([^{}]*)\}")


def braceexpand(pattern: str) -> list[str]:
    """``"a{00..02}b{x,y}"`` -> a00bx a00by a01bx ...; a numeric range keeps the zero padding
    of its bounds (the ``braceexpand`` package's rule); ``\\{`` is not special."""
    m = next((m for m in _BRACE.finditer(pattern)
              if m.start() == 0 or pattern[m.start() - 1] != "\\"), None)
    if m is None:
        return [_unescape(pattern)]
    body = m.group(1)
    rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?", body)
    if rng:
        lo, hi = int(rng.group(1)), int(rng.group(2))
        step = abs(int(rng.group(3))) if rng.group(3) else 1
        width = max(len(rng.group(1)), len(rng.group(2))) if (
            rng.group(1).lstrip("-").startswith("0") or rng.group(2).lstrip("-").startswith("0")) else 0
        vals = range(lo, hi + 1, step or 1) if lo <= hi else range(lo, hi - 1, -(step or 1))
        items = [str(v).zfill(width) for v in vals]
    elif "," in body:
        items = body.split(",")
    else:  # not an expression: keep the braces literally
        items = ["{" + body + "}"]
    head, tail = _unescape(pattern[:m.start()]), pattern[m.end():]
    return [head + it + x for it in items for x in braceexpand(tail)]


def _unescape(s: str) -> str:
    return s.replace("\\{", "{").replace("\\}", "}")


def expand_urls(spec: str | Sequence[str]) -> list[str]:
    """``--train-data`` -> file list: ``::`` separates sources (open_clip), each brace-expanded."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    return [u for s in specs for part in str(s).split("::") if part for u in braceexpand(part)]


# --------------------------------------------------------------------------- indexed text files


def _record_starts(path: Path, quoted: bool, chunk: int) -> tuple[np.ndarray, int]:
    """Byte offsets of every ``chunk``-th record after the header line, and the record count.
    With ``quoted`` (CSV) a record continues over newlines while a quote is open (RFC 4180:
    an escaped quote is doubled, so the parity of quote characters decides)."""
    offsets, n = [], 0
    with open(path, "rb") as f:
        if quoted:
            _read_quoted_record(f)  # header
        pos = f.tell()
        while True:
            start = pos
            line = _read_quoted_record(f) if quoted else f.readline()
            if not line:
                break
            pos = f.tell()
            if not line.strip():
                continue
            if n % chunk == 0:
                offsets.append(start)
            n += 1
    return np.asarray(offsets, dtype=np.int64), n


def _read_quoted_record(f) -> bytes:
    line = f.readline()
    while line and line.count(b'"') % 2:
        more = f.readline()
        if not more:
            break
        line += more
    return line


class IndexedTextSource:
    """Records of one CSV (with a header) or JSONL file, ``chunk`` records at a time."""

    def __init__(self, path: str | os.PathLike, kind: str, fmt: CsvFormat = CsvFormat(),
                 chunk: int = 1024):
        self.path, self.kind, self.fmt, self.chunk = Path(path), kind, fmt, chunk
        if not self.path.is_file():
            raise NegationClipError(f"{self.path}: no such file (--train-data)")
        if kind == "csv":
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f, delimiter=fmt.sep), [])
            missing = [k for k in (fmt.img_key, fmt.caption_key) if k not in header]
            if missing:
                raise NegationClipError(
                    f"{self.path}: no column {' or '.join(map(repr, missing))} in the header "
                    f"{header} (--csv-img-key / --csv-caption-key / --csv-separator {fmt.sep!r})")
            self._cols = (header.index(fmt.img_key), header.index(fmt.caption_key))
        self.starts, self.n = _record_starts(self.path, kind == "csv", chunk)

    def __len__(self) -> int:
        return self.n

    @property
    def chunks(self) -> int:
        return len(self.starts)

    def read_chunk(self, c: int) -> list[Sample]:
        """Parse chunk ``c`` (records ``c*chunk`` ...); a bad row is an error naming its line."""
        count = min(self.chunk, self.n - c * self.chunk)
        out: list[Sample] = []
        with open(self.path, "rb") as f:
            f.seek(int(self.starts[c]))
            while len(out) < count:
                raw = _read_quoted_record(f) if self.kind == "csv" else f.readline()
                if not raw:
                    break
                if not raw.strip():
                    continue
                out.append(self._parse(raw.decode("utf-8"), c * self.chunk + len(out)))
        return out

    def _parse(self, text: str, i: int) -> Sample:
        where = f"{self.path}: record {i + 1}"
        if self.kind == "csv":
            row = next(csv.reader(io.StringIO(text), delimiter=self.fmt.sep), [])
            a, b = self._cols
            if len(row) <= max(a, b):
                raise NegationClipError(f"{where}: {len(row)} fields, expected at least {max(a, b) + 1}")
            img, cap = row[a], row[b]
        else:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise NegationClipError(f"{where}: not JSON ({e.msg})") from None
            img = obj.get(self.fmt.img_key, obj.get("image"))
            cap = obj.get(self.fmt.caption_key, obj.get("caption"))
            if not isinstance(img, str) or not isinstance(cap, str):
                raise NegationClipError(f"{where}: needs string fields {self.fmt.img_key!r} "
                                        f"and {self.fmt.caption_key!r}")
        return Sample(key=img, caption=cap, image_path=img)


# --------------------------------------------------------------------------- webdataset


def iter_tar(url: str) -> Iterator[Sample]:
    """The samples of one webdataset shard, in order (files grouped by key)."""
    try:
        tf = tarfile.open(url, mode="r|*")
    except (OSError, tarfile.TarError) as e:
        raise NegationClipError(f"{url}: not a readable tar shard ({e})") from None
    cur, files = None, {}

    def emit():
        cap = files.get("txt")
        ext = next((e for e in IMAGE_EXTS if e in files), None)
        if cap is not None and ext is not None:
            return Sample(key=f"{url}#{cur}", caption=cap.decode("utf-8").strip(),
                          image_bytes=files[ext])
        return None

    with tf:
        for m in tf:
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            key, _, ext = base.partition(".")
            prefix = m.name[: len(m.name) - len(base)] + key
            if prefix != cur:
                if cur is not None and (s := emit()):
                    yield s
                cur, files = prefix, {}
            files[ext.lower()] = tf.extractfile(m).read()
        if cur is not None and (s := emit()):
            yield s


# --------------------------------------------------------------------------- the stream


class StreamingDataset:
    """``for s in ds.epoch(e): ...`` yields this rank's samples of epoch ``e``.

    ``kind``: csv | jsonl | webdataset. ``urls``: as :func:`expand_urls` takes."""

    def __init__(self, urls: str | Sequence[str], kind: str, fmt: CsvFormat = CsvFormat(), *,
                 chunk: int = 1024, seed: int = 0, rank: int = 0, world: int = 1):
        if kind not in ("csv", "jsonl", "webdataset"):
            raise NegationClipError(f"--dataset-type {kind!r}: streaming reads csv, jsonl or webdataset")
        self.urls, self.kind, self.seed, self.rank, self.world = expand_urls(urls), kind, seed, rank, world
        if not self.urls:
            raise NegationClipError("--train-data: no file given")
        self.sources = ([] if kind == "webdataset" else
                        [IndexedTextSource(u, kind, fmt, chunk) for u in self.urls])

    def __len__(self) -> int:
        """Records in all files (csv/jsonl; webdataset shards are not counted ahead)."""
        return sum(len(s) for s in self.sources)

    def _units(self) -> list[tuple[int, int]]:
        if self.kind == "webdataset":
            return [(i, 0) for i in range(len(self.urls))]
        return [(i, c) for i, s in enumerate(self.sources) for c in range(s.chunks)]

    def epoch(self, epoch: int) -> Iterator[Sample]:
        rng = np.random.default_rng([self.seed, epoch])
        units = self._units()
        order = rng.permutation(len(units))
        for j in order[self.rank::self.world]:
            i, c = units[int(j)]
            if self.kind == "webdataset":
                yield from iter_tar(self.urls[i])
            else:
                rows = self.sources[i].read_chunk(c)
                for r in rng.permutation(len(rows)):
                    yield rows[int(r)]


def tokenized_batches(samples: Iterator[Sample], tokenize: Callable[[list[str]], object],
                      batch_size: int) -> Iterator[tuple[list[Sample], object]]:
    """``(samples, tokenize([captions]))`` per batch: tokenisation happens batch by batch."""
    it = iter(samples)
    while True:
        batch = list(itertools.islice(it, batch_size))
        if not batch:
            return
        yield batch, tokenize([s.caption for s in batch])
