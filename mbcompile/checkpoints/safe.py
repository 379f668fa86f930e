"""`.safetensors` files, read through the `safetensors` library, memory-mapped: a
tensor's bytes are read when it is converted, one at a time.

The header is checked here first, so that a hostile file gets a one-line reason
instead of the library's: its size (at most MAX_HEADER_BYTES, within the file),
JSON of the documented form, known types, each tensor's byte range matching its
type and shape, ranges that neither overlap nor leave gaps nor pass the file's end.
"""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

from ..errors import SpecError, shorten, shorten_path
from .pickled import SKIPPED_BUFFER
from .tensors import Checkpoint, Tensor

# The safetensors library's own limit.
MAX_HEADER_BYTES = 100_000_000
# safetensors' type names -> (NumPy's name, bytes per element).
DTYPES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
}
FLOATS = ("F64", "F32", "F16", "BF16")


def read(handle, path: str, display: str) -> Checkpoint:
    shown = shorten_path(display)
    entries = _header(handle, shown)
    try:
        from safetensors import safe_open
    except ImportError:
        raise SpecError(
            "reading .safetensors needs the safetensors package; install the "
            "extra: pip install 'mbcompile[weights]'"
        ) from None
    try:
        # the descriptor checked by the one input path, not the name again
        opened = safe_open(f"/proc/self/fd/{handle.fileno()}", framework="numpy")
    except FileNotFoundError:  # no /proc (not Linux)
        opened = safe_open(path, framework="numpy")
    except Exception as exc:
        raise SpecError(f"{shown}: {shorten(str(exc), 200)}") from None
    tensors = {}
    for name, (dtype, shape, begin) in entries.items():
        if name.endswith(SKIPPED_BUFFER):  # BatchNorm's step counter
            continue
        problem = (
            None if dtype in FLOATS else f"holds {dtype}, not floating-point numbers"
        )
        if dtype == "BF16":  # NumPy has no bfloat16: widened from the raw bytes
            read_one = _bfloat16(handle, begin, shape)
        else:
            read_one = _tensor(opened, name)
        tensors[name] = Tensor(name, shape, DTYPES[dtype][0], read_one, problem)
    checkpoint = Checkpoint(display, "torch", tensors, ordered=False)
    checkpoint.files.append(_Closing(opened))
    return checkpoint


class _Closing:
    """A safe_open handle (a context manager without close())."""

    def __init__(self, opened) -> None:
        self.opened = opened

    def close(self) -> None:
        self.opened.__exit__(None, None, None)


def _tensor(opened, name: str):
    return lambda: opened.get_tensor(name)


def _bfloat16(handle, begin: int, shape: tuple[int, ...]):
    def read() -> np.ndarray:
        count = math.prod(shape)
        raw = os.pread(handle.fileno(), 2 * count, begin)
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)

    return read


def _header(handle, shown: str) -> dict:
    """name -> (dtype, shape, absolute offset of its bytes)."""
    size = os.fstat(handle.fileno()).st_size
    first = os.pread(handle.fileno(), 8, 0)
    if len(first) < 8:
        raise SpecError(f"{shown}: not a safetensors file (shorter than its header)")
    (length,) = struct.unpack("<Q", first)
    if length > MAX_HEADER_BYTES:
        raise SpecError(
            f"{shown}: its header declares {length:,} bytes, over the limit of "
            f"{MAX_HEADER_BYTES:,}"
        )
    if 8 + length > size:
        raise SpecError(
            f"{shown}: truncated: its header declares {length:,} bytes, the file "
            f"holds {size - 8:,} after the length"
        )
    raw = os.pread(handle.fileno(), length, 8)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SpecError(
            f"{shown}: its header is not JSON ({shorten(str(exc), 80)})"
        ) from None
    if not isinstance(header, dict):
        raise SpecError(f"{shown}: its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(v, str) for v in metadata.values()
    ):
        raise SpecError(f"{shown}: its __metadata__ is not a mapping of strings")
    data_start, data_size = 8 + length, size - 8 - length
    entries, ranges = {}, []
    for name, entry in header.items():
        label = f"{shown}: tensor '{shorten(name)}'"
        dtype, shape, (begin, end) = _entry(entry, label)
        expected = math.prod(shape) * DTYPES[dtype][1]
        if end - begin != expected:
            raise SpecError(
                f"{label}: its bytes {begin}..{end} are {end - begin:,}, its type "
                f"and shape {tuple(shape)} need {expected:,}"
            )
        if end > data_size:
            raise SpecError(
                f"{label}: truncated: its bytes end at {end:,}, the file holds "
                f"{data_size:,}"
            )
        entries[name] = (dtype, tuple(shape), data_start + begin)
        ranges.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin < position:
            raise SpecError(
                f"{shown}: tensor '{shorten(name)}' overlaps the tensor before it "
                f"(its bytes start at {begin:,}, before {position:,})"
            )
        if begin > position:
            raise SpecError(
                f"{shown}: {begin - position:,} bytes before tensor "
                f"'{shorten(name)}' belong to no tensor"
            )
        position = end
    if position != data_size:
        raise SpecError(
            f"{shown}: {data_size - position:,} bytes at the end belong to no tensor"
        )
    return entries


def _entry(entry, label: str) -> tuple[str, list[int], tuple[int, int]]:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise SpecError(f"{label}: not of the form {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise SpecError(f"{label}: unknown dtype {shorten(repr(dtype))}")
    if not (
        isinstance(shape, list)
        and len(shape) <= 8
        and all(type(d) is int and 0 <= d < 2**40 for d in shape)
    ):
        raise SpecError(f"{label}: shape {shorten(repr(shape))} is not a list of sizes")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(o) is int and 0 <= o < 2**63 for o in offsets)
        and offsets[0] <= offsets[1]
    ):
        raise SpecError(
            f"{label}: data_offsets {shorten(repr(offsets))} is not [begin, end]"
        )
    return dtype, shape, (offsets[0], offsets[1])
