"""PyTorch's pickled files, under any name (`model.pt`, `pytorch_model.bin`,
timm's `model_best.pth.tar`): a state_dict, or a training checkpoint holding one.

Unpickled with `weights_only=True`, so no code in the file runs: only tensors,
containers and plain values load (and `argparse.Namespace`, the arguments timm's
`train.py` stores beside the weights: a bag of attributes that runs nothing).

A zip-format file (what `torch.save` writes) is memory-mapped (`mmap=True`): its
tensors' bytes are read when they are converted, and a tensor's pages are given
back once its op is written (`Tensor.release`), so that a conversion holds about
one op's tensors at a time rather than the whole file beside torch. A file that
cannot be mapped exactly as it would be read — the legacy (non-zip) format,
compressed records, another byte order, no /proc — is loaded whole, as before.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Mapping

from ..errors import SpecError, shorten, shorten_path
from .tensors import Checkpoint, Tensor

# Where training checkpoints keep the weights, in the order timm's
# `load_checkpoint` prefers them (the EMA weights first: what it validates with).
STATE_DICT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
# Wrappers whose attribute prefixes the keys (timm's clean_state_dict): DDP's
# `module.`, torch.compile's `_orig_mod.`.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# BatchNorm's step counter: an integer buffer that no weight comes from.
SKIPPED_BUFFER = "num_batches_tracked"


def read(handle, display: str, key: str | None = None) -> Checkpoint:
    torch = import_torch()
    shown = shorten_path(display)
    loaded, pages = _load(torch, handle, shown)
    if not isinstance(loaded, Mapping):
        raise SpecError(
            f"{shown}: expected a state_dict (names -> tensors), got a "
            f"{type(loaded).__name__}"
        )
    notes: list[str] = []
    state = _state_dict(torch, loaded, shown, key, notes)
    tensors: dict[str, Tensor] = {}
    stripped = 0
    for index, (name, value) in enumerate(state.items()):
        label = f"{shown}: tensor {index}"
        if not isinstance(name, str):
            raise SpecError(
                f"{label}: key {shorten(repr(name))} is a {type(name).__name__}; "
                "state_dict keys are strings"
            )
        label += f" '{shorten(name)}'"
        if isinstance(value, Mapping):
            raise SpecError(f"{label} is a mapping, not a tensor")
        if not isinstance(value, torch.Tensor):
            raise SpecError(f"{label} is a {type(value).__name__}, not a tensor")
        clean = _unwrapped(name)
        stripped += clean != name
        if clean.endswith(SKIPPED_BUFFER):
            continue
        # A tensor that cannot be a weight is refused only if the spec uses it (a
        # Gemma 3n checkpoint's other towers hold integer step counters).
        tensors[clean] = Tensor(
            clean,
            tuple(value.shape),
            str(value.dtype).removeprefix("torch."),
            _reader(torch, value),
            _tensor_problem(torch, value),
            None if pages is None else pages.releaser(value),
        )
    if stripped:
        notes.append(
            f"removed the wrapper prefixes ({', '.join(WRAPPER_PREFIXES)}) of "
            f"{stripped} keys, as timm's clean_state_dict does"
        )
    return Checkpoint(display, "torch", tensors, ordered=True, notes=notes)


def import_torch():
    import torch

    return torch


def _load(torch, handle, shown: str):
    """(what the file holds, its `_Pages` when memory-mapped, else None)."""
    mapped = _load_mapped(torch, handle)
    if mapped is not None:
        return mapped
    handle.seek(0)
    try:
        return _torch_load(torch, handle), None
    except Exception as exc:  # torch raises many kinds for a file it cannot read
        raise SpecError(f"{shown}: {_load_problem(exc)}") from None


def _torch_load(torch, source, mapped: bool = False):
    with warnings.catch_warnings():  # torch's deprecation notes: not for users
        warnings.simplefilter("ignore")
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(
                source, map_location="cpu", weights_only=True, mmap=mapped
            )


def _load_mapped(torch, handle):
    """`torch.load(mmap=True)` of a file whose mapped tensors hold exactly what
    loading it whole gives: a zip archive of stored (uncompressed) records in this
    machine's byte order. None otherwise, or if the mapped load fails: the whole
    load then reads the file, or says why it cannot."""
    # the descriptor checked by the one input path, not the name again
    path = f"/proc/self/fd/{handle.fileno()}"
    if not os.path.exists(path) or not _mappable(handle):
        return None
    try:
        loaded = _torch_load(torch, path, mapped=True)
    except Exception:
        return None
    return loaded, _Pages.of(handle.fileno())


def _mappable(handle) -> bool:
    if os.pread(handle.fileno(), 4, 0) != b"PK\x03\x04":
        return False
    try:
        with zipfile.ZipFile(handle) as archive:
            records = archive.infolist()
            if any(r.compress_type != zipfile.ZIP_STORED for r in records):
                return False
            orders = [
                r for r in records if r.filename.rsplit("/", 1)[-1] == "byteorder"
            ]
            if any(r.file_size > 16 for r in orders):
                return False  # not a byte order: torch will say what is wrong
            # torch reads a file without the record as little-endian
            found = {archive.read(r).decode() for r in orders} or {"little"}
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError):
        return False
    return found == {sys.byteorder}


class _Pages:
    """The private mappings of a checkpoint file in this process (address ranges),
    whose pages a tensor stored in them gives back once it is written: MADV_DONTNEED
    drops clean pages of a file mapping, and a later access reads them from the
    file again (nothing writes to them: the file is in this machine's byte order,
    so torch swaps no bytes in place)."""

    def __init__(self, ranges: list[tuple[int, int]], madvise) -> None:
        self.ranges = ranges
        self.madvise = madvise

    @classmethod
    def of(cls, fd: int) -> _Pages | None:
        """None where the mappings cannot be found (no /proc, no madvise)."""
        try:
            st = os.fstat(fd)
            device = (os.major(st.st_dev), os.minor(st.st_dev))
            ranges = []
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    # start-end perms offset major:minor inode path
                    fields = line.split(maxsplit=5)
                    if len(fields) < 5 or fields[4] != str(st.st_ino):
                        continue
                    major, minor = (int(x, 16) for x in fields[3].split(":"))
                    if (major, minor) == device and fields[1].endswith("p"):
                        start, end = (int(x, 16) for x in fields[0].split("-"))
                        ranges.append((start, end))
            madvise = ctypes.CDLL(None, use_errno=True).madvise
            madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            dontneed = mmap.MADV_DONTNEED
        except (OSError, ValueError, AttributeError):
            return None
        if not ranges:
            return None
        return cls(ranges, lambda start, size: madvise(start, size, dontneed))

    def releaser(self, value):
        """`Tensor.release` for `value`: the whole pages of its storage, if they
        lie in the file's mappings (a tensor without storage has none)."""

        def release() -> None:
            try:
                storage = value.untyped_storage()
                begin, size = storage.data_ptr(), storage.nbytes()
            except Exception:  # sparse, nested, meta: no storage of its own
                return
            start = -(-begin // mmap.PAGESIZE) * mmap.PAGESIZE
            end = (begin + size) // mmap.PAGESIZE * mmap.PAGESIZE
            if end > start and any(a <= start and end <= b for a, b in self.ranges):
                self.madvise(start, end - start)

        return release


def _reader(torch, value):
    def read():
        return value.detach().to(torch.float32).numpy()

    return read


def _state_dict(torch, loaded: Mapping, shown: str, key: str | None, notes) -> Mapping:
    """The state_dict itself, or the one a training checkpoint holds."""
    candidates = [
        k
        for k, v in loaded.items()
        if isinstance(k, str)
        and isinstance(v, Mapping)
        and any(isinstance(t, torch.Tensor) for t in v.values())
    ]
    if key is not None:
        if key not in candidates:
            found = ", ".join(repr(shorten(c, 30)) for c in candidates) or "none"
            raise SpecError(
                f"{shown}: --key {shorten(repr(key))} is not a state_dict in this "
                f"checkpoint (its state_dicts: {shorten(found, 200)})"
            )
        chosen = key
    elif any(isinstance(v, torch.Tensor) for v in loaded.values()) or not loaded:
        return loaded  # a state_dict itself (its values are checked one by one)
    else:
        chosen = next((k for k in STATE_DICT_KEYS if k in candidates), None)
        if chosen is None:
            keys = ", ".join(repr(shorten(str(k), 30)) for k in list(loaded)[:12])
            hint = (
                f"; --key chooses one of {', '.join(map(repr, candidates))}"
                if candidates
                else ""
            )
            raise SpecError(
                f"{shown}: a training checkpoint? It holds no "
                f"{'/'.join(STATE_DICT_KEYS)} (its keys: {shorten(keys, 160)}){hint}"
            )
    others = [c for c in candidates if c != chosen]
    choose = f"; also in it: {', '.join(map(repr, others))} (--key)" if others else ""
    notes.append(f"read the training checkpoint's {chosen!r}{choose}")
    return loaded[chosen]


def _unwrapped(name: str) -> str:
    while name.startswith(WRAPPER_PREFIXES):
        for prefix in WRAPPER_PREFIXES:
            name = name.removeprefix(prefix)
    return name


def _load_problem(exc: Exception) -> str:
    """What `torch.load` found wrong, once and briefly: its advice to load with
    `weights_only=False` (running the file's code) is not for untrusted files."""
    text = " ".join(str(exc).split())
    found = re.search(
        r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text
    )
    if found or isinstance(exc, pickle.UnpicklingError):
        reason = found[1] if found else text
        return (
            "holds Python objects other than tensors and containers "
            f"({shorten(reason, 120)}); refused without running them"
        )
    return f"not a readable PyTorch file ({shorten(text, 160)})"


def _tensor_problem(torch, value) -> str | None:
    """Why a tensor cannot be a weight, judged without reading its values."""
    if value.layout != torch.strided or value.is_nested:
        return f"is a sparse or nested tensor ({value.layout}); expected a dense one"
    if value.is_quantized:
        return f"is quantized ({value.dtype}); expected floating-point numbers"
    if value.is_meta:
        return "is a meta tensor, which holds no values"
    if value.is_complex():
        return f"holds complex numbers ({value.dtype}); weights are real"
    if not value.is_floating_point():
        return f"holds {value.dtype}, not floating-point numbers"
    return None
