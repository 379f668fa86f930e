"""The one output path, for every command that writes a file: it never destroys
what is there (the command's own inputs, special files, read-only files), writes
atomically with short temporary names (any valid file name works), keeps the
permissions of the file it replaces, and writes the same bytes for the same input.
Standard output that is full, closed, broken or not UTF-8 ends cleanly."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT, SPECS, run_cli, run_limited

pytestmark = pytest.mark.usefixtures("no_hang")

# A small network, so that commands which build frameworks' models stay quick.
SMALL = ["--set", "width_multiplier=0.25", "--set", "resolution=32"]
SPEC_TEXT = (SPECS / "v1.yaml").read_text()


@pytest.fixture(scope="module")
def small_pt(tmp_path_factory):
    """A PyTorch state_dict that fits v1 with SMALL's overrides."""
    import torch

    from helpers import build

    tmp = tmp_path_factory.mktemp("pt")
    overrides = [SMALL[1], SMALL[3]]
    _, _, model = build(SPECS / "v1.yaml", "torch", tmp, overrides)
    path = tmp / "trained.pt"
    torch.save(model.state_dict(), path)
    return path


# Each command that writes a file: (suffix of its output, argv for spec and target).
WRITERS = {
    "compile": (".py", lambda spec, out, pt: [spec, "--backend", "torch", "-o", out]),
    "diagram": (".mmd", lambda spec, out, pt: ["diagram", spec, "-o", out]),
    "plot": (".png", lambda spec, out, pt: ["plot", spec, "-o", out]),
    "compare": (".svg", lambda spec, out, pt: ["compare", spec, "--plot", out]),
    "schema": (".json", lambda spec, out, pt: ["schema", "-o", out]),
    "weights": (
        ".weights.h5",
        lambda spec, out, pt: ["weights", spec, "--from", pt, "--to", out],
    ),
    "weights safetensors": (
        ".safetensors",
        lambda spec, out, pt: ["weights", spec, "--from", pt, "--to", out],
    ),
    "weights pt": (
        ".pt",
        lambda spec, out, pt: ["weights", spec, "--from", pt, "--to", out],
    ),
}
READS_A_SPEC = [name for name in WRITERS if name != "schema"]


def run(argv) -> tuple[int, str]:
    code, _, err = run_cli(argv)
    return code, err


def command(writer: str, spec: Path, target, pt: Path | None) -> list:
    argv = WRITERS[writer][1](spec, target, pt)
    return argv if writer == "schema" else [*argv, *SMALL]


def assert_refused(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    (line,) = err.splitlines()
    assert line.startswith("mbcompile: error: ") and fragment in line, line
    assert len(line) < 600


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".mbc-"))


# ------------------------------------------------------- inputs are never replaced


def _spec_itself(tmp: Path, suffix: str) -> tuple[Path, Path]:
    spec = tmp / f"input{suffix}"  # named like the output: the suffix checks pass
    spec.write_text(SPEC_TEXT)
    return spec, spec


def _symlink_to_spec(tmp: Path, suffix: str) -> tuple[Path, Path]:
    spec, _ = _spec_itself(tmp, suffix)
    link = tmp / f"link{suffix}"
    link.symlink_to(spec)
    return spec, link


def _hard_link_to_spec(tmp: Path, suffix: str) -> tuple[Path, Path]:
    spec, _ = _spec_itself(tmp, suffix)
    link = tmp / f"other{suffix}"
    os.link(spec, link)
    return spec, link


def _base_of_spec(tmp: Path, suffix: str) -> tuple[Path, Path]:
    base = tmp / f"base{suffix}"
    base.write_text(SPEC_TEXT)
    spec = tmp / "spec.yaml"
    spec.write_text(f"extends: {base.name}\nnum_classes: 10\n")
    return spec, base


INPUT_TARGETS = {
    "the spec": _spec_itself,
    "a symlink to the spec": _symlink_to_spec,
    "a hard link to the spec": _hard_link_to_spec,
    "a base it extends": _base_of_spec,
}


@pytest.mark.parametrize("case", sorted(INPUT_TARGETS))
@pytest.mark.parametrize("writer", READS_A_SPEC)
def test_output_never_replaces_an_input(tmp_path, writer, case, small_pt):
    spec, target = INPUT_TARGETS[case](tmp_path, WRITERS[writer][0])
    protected = {p: p.read_bytes() for p in tmp_path.iterdir()}
    code, err = run(command(writer, spec, target, small_pt))
    assert_refused(code, err, "refusing to overwrite")
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == protected
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("link", ["same path", "symlink", "hard link"])
def test_fold_bn_never_replaces_the_trained_weights(tmp_path, small_pt, link):
    trained = tmp_path / "trained.pt"
    shutil.copy(small_pt, trained)
    target = trained
    if link == "symlink":
        target = tmp_path / "folded.pt"
        target.symlink_to(trained)
    elif link == "hard link":
        target = tmp_path / "folded.pt"
        os.link(trained, target)
    before = trained.read_bytes()
    argv = ["weights", SPECS / "v1.yaml", "--fold-bn", "--from", trained]
    code, err = run([*argv, "--to", target, *SMALL])
    assert_refused(code, err, "it is the --from weights file")
    assert trained.read_bytes() == before


# ------------------------------------------------- special and read-only targets


def _fifo(tmp: Path, target: Path):
    os.mkfifo(target)
    return stat.S_ISFIFO


def _device(tmp: Path, target: Path):
    """A character device: a copy of /dev/null's node where we may create one
    (root), else /dev/null itself (which nobody but root could replace)."""
    try:
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        return None
    return stat.S_ISCHR


def _socket(tmp: Path, target: Path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(target))
    server.close()
    return stat.S_ISSOCK


def _directory(tmp: Path, target: Path):
    target.mkdir()
    return stat.S_ISDIR


def _read_only(tmp: Path, target: Path):
    target.write_bytes(b"kept")
    target.chmod(0o444)
    return stat.S_ISREG


SPECIAL = {
    "fifo": (_fifo, "a FIFO"),
    "device": (_device, "a character device"),
    "socket": (_socket, "a socket"),
    "directory": (_directory, "a directory"),
    "read-only file": (_read_only, "read-only"),
}


@pytest.mark.parametrize("case", sorted(SPECIAL))
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_special_and_read_only_targets_are_refused(writer, case, small_pt):
    make, fragment = SPECIAL[case]
    # A short folder: socket paths are limited to about 100 characters.
    folder = Path(tempfile.mkdtemp(prefix="mbc"))
    try:
        target = folder / f"out{WRITERS[writer][0]}"
        kind = make(folder, target)
        if kind is None:  # no mknod: /dev/null, which only root could replace
            target, kind = Path("/dev/null"), stat.S_ISCHR
        before = os.lstat(target)
        code, err = run(command(writer, SPECS / "v1.yaml", target, small_pt))
        assert_refused(code, err, fragment)
        after = os.lstat(target)
        assert kind(after.st_mode)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
        assert leftovers(folder) == []
    finally:
        shutil.rmtree(folder)


def _read_only_folder(tmp: Path, suffix: str) -> Path:
    folder = tmp / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / f"out{suffix}"


def _under_a_file(tmp: Path, suffix: str) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file" / f"out{suffix}"


def _name_too_long(tmp: Path, suffix: str) -> Path:
    return tmp / ("n" * 300 + suffix)


def _path_too_long(tmp: Path, suffix: str) -> Path:
    return tmp / "/".join(["d" * 200] * 30) / f"out{suffix}"


def _nul_byte(tmp: Path, suffix: str) -> str:
    return f"{tmp}/out\0{suffix}"


UNWRITABLE = {
    "folder path": (lambda tmp, suffix: f"{tmp}/new{suffix}/", "names a folder"),
    "read-only folder": (_read_only_folder, "read-only"),
    "under a file": (_under_a_file, "cannot write"),
    "name too long": (_name_too_long, "File name too long"),
    "path too long": (_path_too_long, "File name too long"),
    "NUL byte": (_nul_byte, "NUL byte"),
}


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_unwritable_targets_are_one_line_exit_2(tmp_path, writer, case, small_pt):
    make, fragment = UNWRITABLE[case]
    target = make(tmp_path, WRITERS[writer][0])
    try:
        code, err = run(command(writer, SPECS / "v1.yaml", target, small_pt))
        assert_refused(code, err, fragment)
    finally:
        for folder in tmp_path.iterdir():
            if folder.is_dir():
                folder.chmod(0o755)
    assert all(not p.is_file() or p.name == "file" for p in tmp_path.rglob("*"))


# ----------------------------------------------------------------- written well


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_any_valid_name_works_and_missing_folders_are_created(
    tmp_path, writer, small_pt
):
    suffix = WRITERS[writer][0]
    target = tmp_path / "a" / "b" / ("n" * (250 - len(suffix)) + suffix)
    code, err = run(command(writer, SPECS / "v1.yaml", target, small_pt))
    assert code == 0, err
    assert target.is_file() and target.stat().st_size > 0
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_replacing_keeps_permissions(tmp_path, writer, small_pt):
    target = tmp_path / f"out{WRITERS[writer][0]}"
    target.write_bytes(b"old")
    target.chmod(0o600)
    code, err = run(command(writer, SPECS / "v1.yaml", target, small_pt))
    assert code == 0, err
    assert target.read_bytes() != b"old"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_symlinked_target_is_written_through(tmp_path, writer, small_pt):
    suffix = WRITERS[writer][0]
    real = tmp_path / "real" / f"out{suffix}"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / f"link{suffix}"
    link.symlink_to(real)
    code, err = run(command(writer, SPECS / "v1.yaml", link, small_pt))
    assert code == 0, err
    assert link.is_symlink() and real.read_bytes() != b"old"


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failed_write_leaves_the_old_file(tmp_path, writer, small_pt, monkeypatch):
    target = tmp_path / f"out{WRITERS[writer][0]}"
    target.write_bytes(b"old")

    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    code, err = run(command(writer, SPECS / "v1.yaml", target, small_pt))
    assert_refused(code, err, "No space left on device")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------ the same bytes


DETERMINISTIC = {
    "plot png": ["plot", "{spec}", "-o", "{out}.png"],
    "plot svg": ["plot", "{spec}", "-o", "{out}.svg"],
    "plot pdf": ["plot", "{spec}", "-o", "{out}.pdf"],
    "compare svg": [
        "compare",
        "{spec}",
        "--variant",
        "num_classes=10",
        "--plot",
        "{out}.svg",
    ],
    "compare pdf": ["compare", "{spec}", "--plot", "{out}.pdf"],
    "weights h5": ["weights", "{spec}", "--from", "{pt}", "--to", "{out}.weights.h5"],
    "weights safetensors": [
        "weights",
        "{spec}",
        "--from",
        "{pt}",
        "--to",
        "{out}.safetensors",
    ],
    "weights pt": [
        "weights",
        "{spec}",
        "--fold-bn",
        "--from",
        "{pt}",
        "--to",
        "{out}.pt",
    ],
}


@pytest.mark.parametrize("case", sorted(DETERMINISTIC))
def test_the_same_input_gives_the_same_bytes(tmp_path, case, small_pt):
    outputs = []
    for name in ("first", "second_with_another_name_12345"):
        out = tmp_path / name
        argv = [
            a.format(spec=SPECS / "v1.yaml", out=out, pt=small_pt)
            for a in DETERMINISTIC[case]
        ]
        code, err = run([*argv, *SMALL])
        assert code == 0, err
        (written,) = tmp_path.glob(f"{name}.*")
        outputs.append(written.read_bytes())
        if case.startswith("weights"):
            time.sleep(1.1)  # HDF5 would record creation times in seconds
    assert outputs[0] == outputs[1]
    data = outputs[0]
    assert b"CreationDate" not in data and b"<dc:date>" not in data
    if case == "weights pt":
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        assert {n.split("/")[0] for n in names} == {"archive"}


# ----------------------------------------------------------- standard output

STDOUT_COMMANDS = {
    "report": [SPECS / "v2.yaml", "--report"],
    "costs": ["costs", SPECS / "v1.yaml", "--explain"],
    "source": [SPECS / "v2.yaml", "--backend", "torch", "-o", "-"],
    "schema": ["schema"],
    "compare": ["compare", SPECS / "v2.yaml", "--variant", "width_multiplier=0.5"],
}


def _full() -> tuple[dict, list[int]]:
    fd = os.open("/dev/full", os.O_WRONLY)
    return {"stdout": fd}, [fd]


def _closed() -> tuple[dict, list[int]]:
    return {"preexec_fn": lambda: os.close(1)}, []


def _broken_pipe() -> tuple[dict, list[int]]:
    read, write = os.pipe()
    os.close(read)
    return {"stdout": write}, [write]


# How standard output fails: (subprocess arguments and descriptors to close after).
STDOUT_FAILURES = {
    "full": (_full, "No space left on device"),
    "closed": (_closed, "it is closed"),
    "broken pipe": (_broken_pipe, "Broken pipe"),
}


def mbcompile_process(argv, env=None, **kwargs) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mbcompile", *map(str, argv)],
        stderr=subprocess.PIPE,
        env=environment,
        timeout=120,
        check=False,
        **kwargs,
    )


@pytest.mark.parametrize("failure", sorted(STDOUT_FAILURES))
@pytest.mark.parametrize("name", sorted(STDOUT_COMMANDS))
def test_standard_output_that_fails_is_one_line_exit_2(name, failure):
    prepare, fragment = STDOUT_FAILURES[failure]
    kwargs, descriptors = prepare()
    try:
        done = mbcompile_process(STDOUT_COMMANDS[name], **kwargs)
    finally:
        for fd in descriptors:
            os.close(fd)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.splitlines() == [
        f"mbcompile: error: cannot write to standard output: {fragment}"
    ]


@pytest.mark.parametrize("name", sorted(STDOUT_COMMANDS))
def test_standard_output_that_is_not_utf8_gets_replacements(name):
    done = mbcompile_process(
        STDOUT_COMMANDS[name],
        env={"PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"},
        stdout=subprocess.PIPE,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    assert done.stdout.isascii() and done.stdout


def test_closed_standard_error_keeps_the_exit_code(tmp_path):
    done = mbcompile_process(
        [tmp_path / "missing.yaml"], preexec_fn=lambda: os.close(2)
    )
    assert done.returncode == 2


# ------------------------------------------------- a file system that refuses


@pytest.mark.parametrize("suffix", [".weights.h5", ".pt", ".safetensors"])
def test_a_file_size_limit_is_exit_2_and_one_line(tmp_path, small_pt, suffix):
    """Every weights writer: one line naming the failure, never a crash inside
    HDF5 (which a failed write used to end in), and nothing left behind."""
    target = tmp_path / f"out{suffix}"
    argv = ["weights", SPECS / "v1.yaml", "--from", small_pt, "--to", target, *SMALL]
    done = run_limited(argv, 20_000)  # the file takes ~100 KB
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line == f"mbcompile: error: cannot write {target}: File too large"
    assert not target.exists() and leftovers(tmp_path) == []
    if suffix == ".weights.h5":  # within the limit, the same command works
        done = run_limited(argv, 10**9)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("suffix", [".weights.h5", ".pt", ".safetensors"])
def test_a_full_disk_is_exit_2_and_one_line(tmp_path, small_pt, suffix, monkeypatch):
    """ENOSPC from the first write that passes 20 KB, as a full disk gives it."""
    written = {}
    real = os.write

    def filling(fd, data):
        written[fd] = written.get(fd, 0) + len(data)
        if written[fd] > 20_000:
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", filling)
    target = tmp_path / f"out{suffix}"
    argv = ["weights", SPECS / "v1.yaml", "--from", small_pt, "--to", target, *SMALL]
    code, err = run(argv)
    assert_refused(code, err, "No space left on device")
    assert not target.exists() and leftovers(tmp_path) == []
