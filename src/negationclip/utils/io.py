"""The one JSON loader, JSONL writer/reader and atomic file/folder writers of the project."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import NegationClipError
from .paths import as_os_error, current_umask, os_error


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a malformed file raises NegationClipError naming file, line and column."""
    path = Path(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise NegationClipError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise NegationClipError(f"{path}: is a folder, expected a JSON file") from None
    except UnicodeDecodeError as e:
        raise NegationClipError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise NegationClipError(
            f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    except OSError as e:  # permission denied, I/O error
        raise os_error(path, e, "read") from None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise os_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # mkstemp makes 0600; honour umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise os_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in one rename.

    On any exception the temporary folder is removed and ``path`` is left as it was, so an
    output folder is never half-written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise NegationClipError(f"{path}: already exists (pass overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; honour umask
    except OSError as e:
        raise os_error(path, e) from None
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        oe = as_os_error(e)  # also native writers' I/O errors (safetensors, ...)
        if oe is not None:
            raise os_error(path, oe) from None
        raise
    try:
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise os_error(path, e) from None
    _fsync_dir(path.parent)


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` into bytes, for ``atomic_write_bytes`` or a file inside ``atomic_dir``."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def load_torch_state(path: str | os.PathLike) -> Any:
    """A saved tensor state read with ``weights_only=True`` (no pickled code runs); a damaged or
    foreign file is a NegationClipError naming it."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise NegationClipError(f"{path}: cannot read saved state ({type(e).__name__}: {e})") from None


def read_jsonl(path: str | os.PathLike, *, repair: bool = False) -> list[dict]:
    """Read a JSONL file.

    A last line without its newline is kept if it is a whole JSON record (hand-written files
    often end so); if it does not parse it is what a killed writer leaves behind and is dropped.
    With ``repair=True`` the file is mended so appending resumes cleanly: a torn tail is cut, a
    whole one gets its newline. A malformed line anywhere else is an error naming file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise os_error(path, e, "read") from None
    records: list[dict] = []
    good_end = 0
    pos = 0
    lineno = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        lineno += 1
        if nl == -1:  # unterminated tail: a whole record, or a write that was interrupted
            try:
                tail = data[pos:].strip()
                if tail:
                    records.append(json.loads(tail))
                if repair:
                    with open(path, "ab") as f:
                        f.write(b"\n")
                good_end = len(data) + (1 if repair else 0)
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass
            break
        line = data[pos:nl].strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise NegationClipError(f"{path}:{lineno}: malformed JSONL record: {e.msg}") from None
            except UnicodeDecodeError:
                raise NegationClipError(f"{path}:{lineno}: malformed JSONL record: not UTF-8") from None
        pos = nl + 1
        good_end = pos
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return records


class JsonlWriter:
    """Append records one line each, flushed and fsynced, so a killed job loses at most the
    record being written (which ``read_jsonl(repair=True)`` then removes)."""

    def __init__(self, path: str | os.PathLike, *, append: bool = True, fsync: bool = True):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if append and self.path.exists():
                read_jsonl(self.path, repair=True)
            self._f = open(self.path, "a" if append else "w", encoding="utf-8")
        except OSError as e:
            raise os_error(self.path, e) from None
        self._fsync = fsync

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n"
        try:
            self._f.write(line)
            self._f.flush()
            if self._fsync:
                os.fsync(self._f.fileno())
        except OSError as e:
            raise os_error(self.path, e) from None

    def sync(self) -> None:
        """Flush and fsync now (for writers opened with ``fsync=False`` that sync per chunk)."""
        if not self._f.closed:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            except OSError as e:
                raise os_error(self.path, e) from None

    def write_many(self, records) -> None:
        for r in records:
            self.write(r)

    def close(self) -> None:
        if not self._f.closed:
            try:
                self._f.close()
            except OSError as e:  # the buffered tail could not be written
                raise os_error(self.path, e) from None

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
