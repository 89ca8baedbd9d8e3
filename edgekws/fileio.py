"""Atomic file and folder writes: nothing is ever left half-written.

Every artefact is first written next to its destination under a temporary name and then renamed
into place; `os.replace` is atomic on POSIX within one file system, so a reader (or a resumed run)
sees either the old file, the new file, or nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edgekws.errors import EdgeKWSError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` (and parents) and check we can write into it, with a one-line error if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeKWSError(f"cannot create output folder '{path}': {exc.strerror or exc}") from None
    if not path.is_dir():
        raise EdgeKWSError(f"output path '{path}' exists and is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise EdgeKWSError(f"output folder '{path}' is not writable")
    return path


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success rename it onto `dest`, else remove it."""
    dest = Path(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except FileNotFoundError:
        raise EdgeKWSError(f"cannot write '{dest}': folder '{dest.parent}' does not exist") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal rights
        os.replace(tmp_path, dest)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if _about(exc, tmp_path):  # name the user's file, not our temp name
            raise EdgeKWSError(f"cannot write '{dest}': {exc.strerror or first_line(exc)}") from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _about(exc: OSError, tmp: Path) -> bool:
    """Whether a write error concerns our temp path: it names it, or it names no file and is a
    disk-level failure (full, over quota, too large, I/O) of the writes into it."""
    import errno

    if exc.filename is None and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
        return True
    return any(f is not None and str(f).startswith(str(tmp)) for f in (exc.filename, exc.filename2))


def write_bytes_atomic(dest: Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dest: Path, text: str) -> None:
    write_bytes_atomic(dest, text.encode("utf-8"))


def write_json_atomic(dest: Path, obj: object) -> None:
    write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(dest: Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name, then rename it onto `dest` only if the block succeeds."""
    dest = Path(dest)
    ensure_writable_dir(dest.parent)
    if dest.exists() and not overwrite:
        raise EdgeKWSError(f"'{dest}' already exists (use --force to replace it)")
    sweep_stale(dest.parent, f".{dest.name}.*")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        replace_dir(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _about(exc, tmp):  # name the user's folder, not our temp name
            raise EdgeKWSError(f"cannot write '{dest}': {exc.strerror or first_line(exc)}") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: Path, dest: Path) -> None:
    """Put folder `new` at `dest` by rename, never delete-then-rename: an existing `dest` is
    moved aside, `new` renamed in, and only then is the old one removed (or put back if the
    rename failed). A kill at any point leaves `dest` either old or new, never partial."""
    new, dest = Path(new), Path(dest)
    if not dest.exists():
        os.replace(new, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.replace(dest, old / dest.name)
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(old / dest.name, dest)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


STALE_SECONDS = 24 * 3600


def sweep_stale(folder: Path, pattern: str, max_age: float = STALE_SECONDS) -> list[Path]:
    """Remove temp files and folders matching `pattern` in `folder` untouched for `max_age`
    seconds: what a killed run left behind (a live run's temp is younger, or is touched as it
    is written). Returns what was removed."""
    import time

    removed = []
    now = time.time()
    try:
        candidates = list(Path(folder).glob(pattern))
    except OSError:
        return removed
    for p in candidates:
        try:
            if now - p.lstat().st_mtime < max_age:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what C++ libraries (TensorFlow's converter, LiteRT) print straight to fd 2."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first non-empty line of an exception's message (its type name when it has none):
    library errors can be empty or span pages, a user message is one line."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


def read_bytes(path: Path, what: str) -> bytes:
    """A file's bytes, with one-line errors naming the file (missing, a folder, unreadable)."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EdgeKWSError(f"{what} '{path}' does not exist") from None
    except IsADirectoryError:
        raise EdgeKWSError(f"{what} '{path}' is a folder, not a file") from None
    except OSError as exc:
        raise EdgeKWSError(f"cannot read {what} '{path}': {exc.strerror or first_line(exc)}") from None


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file (see `read_bytes`), or a one-line error with the offending byte's offset."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeKWSError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def parse_json(text: str, where: str, expect: type | None = dict):
    """JSON text → value, one-line errors for malformed or too deeply nested input and, with
    `expect`, for a top-level value of another type."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgeKWSError(f"{where}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise EdgeKWSError(f"{where}: JSON nested too deeply") from None
    if expect is not None and not isinstance(value, expect):
        kind = {dict: "an object", list: "an array"}.get(expect, expect.__name__)
        raise EdgeKWSError(f"{where}: expected a JSON {kind}, got {type(value).__name__}")
    return value


def load_json(path: Path, what: str, expect: type | None = dict):
    """A JSON file (see `read_text` and `parse_json`)."""
    return parse_json(read_text(path, what), str(path), expect)


def load_toml(path: Path, what: str) -> dict:
    """A TOML file as a dict, with one-line errors naming the file."""
    import tomllib

    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EdgeKWSError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise EdgeKWSError(f"{path}: TOML nested too deeply") from None


_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
          dict: "a table"}


def shown_key(key: str) -> str:
    """A document's key as an error message may show it: control characters (a newline in a
    key of a hand-edited or corrupt file) escaped, so the message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in key)


def typed(doc: dict, key: str, typ: type, where: str, default=..., lo: float | None = None,
          hi: float | None = None, prefix: str = "", positive: bool = False):
    """`doc[key]` checked for type (an int is a valid float, a bool is not a number), finiteness
    and range [lo, hi], with one-line errors naming `where`, the key, what was expected and what
    was found. A missing key is an error unless a default is given."""
    if key not in doc:
        if default is ...:
            raise EdgeKWSError(f"{where}: missing key '{shown_key(prefix + key)}' ({_KINDS.get(typ, typ.__name__)})")
        return default
    v = doc[key]
    number = typ in (int, float)
    ok = isinstance(v, typ) and not (number and isinstance(v, bool))
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        ok, v = True, float(v)
    if not ok:
        raise EdgeKWSError(f"{where}: key '{shown_key(prefix + key)}' must be {_KINDS.get(typ, typ.__name__)}, "
                           f"got {type(v).__name__} {v!r}"[:300])
    if number:
        check_range(v, f"{where}: key '{shown_key(prefix + key)}'", lo, hi, positive)
    return v


def check_range(v: float, what: str, lo: float | None = None, hi: float | None = None,
                positive: bool = False) -> float:
    """`v` finite and within [lo, hi] (and > 0 with `positive`), or a one-line error saying the
    range."""
    import math

    bad = (not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi)
           or (positive and v <= 0))
    if bad:
        def f(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        rng = (f"greater than 0 and at most {f(hi)}" if positive and hi is not None
               else f"between {f(lo)} and {f(hi)}" if lo is not None and hi is not None
               else f"at least {f(lo)}" if lo is not None else f"at most {f(hi)}" if hi is not None
               else "a finite number greater than 0" if positive else "finite")
        raise EdgeKWSError(f"{what} must be {rng} (got {v!r})")
    return v


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
