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
one-line error (or `?` for the character), never in a traceback. Progress of long
work (`Progress`) goes to standard error.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
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
    return write_stream(target, lambda handle: handle.write(data), inputs)


def write_stream(
    target: str | Path,
    write: Callable[[BinaryIO], object],
    inputs: Inputs = NO_INPUTS,
) -> Path:
    """`write_file` for content that `write(handle)` produces into the temporary
    file (a file too large to hold in memory, or written by a library such as
    h5py). The handle never raises on a write the system refuses (a full disk, a
    file-size limit: EFBIG): it records the failure and takes no more data, so the
    library finishes as if all went well — HDF5, told of a failed write, can crash
    the process when it closes the file — and the failure is reported after
    `write` returns. Nothing is left behind on failure."""
    path, replaced = check_target(target, inputs)
    shown = shorten_path(target)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mbc-", suffix=".tmp", dir=folder)
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot write {shown}: {_reason(exc)}") from None
    try:
        with GuardedFile(fd) as handle:
            write(handle)
            handle.flush()
            handle.check()
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


def move_folder(
    source: Path, target: str | Path, inputs: Inputs = NO_INPUTS, *, marker: str
) -> Path:
    """Put a finished folder (a SavedModel) at `target`: copied beside it under a
    short temporary name, then renamed into place, so that no reader sees half of
    it. An existing `target` is replaced only if it is a folder holding `marker`
    (what this command writes: `saved_model.pb`); anything else there is refused.
    Returns the path written."""
    path = Path(target)
    shown = shorten_path(target)
    check_target(path / marker, inputs)
    old = None
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_dir() or not (path / marker).is_file():
            raise SpecError(
                f"refusing to replace {shown}: it is not a folder this command "
                f"wrote (no {marker} in it)"
            )
        old = path
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".mbc-", suffix=".tmp", dir=folder))
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot write {shown}: {_reason(exc)}") from None
    retired = None
    try:
        for item in sorted(source.rglob("*")):
            destination = tmp / item.relative_to(source)
            if item.is_dir():
                destination.mkdir()
            else:
                copy_file(item, destination)
        os.chmod(tmp, 0o777 & ~_umask())
        if old is not None:
            retired = Path(tempfile.mkdtemp(prefix=".mbc-", suffix=".old", dir=folder))
            os.replace(old, retired / "replaced")
        os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if retired is not None and not path.exists():
            with contextlib.suppress(OSError):
                os.replace(retired / "replaced", path)  # the old folder back
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
        if isinstance(exc, OSError):
            raise SpecError(f"cannot write {shown}: {_reason(exc)}") from None
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    _sync_folder(folder)
    return path


def copy_file(source: Path, target: str | Path, inputs: Inputs = NO_INPUTS) -> Path:
    """`write_file` with the bytes of the file `source` (read in pieces)."""
    with source.open("rb") as data:
        return write_stream(target, lambda handle: _copy_data(data, handle), inputs)


def _copy_data(source, handle) -> None:
    while chunk := source.read(1 << 20):
        handle.write(chunk)


class GuardedFile(io.RawIOBase):
    """A read-write file on a descriptor whose failed writes are recorded rather
    than raised (see `write_stream`); `check()` raises the first."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.error: OSError | None = None

    def fileno(self) -> int:
        return self._fd

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def readinto(self, buffer) -> int:
        data = os.read(self._fd, len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += os.write(self._fd, view[done:])
            except OSError as exc:
                self.error = exc
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.tell() if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self.error = exc
        return size

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


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
    _stderr(line + "\n")


def _stderr(text: str) -> None:
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(text)
        stream.flush()


@contextlib.contextmanager
def quiet_stderr():
    """Descriptor 2 points at the null device inside: native libraries
    (TensorFlow's logging) write there directly, before any setting can stop them."""
    with _quiet(2):
        yield


@contextlib.contextmanager
def quiet_streams():
    """Descriptors 1 and 2 point at the null device inside: frameworks that print
    as they convert (TensorFlow's "Saved artifact at ...", ExecuTorch's cpuinfo
    notes) keep the command's own output readable."""
    with _quiet(1), _quiet(2):
        yield


@contextlib.contextmanager
def _quiet(fd: int):
    stream = sys.stdout if fd == 1 else sys.stderr
    with contextlib.suppress(AttributeError, OSError, ValueError):
        stream.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor at all: nothing to protect
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
        yield
    finally:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


# ------------------------------------------------------------------ progress


class Progress:
    """Progress of a command that takes seconds, on standard error: one line
    redrawn on a terminal; elsewhere (a log, a pipe) a line every tenth of the way
    once the work has taken a second, so quick runs stay silent and long ones show
    that they move."""

    QUIET_S = 1.0  # no lines before this, off a terminal

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.start = time.monotonic()
        stream = sys.stderr
        self.terminal = bool(stream is not None and stream.isatty())
        self.every = max(1, total // 10)
        self.shown = False

    def step(self) -> None:
        self.done += 1
        if self.terminal:
            _stderr(f"\r{self._line()}\x1b[K")
            self.shown = True
            return
        due = self.done % self.every == 0 or self.done == self.total
        if due and time.monotonic() - self.start >= self.QUIET_S:
            _stderr(self._line() + "\n")
            self.shown = True

    def close(self) -> None:
        if self.terminal and self.shown:
            _stderr("\n")

    def _line(self) -> str:
        seconds = time.monotonic() - self.start
        return f"{self.label}: {self.done}/{self.total} ({seconds:.0f} s)"
