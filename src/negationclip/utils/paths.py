"""The one output-path guard, the output lock, and OSError -> NegationClipError.

Every command checks its outputs with ``check_output`` before any work starts, so a run that
cannot write its result fails in a second, not after an hour of embedding. Every writer turns
an ``OSError`` (disk full, permission denied, read-only file system, a file where a folder is
needed) into a NegationClipError naming the path, via ``os_error`` or ``writing``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import NegationClipError

_WHY = {
    errno.ENOSPC: "no space left on device",
    errno.EFBIG: "file too large (disk quota or file-size limit reached)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a path component is a file, not a folder",
    errno.EISDIR: "is a folder",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "name too long",
}


def os_error(path, e: OSError, action: str = "write") -> NegationClipError:
    """A NegationClipError for an OSError met while doing ``action`` on ``path``."""
    why = _WHY.get(e.errno or -1) or e.strerror or str(e)
    other = e.filename if e.filename not in (None, "") and str(e.filename) != str(path) else None
    if e.errno in (errno.EEXIST, errno.ENOTDIR) and other is not None and Path(other).is_file():
        why, other = f"{other} is a file, where a folder is needed", None
    return NegationClipError(f"{path}: cannot {action}: {why}" + (f" ({other})" if other else ""))


def as_os_error(e: BaseException) -> OSError | None:
    """The OSError behind ``e``: itself, or one a native writer reported as text (safetensors
    raises ``SafetensorError("... I/O error: File too large (os error 27)")``)."""
    if isinstance(e, OSError):
        return e
    m = re.search(r"\(os error (\d+)\)", str(e))
    if m:
        n = int(m.group(1))
        return OSError(n, os.strerror(n))
    return None


@contextlib.contextmanager
def writing(path, action: str = "write") -> Iterator[None]:
    """Run a block that writes ``path``; an OSError becomes a NegationClipError naming it."""
    try:
        yield
    except Exception as e:
        oe = as_os_error(e)
        if oe is None:
            raise
        raise os_error(path, oe, action) from None


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (threads are running)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def lock_path(path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".lock")


def check_output(path, *, kind: str = "file", overwrite: bool = False, resume: bool = False,
                 must_not_exist: bool = False, option: str = "--out") -> Path:
    """Refuse an output path that cannot work, before any work starts.

    ``kind``: "file" or "dir" (what the command writes at ``path``). Refuses ``resume`` with
    ``overwrite``; a folder where a file is expected and the reverse; ``must_not_exist`` outputs
    that exist (unless ``overwrite``); a parent that is a file; a location where nothing can be
    created (permissions, read-only file system: a probe file is really created, so this holds
    for root too); and an output another process holds the lock of (``OutputLock``).
    """
    if resume and overwrite:
        raise NegationClipError(f"{option} {path}: --resume and --overwrite contradict each other "
                                f"(resume continues the run, overwrite deletes it); pass one")
    p = Path(path).expanduser()
    if str(path) == "":
        raise NegationClipError(f"{option}: empty path")
    if p.exists():
        if kind == "file" and p.is_dir():
            raise NegationClipError(f"{option} {p}: is a folder, expected a file")
        if kind == "dir" and not p.is_dir() and not (overwrite and must_not_exist):
            raise NegationClipError(f"{option} {p}: is a file, expected a folder")
        if must_not_exist and not overwrite and not resume:
            raise NegationClipError(f"{option} {p}: already exists (pass --overwrite to replace it)")
    base = _nearest_existing(p.parent if not p.exists() or kind == "file" else p)
    if not base.is_dir():
        raise NegationClipError(f"{option} {p}: {base} is a file, so no folder can be made under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".negationclip-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise os_error(base, e, f"create {option} {p} there") from None
    holder = lock_holder(p)
    if holder is not None:
        raise NegationClipError(f"{option} {p}: in use by another process ({holder}); wait for it "
                                f"or stop it")
    return p


def lock_holder(path) -> str | None:
    """Who holds ``OutputLock(path)`` right now ("pid N on HOST since T"), or None."""
    import fcntl

    lp = lock_path(path)
    if not lp.exists():
        return None
    try:
        fd = os.open(lp, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(lp)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe(lp: Path) -> str:
    try:
        info = json.loads(lp.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return f"lock file {lp}"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info['pid']} on {info.get('host', '?')} since {since}; lock file {lp}"


class OutputLock:
    """An exclusive ``flock`` on ``PATH.lock`` for as long as one process writes ``PATH``.

    A second writer (another ``--resume`` of the same output, a run on another shell) is
    refused with a message naming the holder's pid and host. The kernel drops the lock when
    the process dies, so a killed run never leaves a stale lock (the file stays, unlocked).
    flock works across hosts on local file systems and most modern NFS setups.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.lock_file = lock_path(self.path)
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        import fcntl

        try:
            self.lock_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise os_error(self.lock_file, e, "create the output lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NegationClipError(f"{self.path}: another process is writing this output "
                                    f"({_describe(self.lock_file)}); wait for it to finish or "
                                    f"stop it, then --resume") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode() + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
