"""The one path for every file mbcompile reads or writes, and for its standard
streams.

Reading (`open_input`, `read_input`): regular files only, opened without blocking —
a FIFO or a device named as a spec or a weights file is refused instead of hanging
the command — and refused before reading when larger than the caller's limit.

Writing (`write_file`, checked up front with `check_target`) refuses to
- overwrite one of the command's own inputs (the spec, a file it extends, the
  `--from` weights) under any name: files are compared by device and inode, so
  symbolic and hard links count;
- replace anything but a regular file (a directory, a FIFO, a device such as
  /dev/null, a socket);
- replace a read-only file or write into a read-only folder (judged by the mode
  bits, so the answer is the same for root, who could);
then it writes the bytes to a short temporary name beside the target (any valid
file name works), flushes them to disk, gives them the replaced file's owner and
permissions (a new file: 0666 less the umask) and renames them over the target in
one step. A reader never sees half a file, and a failure leaves the old one as it
was. Every refusal and every failure of the operating system is a SpecError
(exit code 2).

Standard output that is full, closed or cannot encode a character ends in a
one-line error (or `?` for the character), never in a traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import SpecError, shorten_path

FileId = tuple[int, int]  # (device, inode): one file, under any of its names
# A command's input files -> what each is, e.g. "the spec this command reads".
Inputs = Mapping[FileId, str]

NO_INPUTS: Inputs = {}

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileError(SpecError):
    """An input that cannot be read as a file (whatever its content)."""


class MissingFile(FileError):
    """An input file that does not exist."""


def file_id(st: os.stat_result) -> FileId:
    return (st.st_dev, st.st_ino)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, ValueError) and "null" in str(exc):
        return "the path contains a NUL byte"
    return type(exc).__name__


# ------------------------------------------------------------------------ reading


def open_input(
    path: str | Path, display: str, limit: int, what: str
) -> tuple[BinaryIO, FileId]:
    """An open regular file of at most `limit` bytes (`what` it should be, for the
    message: "a spec"), and its identity. Errors name the file as `display`."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise MissingFile("file not found", source=display) from None
    except (OSError, ValueError) as exc:
        raise FileError(f"cannot read file ({_reason(exc)})", source=display) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(
                f"is {_kind(st.st_mode)}; expected a regular file", source=display
            )
        if st.st_size > limit:
            raise FileError(
                f"file is larger than {limit:,} bytes, the limit for {what}",
                source=display,
            )
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return handle, file_id(st)


@dataclass(frozen=True)
class InputFile:
    data: bytes
    id: FileId


def read_input(path: str | Path, display: str, limit: int, what: str) -> InputFile:
    """The bytes of a regular file of at most `limit` bytes, and its identity."""
    handle, identity = open_input(path, display, limit, what)
    with handle:
        try:
            # One byte past the limit: a file growing while we read is bounded too.
            data = handle.read(limit + 1)
        except OSError as exc:
            raise FileError(
                f"cannot read file ({_reason(exc)})", source=display
            ) from None
    if len(data) > limit:
        raise FileError(
            f"file is larger than {limit:,} bytes, the limit for {what}",
            source=display,
        )
    return InputFile(data, identity)


# ------------------------------------------------------------------------ writing


def check_target(
    target: str | Path, inputs: Inputs = NO_INPUTS
) -> tuple[Path, os.stat_result | None]:
    """Where `target` is written (a symbolic link is written through, to the file
    it names) and the file it replaces, if any; a SpecError if it may not be."""
    shown = shorten_path(target)
    if not str(target):
        raise SpecError("the output path is empty")
    if str(target).endswith(("/", os.sep)):  # Path() would drop the slash
        raise SpecError(f"refusing to write {shown}: it names a folder, not a file")
    path = Path(target)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot write {shown}: {_reason(exc)}") from None
    if st is not None:
        what = inputs.get(file_id(st))
        if what is not None:
            raise SpecError(f"refusing to overwrite {shown}: it is {what}")
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(
                f"refusing to write {shown}: it is {_kind(st.st_mode)}, not a "
                "regular file"
            )
        if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
            raise SpecError(f"refusing to overwrite {shown}: the file is read-only")
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    _check_folder(path.parent, shown)
    return path, st


def _check_folder(folder: Path, shown: str) -> None:
    """The folder that will hold the file, or its nearest existing ancestor (the
    rest is created), is a writable directory."""
    while True:
        try:
            st = os.stat(folder)
            break
        except FileNotFoundError:
            if folder == folder.parent:
                return
            folder = folder.parent
        except (OSError, ValueError) as exc:
            raise SpecError(f"cannot write {shown}: {_reason(exc)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SpecError(f"cannot write {shown}: {shorten_path(folder)} is not a folder")
    if not st.st_mode & 0o222:
        raise SpecError(f"cannot write {shown}: its folder is read-only")


def write_file(target: str | Path, data: bytes, inputs: Inputs = NO_INPUTS) -> Path:
    """Write `data` to `target` atomically, after `check_target`; missing folders
    are created. Returns the path written."""
    path, replaced = check_target(target, inputs)
    shown = shorten_path(target)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mbc-", suffix=".tmp", dir=folder)
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot write {shown}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replaced is not None:
            with contextlib.suppress(OSError):  # only root may give files away
                os.chown(tmp, replaced.st_uid, replaced.st_gid)
            os.chmod(tmp, stat.S_IMODE(replaced.st_mode))
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, a quota, ...: not our bug
            raise SpecError(f"cannot write {shown}: {_reason(exc)}") from None
        raise
    _sync_folder(folder)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system can)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------ the streams


def write_stdout(text: str) -> None:
    """Text to standard output, flushed. Characters its encoding lacks become `?`;
    a full, closed or broken output is a SpecError."""
    stream = sys.stdout
    if stream is None:  # started with descriptor 1 closed
        raise SpecError("cannot write to standard output: it is closed")
    try:
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="replace")
        stream.write(text)
        stream.flush()
    except (OSError, ValueError) as exc:
        _discard_stdout()
        reason = exc.strerror if isinstance(exc, OSError) else "it is closed"
        raise SpecError(f"cannot write to standard output: {reason}") from None


def flush_stdout() -> None:
    """The last flush before exiting, where a full output shows itself."""
    if sys.stdout is not None:
        write_stdout("")


def _discard_stdout() -> None:
    """Point descriptor 1 at the null device, so that the interpreter's own flush
    at exit neither fails again nor prints an 'Exception ignored' message."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def write_stderr(line: str) -> None:
    """One line of news or error on standard error; nowhere if it is closed."""
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(line + "\n")
        stream.flush()


@contextlib.contextmanager
def quiet_stderr():
    """Descriptor 2 points at the null device inside: native libraries
    (TensorFlow's logging) write there directly, before any setting can stop them."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all: nothing to protect
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
