"""Streaming training input in open_clip's conventions, for caption sets too large to hold.

``--dataset-type csv|jsonl|webdataset`` with ``--train-data`` (``::`` between several sources,
``{00000..00999}`` / ``{a,b}`` brace expansion as the ``braceexpand`` package does) and
``--csv-img-key`` / ``--csv-caption-key`` / ``--csv-separator`` (open_clip's defaults:
``filepath``, ``title``, tab; :data:`NEGBENCH_CSV` is NegBench's released fine-tuning layout:
``filepath``, ``caption``, comma).

CSV and JSONL files are indexed once by byte offset every ``chunk`` records (a numpy int64
array: 8 bytes per chunk, not per record, and no Python object per record; the scan is
vectorised with numpy over fixed-size blocks of the file); a chunk is read
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


def _record_starts(path: Path, quoted: bool, chunk: int, block: int = 1 << 22) -> tuple[np.ndarray, int]:
    """Byte offsets of every ``chunk``-th record after the header line, and the record count.
    With ``quoted`` (CSV) a record continues over newlines while a quote is open (RFC 4180:
    an escaped quote is doubled, so the parity of quote characters decides). Blank lines are
    not records.

    Vectorised: the file is read in ``block``-byte pieces into one reused buffer (constant
    memory, nothing memory-mapped), and newlines, quote parity and blankness are found with
    numpy; no Python work per line (a 5M-line CSV is indexed in seconds, not tens)."""
    offsets: list[np.ndarray] = []
    n = 0
    parity = 0            # quotes seen so far, mod 2 (quoted: a newline at odd parity is inside)
    open_start = 0        # start offset of the record not yet ended
    open_nonblank = False
    header = quoted       # the first record is the CSV header
    buf = bytearray(block)
    pos = 0
    with open(path, "rb") as f:
        while True:
            got = f.readinto(buf)
            if not got:
                break
            b = np.frombuffer(buf, np.uint8, got)
            is_nl = b == 10
            if quoted:
                q = np.cumsum(b == 34, dtype=np.int32)
                is_nl &= ((q + parity) & 1) == 0
                parity = (parity + int(q[-1])) & 1
                del q
            nl = np.flatnonzero(is_nl)
            nb = np.cumsum((b > 32) | (b == 11) | (b == 12) | (b < 9), dtype=np.int32)  # non-space
            if len(nl):
                ends = nb[nl]
                counts = np.diff(ends, prepend=0)
                counts[0] += int(open_nonblank)
                starts = np.empty(len(nl), np.int64)
                starts[0] = open_start
                starts[1:] = pos + nl[:-1] + 1
                keep = counts > 0
                if header:
                    keep[0] = False
                    header = False
                st = starts[keep]
                idx = n + np.arange(len(st))
                offsets.append(st[idx % chunk == 0])
                n += len(st)
                open_start = pos + int(nl[-1]) + 1
                open_nonblank = bool(nb[-1] - ends[-1] > 0)
            else:
                open_nonblank = open_nonblank or bool(nb[-1] > 0)
            pos += got
    if open_start < pos and open_nonblank and not header:  # a last record without a newline
        if n % chunk == 0:
            offsets.append(np.array([open_start], np.int64))
        n += 1
    return (np.concatenate(offsets).astype(np.int64) if offsets else np.zeros(0, np.int64)), n


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

    def epoch(self, epoch: int, shuffle: bool = True) -> Iterator[Sample]:
        """This rank's samples of epoch ``epoch``; ``shuffle=False``: file order (validation,
        the embedding pass)."""
        rng = np.random.default_rng([self.seed, max(epoch, 0)])
        units = self._units()
        order = rng.permutation(len(units)) if shuffle else np.arange(len(units))
        for j in order[self.rank::self.world]:
            i, c = units[int(j)]
            if self.kind == "webdataset":
                yield from iter_tar(self.urls[i])
            else:
                rows = self.sources[i].read_chunk(c)
                for r in (rng.permutation(len(rows)) if shuffle else range(len(rows))):
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


# --------------------------------------------------------------------------- training on a stream


@dataclass(frozen=True)
class StreamInput:
    """Training captions that stream (``finetune(model, StreamInput(...), ...)``; CLI
    ``--dataset-type csv|jsonl|webdataset --train-data ...``): ``kind``, ``train`` and
    ``val`` (optional validation stream) as :class:`StreamingDataset` takes them."""

    train: str | tuple[str, ...]
    kind: str
    fmt: CsvFormat = CsvFormat()
    val: str | tuple[str, ...] | None = None
    chunk: int = 1024


class EmbeddedStream:
    """A caption stream whose images are in the image-embedding store.

    Built by :func:`embed_stream`, which reads the stream once in blocks, embeds each block's
    images through the shared cache (hits decode nothing; misses are encoded, by every rank
    its share), and keeps, per distinct image, two 64-bit numbers: the hash of its key and the
    hash of its content key in the store (16 bytes an image, sorted numpy arrays; no Python
    object per record). Training then reads the stream again per epoch, row by row, and a batch's
    image embeddings are gathered from the memory-mapped store.
    """

    def __init__(self, ds: StreamingDataset, image_root, key_h: np.ndarray, content_h: np.ndarray,
                 store, n_rows: int, skipped: dict[str, int], first_failure: str | None = None):
        self.ds, self.image_root = ds, image_root
        self.key_h, self.content_h, self.store = key_h, content_h, store
        self.n_rows, self.skipped, self.first_failure = n_rows, skipped, first_failure

    @property
    def n_images(self) -> int:
        return int((self.content_h != 0).sum())

    def key(self, s: Sample) -> str:
        return stream_key(s, self.image_root)

    def _content(self, keys: Sequence[str]) -> np.ndarray:
        from ..models.embedding_store import key_hashes
        h = key_hashes(keys)
        pos = np.minimum(np.searchsorted(self.key_h, h), max(len(self.key_h) - 1, 0))
        hit = self.key_h[pos] == h if len(self.key_h) else np.zeros(len(h), bool)
        return np.where(hit, self.content_h[pos] if len(self.key_h) else 0, 0).astype(np.uint64)

    def rows(self, epoch: int, shuffle: bool = True) -> Iterator:
        """The usable rows (``data.Example``) of one epoch: image embedded, caption not empty."""
        from .data import Example
        it = self.ds.epoch(epoch, shuffle=shuffle)
        while True:
            block = list(itertools.islice(it, 1024))
            if not block:
                return
            keys = [self.key(s) for s in block]
            ok = self._content(keys) != 0
            for s, k, good in zip(block, keys, ok.tolist()):
                if good and s.caption.strip():
                    yield Example(k, s.caption.strip(), where=s.key)

    def batches(self, epoch: int, batch_size: int, *, min_size: int = 1,
                shuffle: bool = True) -> Iterator[list]:
        """Global batches of ``batch_size`` rows; a last one smaller than ``min_size`` is dropped
        (the rule of ``data.epoch_batches``)."""
        it = self.rows(epoch, shuffle)
        while True:
            b = list(itertools.islice(it, batch_size))
            if not b or len(b) < min_size:
                return
            yield b

    def n_batches(self, batch_size: int, min_size: int = 1) -> int:
        n, last = divmod(self.n_rows, batch_size)
        return n + (1 if last and last >= min_size else 0)

    def image_rows(self, keys: Sequence[str], also: "EmbeddedStream | None" = None):
        """Normalised float32 embeddings [len(keys), D] of this stream's keys (and ``also``'s:
        the validation stream's), gathered from the memory-mapped store."""
        import torch.nn.functional as F
        h = self._content(keys)
        store = self.store
        if also is not None and not h.all():
            h = np.where(h != 0, h, also._content(keys))
            store = also.store  # opened last: it indexes both streams' images
        return F.normalize(store.get(h), dim=-1)


def stream_key(s: Sample, image_root) -> str:
    """The image key of a sample: its absolute path (string work only, no file system call:
    the cache keys rows by content, this key only finds them again within the run), or
    ``url#key`` inside a tar."""
    if s.image_path is not None:
        return os.path.abspath(os.path.join(image_root, s.image_path) if image_root is not None
                               else s.image_path)
    return s.key


def embed_stream(ds: StreamingDataset, bundle, cache, image_root, *, batch_size: int = 64,
                 block: int | None = None, distributed: bool = False,
                 desc: str = "captions") -> EmbeddedStream:
    """One pass over ``ds`` (file order): embed every image once, count the usable rows.
    ``block``: records per cache call (default 65536; 1024 for webdataset, whose image bytes
    are held for the block)."""
    block = block or (1024 if ds.kind == "webdataset" else 65536)
    from collections import Counter

    from ..models import open_image
    from ..models.cache import bytes_content_key
    from ..models.embedding_store import key_hashes
    from ..utils import progress

    key_parts, content_parts = [], []
    skipped: Counter = Counter()
    first_failure = None
    n_rows = 0
    n_total = len(ds) if ds.kind != "webdataset" else None
    import torch.distributed as dist
    main_rank = not (distributed and dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    bar = progress(total=n_total, desc=f"embedding the images of the {desc}", unit="rec",
                   disable=None if main_rank else True)
    it = ds.epoch(0, shuffle=False)
    while True:
        samples = list(itertools.islice(it, block))
        if not samples:
            break
        keys = [stream_key(s, image_root) for s in samples]
        uniq = list(dict.fromkeys(keys))
        content, data = None, {}
        if ds.kind == "webdataset":
            for s, k in zip(samples, keys):
                data.setdefault(k, s.image_bytes)
            content = {k: bytes_content_key(b) for k, b in data.items()}

        def load(k: str):
            return open_image(k, data=data[k]) if k in data else open_image(k)
        res = cache.embed(bundle, uniq, load, batch_size=batch_size, distributed=distributed,
                          content_keys=content, desc="image embeddings (once; frozen vision tower)")
        ch = res.store_hashes
        if first_failure is None and res.failed:
            first_failure = next(iter(res.failed.values()))
        key_parts.append(key_hashes(uniq))
        content_parts.append(ch)
        good = dict(zip(uniq, (ch != 0).tolist()))
        for s, k in zip(samples, keys):
            if not good[k]:
                skipped["captions whose image is missing or unreadable"] += 1
            elif not s.caption.strip():
                skipped["captions that are empty"] += 1
            else:
                n_rows += 1
        bar.update(len(samples))
    bar.close()
    kh = np.concatenate(key_parts) if key_parts else np.zeros(0, np.uint64)
    chs = np.concatenate(content_parts) if content_parts else np.zeros(0, np.uint64)
    order = np.argsort(kh, kind="stable")
    kh, chs = kh[order], chs[order]
    first = np.ones(len(kh), bool)
    first[1:] = kh[1:] != kh[:-1]
    store = cache.open_store(cache.fingerprint(bundle))
    return EmbeddedStream(ds, image_root, kh[first], chs[first], store, n_rows, dict(skipped),
                          first_failure)
