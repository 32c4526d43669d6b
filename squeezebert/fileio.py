"""Files that are never half-written, and text files whose decoding errors name the place.

Writing: every file the package writes atomically goes through :func:`atomic_path` (write a temporary sibling
``.NAME.tmp-PID``, fsync it, rename it over the target, fsync the directory so the rename survives a power cut).
On any failure the temporary is removed and the target keeps its old content; a failed write (a full disk, a
quota) is a :class:`WriteError` (an OSError) naming the file, whatever library did the writing. Directories
(checkpoints, ``best/``) are built under a temporary name by :func:`atomic_dir`, every file in them fsynced, then
renamed into place. Temporaries left by a killed process are removed by :func:`remove_stale_temporaries` at the
next start.

Reading: :func:`decode_problem` says where and why a file is not UTF-8 (gzip, UTF-16, latin-1, binary), as the
file's line and byte offset, for the readers' one-line errors.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"
# ``.NAME.tmp-PID`` / ``.NAME.old-PID`` (ours) and ``.tmp-NAME-PID`` (checkpoints written before this module)
_STALE = re.compile(r"^\.(?:.+\.(?:tmp|old)-|tmp-.+-)(\d+)$")
# Libraries that write files themselves report a failed write in their own way: torch.save as a RuntimeError
# ("unexpected pos"), safetensors as a SafetensorError. Either, while writing, means the file could not be written.
_WRITE_FAILURES = (OSError, RuntimeError, SafetensorError)


class WriteError(OSError):
    """A file or directory could not be written; nothing was replaced. The message names the path."""


def temporary_sibling(path: Path, mark: str = TMP_MARK) -> Path:
    return path.with_name(f".{path.name}{mark}{os.getpid()}")


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """fsync every file under ``directory``, then every directory (deepest first), so all of it is on disk."""
    folders = []
    for root, _, files in os.walk(directory):
        folders.append(Path(root))
        for name in files:
            fsync_path(Path(root) / name)
    for folder in reversed(folders):
        fsync_path(folder)


def _write_error(path: Path, error: BaseException) -> WriteError:
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
    except OSError:
        free = ""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    code = error.errno if isinstance(error, OSError) else None
    return WriteError(code, f"{path}: could not be written ({reason}{free}); the previous version, if any, is intact")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path`` durably, on failure it goes."""
    path = Path(path)
    tmp = temporary_sibling(path)
    _remove(tmp)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        _remove(tmp)
        if isinstance(error, _WRITE_FAILURES) and not isinstance(error, WriteError):
            raise _write_error(path, error) from error
        raise
    fsync_path(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None: JSON has no NaN, and an undefined metric (the correlation
    of constant predictions) is better written as null than as a file no JSON parser accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_text(value: Any, indent: int | None = 2) -> str:
    """Strict JSON (non-finite floats as null, see :func:`json_safe`)."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, value: Any) -> None:
    write_text(path, json_text(value) + "\n")


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``final``; when the block ends it is fsynced and swapped in.

    An existing ``final`` is moved aside and removed only once the new one is in place; a kill between the two
    renames leaves the old one as ``.NAME.old-PID``, which :func:`remove_stale_temporaries` puts back."""
    final = Path(final)
    tmp = temporary_sibling(final)
    _remove(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException as error:
        _remove(tmp)
        if isinstance(error, _WRITE_FAILURES) and not isinstance(error, WriteError):
            raise _write_error(final, error) from error
        raise
    old = temporary_sibling(final, OLD_MARK)
    _remove(old)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_path(final.parent)
    _remove(old)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, but from before this start (a pid reused within one container): stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (files and directories) that dead processes left in ``directory``; a moved-aside
    ``.NAME.old-PID`` whose ``NAME`` is missing (killed mid-swap) is put back instead. Returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in sorted(directory.iterdir()):
        match = _STALE.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        if OLD_MARK in entry.name:
            original = directory / entry.name[1:entry.name.rindex(OLD_MARK)]
            if not original.exists():
                os.rename(entry, original)
                continue
        _remove(entry)
        removed.append(entry)
    return removed


# ---- reading ------------------------------------------------------------------------------------------------------

_BOM = codecs.BOM_UTF8


class NotTextError(ValueError):
    """A file that should be UTF-8 text is not; the message names the file, its line and the byte offset."""


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped); a file that is not UTF-8 is a NotTextError."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        line, problem = decode_problem(path)
        raise NotTextError(f"{path}:{line}: {problem}" if line else f"{path}: {problem}") from None


def _hint(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "the file is gzip-compressed: decompress it first"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "the file is UTF-16: convert it to UTF-8"
    if b"\x00" in head:
        return "the file looks binary (or UTF-16), not text"
    return "latin-1 / Windows-1252 text? re-save it as UTF-8"


def decode_problem(path: str | os.PathLike) -> tuple[int | None, str]:
    """(1-based line, problem) for the first byte of ``path`` that is not UTF-8; (None, ...) if none is found.

    Reads in chunks with an incremental decoder, so the offset is the file's and a huge file costs no memory."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        head = f.read(4096)
        f.seek(len(_BOM) if head.startswith(_BOM) else 0)
        offset, lines = f.tell(), 1
        while chunk := f.read(1 << 20):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                start = error.start - pending  # position within this chunk (negative: in the carried-over bytes)
                at = offset + start
                lines += chunk.count(b"\n", 0, max(start, 0))
                bad = error.object[error.start]
                return lines, f"byte 0x{bad:02x} at offset {at} is not UTF-8 ({_hint(head)})"
            offset += len(chunk)
            lines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return lines, f"the file ends inside a UTF-8 character (offset {offset}) ({_hint(head)})"
    return None, f"not UTF-8 text ({_hint(head)})"


__all__ = ["NotTextError", "WriteError", "atomic_dir", "atomic_path", "decode_problem", "fsync_path", "fsync_tree",
           "json_safe", "json_text", "read_text", "remove_stale_temporaries", "write_bytes", "write_json",
           "write_text"]
