"""A checkpoint as read: named tensors whose type and shape are known before any
value is read, so that a file that does not fit the spec costs nothing and a small
file declaring a huge tensor is refused before it is touched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SpecError, shorten

# Floating-point types a weight may come in; each arrives as float32.
FLOAT_TYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class Tensor:
    """One tensor of a checkpoint. `read()` gives its values as float32 (checked
    finite); `problem` says why it cannot be a weight (None: it can); `release()`
    gives back the memory its values occupy in a mapped file once they have been
    used (a later `read()` still works)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    _read: Callable[[], np.ndarray] = field(repr=False, compare=False)
    problem: str | None = None
    _release: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def read(self, source: str) -> np.ndarray:
        array = np.asarray(self._read(), dtype=np.float32)
        if array.shape != self.shape:  # a reader's bug, not the file's
            raise RuntimeError(
                f"{self.name}: read {array.shape}, declared {self.shape}"
            )
        if not np.isfinite(array).all():
            raise SpecError(
                f"{source}: tensor '{shorten(self.name)}' holds NaN or infinite values"
            )
        return array

    def release(self) -> None:
        if self._release is not None:
            self._release()


@dataclass
class Checkpoint:
    """Named tensors and what came with them.

    `layout` is "torch" (state_dict keys, PyTorch's layout) or "keras" (layer
    names, each tensor named `<layer>/<i>` in Keras' order and layout);
    `ordered` says whether the file's order means something (a pickled state_dict:
    yes; safetensors, sorted by name: no); `config` is a Hugging Face
    `config.json` when one came with the weights; `notes` are what was chosen on
    the way (a training checkpoint's key, prefixes removed), for the user.
    """

    source: str  # as messages name it
    layout: str
    tensors: dict[str, Tensor]
    ordered: bool
    notes: list[str] = field(default_factory=list)
    files: list[Any] = field(default_factory=list, repr=False)  # closed by close()

    def close(self) -> None:
        for handle in self.files:
            handle.close()
        self.files.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
