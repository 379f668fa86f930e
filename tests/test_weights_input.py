"""Weights files are untrusted input: whatever a `.pt`, `.safetensors` or `.h5` file holds,
`mbcompile weights` ends with a converted file or one short line and exit code 2,
never runs code from the file, never reads more than the spec needs, and never
writes its target on failure. Half-precision state_dicts convert."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, SPECS, build, run_cli

pytestmark = pytest.mark.usefixtures("no_hang")

SMALL = ("width_multiplier=0.25", "resolution=32")


def weights(source, target, *extra) -> tuple[int, str]:
    argv = ["weights", SPECS / "v1.yaml", "--from", source, "--to", target, *extra]
    for override in SMALL:
        argv += ["--set", override]
    code, _, err = run_cli(argv)
    return code, err


def assert_refused(code: int, err: str, fragment: str, target: Path) -> None:
    assert code == 2, err
    (line,) = err.splitlines()
    assert line.startswith("mbcompile: error: ") and len(line) < 600, line
    assert fragment in line, line
    assert "weights_only" not in line and "Traceback" not in line
    assert not target.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A state_dict of v1 with SMALL's overrides and its Keras conversion."""
    import torch

    tmp = tmp_path_factory.mktemp("trained")
    _, _, model = build(SPECS / "v1.yaml", "torch", tmp, SMALL)
    state = model.state_dict()
    pt = tmp / "trained.pt"
    torch.save(state, pt)
    h5 = tmp / "trained.weights.h5"
    code, err = weights(pt, h5)
    assert code == 0, err
    return state, pt, h5


# ----------------------------------------------------------------- PyTorch files


def _first_weight(state) -> str:
    return next(k for k in state if k.endswith("weight"))


def _retyped(dtype: str):
    def change(state):
        import torch

        key = _first_weight(state)
        state[key] = state[key].to(getattr(torch, dtype))
        return state

    return change


def _poisoned(value: float):
    def change(state):
        key = _first_weight(state)
        state[key] = state[key].clone()
        state[key].view(-1)[0] = value
        return state

    return change


def _changed_value(make):
    def change(state):
        key = _first_weight(state)
        state[key] = make(state[key])
        return state

    return change


def _quantized(tensor):
    import torch

    with warnings.catch_warnings():  # deprecated in torch, still loadable
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(tensor, 0.1, 0, torch.qint8)


def _huge_view(tensor):
    """2^40 elements over a storage of one: a view declares what no file holds."""
    import torch

    return torch.zeros(1).expand(2**20, 2**20)


class _Payload:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_state(path: Path, state) -> None:
    import torch

    torch.save(state, path)


# case -> (change to the state_dict, or the raw bytes of the file; the message)
STATE_DICTS = {
    "integer keys": (
        lambda s: dict(enumerate(s.values())),
        "keys are strings",
    ),
    "sparse tensor": (_changed_value(lambda t: t.to_sparse()), "sparse"),
    "quantized tensor": (_changed_value(_quantized), "quantized"),
    "meta tensor": (_changed_value(lambda t: t.to("meta")), "meta tensor"),
    "complex tensor": (_retyped("complex64"), "complex numbers"),
    "integer tensor": (_retyped("int64"), "not floating-point"),
    "NaN": (_poisoned(float("nan")), "NaN or infinite"),
    "infinity": (_poisoned(float("-inf")), "NaN or infinite"),
    "a list value": (_changed_value(lambda t: [1, 2, 3]), "is a list, not a tensor"),
    "a checkpoint without weights": (
        lambda s: {"epoch": 3, "optimizer": {"lr": 0.1}},
        "holds no state_dict_ema/model_ema/state_dict/model",
    ),
    "not a mapping": (lambda s: list(s.values()), "expected a state_dict"),
    "a huge view": (_changed_value(_huge_view), "has shape (1048576, 1048576)"),
}


@pytest.mark.parametrize("case", sorted(STATE_DICTS))
def test_bad_state_dicts_are_refused(tmp_path, trained, case):
    state, _, _ = trained
    change, fragment = STATE_DICTS[case]
    source = tmp_path / "bad.pt"
    _write_state(source, change({k: v.clone() for k, v in state.items()}))
    target = tmp_path / "out.weights.h5"
    code, err = weights(source, target)
    assert_refused(code, err, fragment, target)


def _raw(content: bytes):
    return lambda tmp, good: content


def _truncated(tmp: Path, good: Path) -> bytes:
    return good.read_bytes()[: good.stat().st_size // 2]


def _malicious(tmp: Path, good: Path) -> bytes:
    return pickle.dumps({"w": _Payload(tmp / "pwned")})


RAW_PT_FILES = {
    "empty": (_raw(b""), "not a readable PyTorch file"),
    "text": (_raw(b"hello, world\n" * 10), "not a readable PyTorch file"),
    "truncated": (_truncated, "not a readable PyTorch file"),
    "malicious pickle": (_malicious, "refused without running them"),
}


@pytest.mark.parametrize("case", sorted(RAW_PT_FILES))
def test_unreadable_pt_files_are_refused_without_running_them(tmp_path, trained, case):
    _, good, _ = trained
    make, fragment = RAW_PT_FILES[case]
    source = tmp_path / "bad.pt"
    source.write_bytes(make(tmp_path, good))
    target = tmp_path / "out.weights.h5"
    code, err = weights(source, target)
    assert_refused(code, err, fragment, target)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_half_and_double_precision_state_dicts_convert(tmp_path, trained, dtype):
    import h5py
    import torch

    state, _, _ = trained
    typed = {
        k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v
        for k, v in state.items()
    }
    source = tmp_path / f"{dtype}.pt"
    torch.save(typed, source)
    target = tmp_path / "out.weights.h5"
    code, err = weights(source, target)
    assert code == 0, err
    # Every value arrives as the float32 rounding of what the file holds.
    expected = sorted(
        v.to(torch.float32).numpy().size
        for k, v in typed.items()
        if not k.endswith("num_batches_tracked")
    )
    with h5py.File(target) as file:
        arrays = []
        file.visititems(
            lambda name, obj: (
                arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    assert all(a.dtype == np.float32 for a in arrays)
    assert sorted(a.size for a in arrays) == expected
    back = tmp_path / "back.pt"
    code, err = weights(target, back)
    assert code == 0, err
    for key, value in torch.load(back, weights_only=True).items():
        if not key.endswith("num_batches_tracked"):
            assert value.dtype == torch.float32
            assert torch.equal(value, typed[key].to(torch.float32)), key


# ------------------------------------------------------------------- Keras files


def _first_vars(file) -> str:
    return sorted(name for name in file["layers"])[0] + "/vars"


def _edit(change):
    """A copy of the good file with `change(file, vars_path)` applied."""

    def make(tmp: Path, good: Path) -> Path:
        import h5py

        path = tmp / "bad.weights.h5"
        shutil.copy(good, path)
        with h5py.File(path, "r+") as file:
            change(file, f"layers/{_first_vars(file)}")
        return path

    return make


def _replace(factory):
    def change(file, vars_path):
        shape = file[f"{vars_path}/0"].shape
        del file[f"{vars_path}/0"]
        factory(file, f"{vars_path}/0", shape)

    return _edit(change)


def _legacy(layer_names, build_group=None):
    def make(tmp: Path, good: Path) -> Path:
        import h5py

        path = tmp / "legacy.h5"
        with h5py.File(path, "w") as file:
            file.attrs["layer_names"] = layer_names
            if build_group:
                build_group(file)
        return path

    return make


def _soft_link_to_itself(file, name, shape):
    import h5py

    file[name] = h5py.SoftLink(f"/{name}")


def _external_link(file, name, shape):
    import h5py

    file[name] = h5py.ExternalLink("/dev/zero", "/x")


def _string_dataset(file, name, shape):
    import h5py

    file.create_dataset(name, shape=shape, dtype=h5py.string_dtype())


def _looping_layer(file):
    import h5py

    file["loop"] = h5py.SoftLink("/loop")


def _external_storage(file, name, shape):
    raw = Path(file.filename).with_name("raw.bin")
    raw.write_bytes(b"\0" * 4 * int(np.prod(shape)))
    file.create_dataset(
        name, shape=shape, dtype="f4", external=[(raw.name, 0, 4 * int(np.prod(shape)))]
    )


def _garbage(tmp: Path, good: Path) -> Path:
    path = tmp / "garbage.weights.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * 4000)
    return path


def _truncated_h5(tmp: Path, good: Path) -> Path:
    path = tmp / "half.weights.h5"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


# case -> (make the file from the good one, what the one-line message says)
H5_FILES = {
    "missing variable": (
        _edit(lambda f, v: f.__delitem__(f"{v}/0")),
        "has no variable 0",
    ),
    "group for a dataset": (
        _replace(lambda f, n, s: f.create_group(n)),
        "is a group where a dataset belongs",
    ),
    "string dataset": (_replace(_string_dataset), "not floating-point"),
    "integer dataset": (
        _replace(lambda f, n, s: f.create_dataset(n, shape=s, dtype="i8")),
        "not floating-point",
    ),
    "complex dataset": (
        _replace(lambda f, n, s: f.create_dataset(n, shape=s, dtype="c8")),
        "not floating-point",
    ),
    "NaN values": (
        _replace(lambda f, n, s: f.create_dataset(n, data=np.full(s, np.nan, "f4"))),
        "NaN or infinite",
    ),
    "16 GB declared": (
        _replace(
            lambda f, n, s: f.create_dataset(
                n, shape=(2**16, 2**16), dtype="f4", chunks=(64, 64)
            )
        ),
        "has shape (65536, 65536)",
    ),
    "soft link loop": (_replace(_soft_link_to_itself), "soft link"),
    "external link": (_replace(_external_link), "external link"),
    "external storage": (_replace(_external_storage), "keeps its data in other files"),
    "legacy non-UTF-8 name": (_legacy([b"\xff\xfe"]), "not UTF-8"),
    "legacy missing layer": (_legacy([b"conv1"]), "listed but missing"),
    "legacy names of numbers": (_legacy([1, 2, 3]), "not a list of names"),
    "legacy group loop": (_legacy([b"loop"], _looping_layer), "soft link"),
    "not HDF5": (_garbage, "not a readable HDF5 file"),
    "truncated": (_truncated_h5, "HDF5"),
}


@pytest.mark.parametrize("case", sorted(H5_FILES))
def test_malformed_keras_files_are_refused(tmp_path, trained, case):
    _, _, good = trained
    make, fragment = H5_FILES[case]
    source = make(tmp_path, good)
    assert source.stat().st_size < 2 * good.stat().st_size  # whatever it declares
    target = tmp_path / "out.pt"
    code, err = weights(source, target)
    assert_refused(code, err, fragment, target)


# ------------------------------------------------------------ safetensors files


def _safetensors(header: dict, data: bytes, length: int | None = None) -> bytes:
    """A safetensors file as the format describes it: the header's length (8 bytes,
    little-endian), the JSON header, the tensors' bytes."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _one(dtype="F32", shape=(2, 2), offsets=(0, 16)) -> dict:
    return {"w": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}


def _from_state(change):
    """The trained state_dict saved by safetensors itself, after `change`."""

    def make(tmp: Path, state) -> bytes:
        from safetensors.torch import save

        return save(change({k: v.clone() for k, v in state.items()}))

    return make


def _raw_safetensors(content: bytes):
    return lambda tmp, state: content


def _half_file(tmp: Path, state) -> bytes:
    from safetensors.torch import save

    whole = save(dict(state))
    return whole[: len(whole) * 3 // 4]


# case -> (the file's bytes from the trained state_dict, what the message says,
# whether the safetensors library itself refuses the file too)
SAFETENSORS_FILES = {
    "oversized header": (
        _raw_safetensors(_safetensors(_one(), bytes(16), length=2**40)),
        "over the limit",
        True,
    ),
    "header past the end": (
        _raw_safetensors(_safetensors(_one(), bytes(16), length=10_000)),
        "truncated",
        True,
    ),
    "header not JSON": (
        _raw_safetensors(struct.pack("<Q", 5) + b"{nope" + bytes(16)),
        "not JSON",
        True,
    ),
    "overlapping offsets": (
        _raw_safetensors(
            _safetensors(
                {**_one(), "v": {**_one()["w"], "data_offsets": [8, 24]}}, bytes(24)
            )
        ),
        "overlaps",
        True,
    ),
    "a gap": (
        _raw_safetensors(
            _safetensors(
                {**_one(), "v": {**_one()["w"], "data_offsets": [32, 48]}}, bytes(48)
            )
        ),
        "belong to no tensor",
        True,
    ),
    "unknown dtype": (
        _raw_safetensors(_safetensors(_one(dtype="F128"), bytes(16))),
        "unknown dtype",
        True,
    ),
    "bytes that do not fit the shape": (
        _raw_safetensors(_safetensors(_one(offsets=(0, 20)), bytes(20))),
        "need 16",
        True,
    ),
    "truncated data": (
        _raw_safetensors(_safetensors(_one(), bytes(8))),
        "truncated",
        True,
    ),
    "truncated file": (_half_file, "truncated", True),
    "integer tensor": (_from_state(_retyped("int64")), "not floating-point", False),
    "NaN": (_from_state(_poisoned(float("nan"))), "NaN or infinite", False),
}


@pytest.mark.parametrize("case", sorted(SAFETENSORS_FILES))
def test_hostile_safetensors_files_are_refused(tmp_path, trained, case):
    state, _, _ = trained
    make, fragment, malformed = SAFETENSORS_FILES[case]
    source = tmp_path / "bad.safetensors"
    source.write_bytes(make(tmp_path, state))
    target = tmp_path / "out.weights.h5"
    code, err = weights(source, target)
    assert_refused(code, err, fragment, target)
    if malformed:  # the format's own reader agrees the file is malformed
        from safetensors import SafetensorError, safe_open

        with pytest.raises(SafetensorError):
            with safe_open(source, framework="numpy") as opened:
                for name in opened.keys():
                    opened.get_tensor(name)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_safetensors_convert(tmp_path, trained, dtype):
    import torch
    from safetensors.torch import save_file

    state, _, _ = trained
    typed = {
        k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v
        for k, v in state.items()
    }
    source = tmp_path / f"{dtype}.safetensors"
    save_file(typed, source)
    target = tmp_path / "out.pt"
    code, err = weights(source, target)
    assert code == 0, err
    for key, value in torch.load(target, weights_only=True).items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, typed[key].to(torch.float32)), key


# --------------------------------------------------------------- --from paths


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo.pt")
    return tmp / "fifo.pt"


def _loop(tmp: Path) -> Path:
    (tmp / "a.pt").symlink_to(tmp / "b.pt")
    (tmp / "b.pt").symlink_to(tmp / "a.pt")
    return tmp / "a.pt"


def _directory(tmp: Path) -> Path:
    (tmp / "folder.pt").mkdir()
    return tmp / "folder.pt"


def _device(tmp: Path) -> Path:
    (tmp / "zero.pt").symlink_to("/dev/zero")
    return tmp / "zero.pt"


FROM_PATHS = {
    "fifo": (_fifo, "is a FIFO"),
    "symlink loop": (_loop, "Too many levels of symbolic links"),
    "directory": (_directory, "a folder without model.safetensors"),
    "device": (_device, "is a character device"),
    "missing": (lambda tmp: tmp / "missing.pt", "file not found"),
    "name too long": (lambda tmp: tmp / ("w" * 300 + ".pt"), "File name too long"),
    "path too long": (
        lambda tmp: tmp / "/".join(["d" * 200] * 30) / "w.pt",
        "File name too long",
    ),
    "NUL byte": (lambda tmp: f"{tmp}/w\0.pt", "NUL byte"),
}


@pytest.mark.parametrize("case", sorted(FROM_PATHS))
def test_unusable_from_paths_are_one_line(tmp_path, case):
    make, fragment = FROM_PATHS[case]
    target = tmp_path / "out.weights.h5"
    code, err = weights(make(tmp_path), target)
    assert_refused(code, err, fragment, target)


# ----------------------------------------------------------- one line, no noise


@pytest.mark.parametrize("source_name", ["mismatch.weights.h5", "garbage.pt"])
def test_the_one_line_is_all_standard_error_shows(tmp_path, trained, source_name):
    """TensorFlow writes its logging to descriptor 2 before any setting can stop
    it; none of it may precede the one-line message."""
    _, _, good_h5 = trained
    source = tmp_path / source_name
    if source_name.endswith(".pt"):
        source.write_bytes(b"garbage")
        target = tmp_path / "out.weights.h5"
    else:
        shutil.copy(good_h5, source)
        target = tmp_path / "out.pt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbcompile",
            "weights",
            str(SPECS / "v1.yaml"),
            "--from",
            str(source),
            "--to",
            str(target),
            "--set",
            "width_multiplier=0.5",
        ],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("mbcompile: error: ")
