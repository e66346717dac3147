"""Safe output writes for every command: check the location first, write under a temporary name beside
it, rename into place at the end. Torch-free.

A refused or failed write leaves what was there before as it was, and an OS error (full disk, no
permission, read-only file system, a file where a folder should be) becomes an :class:`OutputError`
naming the path and what to do.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import NexError, OutputError

_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or choose a location on another disk",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another location",
    errno.EACCES: "permission denied: choose a location you can write to, or change its permissions",
    errno.EPERM: "the operation is not permitted: choose a location you can write to",
    errno.EROFS: "the file system is read-only: choose a location on a writable disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another location",
    errno.EISDIR: "it is a folder: choose a file name",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    errno.ENOENT: "a folder on the way does not exist or was removed: check the path",
    errno.EEXIST: "something already exists there: move it or choose another location",
}


def temp_sibling(path: Path, tag: str = "partial") -> Path:
    """A hidden, unique name in the same folder as ``path`` (so renaming it onto ``path`` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")


def describe_os_error(exc: OSError) -> str:
    """An OS error as one line for a user: the file it is about and what to do."""
    advice = _ADVICE.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{exc.filename}: {advice}" if exc.filename else advice


def _is_temp_of(name: Path, path: Path) -> bool:
    return name.parent == Path(path).parent and name.name.startswith(f".{Path(path).name}.")


def output_error(path: Path, exc: OSError, what: str = "output") -> OutputError:
    """An :class:`OutputError` for an OS error met while writing ``path``."""
    advice = _ADVICE.get(exc.errno or 0, exc.strerror or str(exc))
    where = ""
    if exc.filename and Path(str(exc.filename)) != Path(path) and not _is_temp_of(Path(str(exc.filename)), path):
        where = f" (at {exc.filename})"
    return OutputError(f"cannot write the {what} {path}{where}: {advice}")


@contextmanager
def os_errors_as_output_errors(path: Path, what: str = "output", only_inside: bool = False) -> Iterator[None]:
    """Turn an OSError raised inside the block into an :class:`OutputError` naming ``path``.

    ``only_inside``: only errors about ``path`` or a file below it (the block also reads other files,
    whose errors are not about the output)."""
    try:
        yield
    except NexError:
        raise
    except OSError as exc:
        if only_inside and not _is_inside(exc.filename, Path(path)):
            raise
        raise output_error(Path(path), exc, what) from exc


def _is_inside(name, folder: Path) -> bool:
    if not name:
        return False
    name = Path(os.path.abspath(str(name)))
    folder = Path(os.path.abspath(folder))
    return name == folder or folder in name.parents


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def _check_creatable(path: Path, what: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a folder we may write into."""
    ancestor = _existing_ancestor(path.parent if str(path.parent) else Path("."))
    if not ancestor.is_dir():
        raise OutputError(f"cannot create the {what} {path}: {ancestor} is a file, not a folder; "
                          "choose another location")
    _probe(ancestor, f"cannot create the {what} {path}")


def _probe(folder: Path, failure: str) -> None:
    """Check that a folder can be written by creating and removing an empty folder in it (permission
    bits alone say nothing for root, /proc or a read-only mount)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{failure}: no permission to write in {folder}; choose a location you can write to")
    probe = temp_sibling(folder / "nex-write-check", "probe")
    try:
        os.mkdir(probe)
    except OSError as exc:
        raise OutputError(f"{failure}: {folder} does not accept new files ({exc.strerror}); choose a location "
                          "on a writable disk") from exc
    os.rmdir(probe)


def check_output_file(path: Path, what: str = "output file") -> Path:
    """Check up front that the file ``path`` can be written (created or replaced); returns it."""
    path = Path(path)
    if os.path.lexists(path):
        if path.is_dir():
            raise OutputError(f"the {what} {path} is a folder; choose a file name")
        _probe(path.parent, f"cannot replace the {what} {path}")
        return path
    _check_creatable(path, what)
    return path


def check_output_dir(path: Path, what: str = "folder of nex output",
                     replaceable: Callable[[Path], bool] | None = None) -> Path:
    """Check up front that the folder ``path`` can be created, or replaced as a whole; returns it.

    ``replaceable(path)`` says whether an existing folder holds only what this output writes (default:
    only an empty folder may be replaced), so that a user's other folder is never swapped away.
    """
    path = Path(path)
    if os.path.lexists(path):
        if path.is_symlink() or not path.is_dir():
            raise OutputError(f"the {what} {path} exists and is not a folder; move it or choose another location")
        if not (replaceable or _is_empty)(path):
            raise OutputError(f"{path} exists and is not a {what} (it holds other files); move them or "
                              "choose another location")
        _probe(path.parent, f"cannot replace the {what} {path}")
        return path
    _check_creatable(path, what)
    return path


def _is_empty(path: Path) -> bool:
    return not any(path.iterdir())


def swap_into_place(new: Path, path: Path) -> None:
    """Rename the folder ``new`` onto ``path``; an existing ``path`` is set aside first and removed only
    once ``new`` is in place (put back if the rename fails)."""
    old = None
    if os.path.lexists(path):
        old = temp_sibling(path, "old")
        os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replacing_dir(path: Path, what: str = "folder of nex output",
                  replaceable: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; on success it replaces ``path`` whole. On any
    error the temporary folder is removed and ``path`` is left as it was (OS errors -> OutputError)."""
    path = Path(path)
    check_output_dir(path, what, replaceable)
    tmp = temp_sibling(path)
    try:
        with os_errors_as_output_errors(path, what):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            yield tmp
            swap_into_place(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def replacing_file(path: Path, what: str = "output file") -> Iterator[Path]:
    """Yield a temporary file name beside ``path`` to write; on success it is renamed onto ``path``. On any
    error it is removed and ``path`` is left as it was (OS errors -> OutputError)."""
    path = Path(path)
    check_output_file(path, what)
    tmp = temp_sibling(path)
    try:
        with os_errors_as_output_errors(path, what):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def write_bytes(path: Path, data: bytes, what: str = "output file") -> Path:
    """Write ``data`` to ``path`` atomically (temporary name, fsync, rename)."""
    with replacing_file(path, what) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: Path, text: str, what: str = "output file") -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), what)
