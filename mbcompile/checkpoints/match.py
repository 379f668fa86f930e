"""A checkpoint's tensors matched to a spec's parametric ops.

By name, as `load_state_dict` does (safetensors files store tensors sorted by name,
so their order means nothing): the spec's state_dict keys for a PyTorch file, its
layer names for a Keras file. What does not fit is reported as `load_state_dict`
reports it — missing keys, unexpected keys, size mismatches — one line each, cut
to a readable length. A pickled state_dict whose names are not the spec's (another
implementation's attribute names) still fits by position when every shape agrees
in order, as before names were matched; the user is told.

Fine-tuning: when the checkpoint classifies into another number of classes than
the spec (`--set num_classes=10`), or has no classifier, every other tensor is
ported and the logits layer keeps its initialisation, as timm does for
`pretrained=True, num_classes=10`; the result says which tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..backends.weights import initial_logits, keras_to_torch
from ..errors import SpecError, SpecErrors, shorten, shorten_path
from ..ir.graph import Graph
from .layout import OpLayout, layout
from .tensors import Checkpoint, Tensor

LISTED = 6  # names quoted per line before "... and N more"
LOGITS = "classifier.logits"  # the IR's logits op


class Slot(NamedTuple):
    """A tensor the spec needs: its name in the checkpoint's layout, its shape
    there, and the index of its op."""

    name: str
    shape: tuple[int, ...]
    op: int


@dataclass
class Matched:
    """Per parametric op (IR order), a reader of its PyTorch-layout float32
    arrays; `initialised` names the tensors left at their initialisation;
    `sources` the checkpoint's tensors each op's arrays come from."""

    layouts: list[OpLayout]
    readers: list[Callable[[], list[np.ndarray]]]
    initialised: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: list[list[Tensor]] = field(default_factory=list)

    def groups(self, release: bool = False):
        """Each op's arrays in turn (one op's held at a time). With `release`, a
        consumer that is done with an op's arrays when it asks for the next op's
        (a writer streaming them to a file) lets the checkpoint give back their
        memory as it goes."""
        for index, read in enumerate(self.readers):
            yield read()
            if release and index < len(self.sources):
                for tensor in self.sources[index]:
                    tensor.release()


def match(graph: Graph, checkpoint: Checkpoint) -> Matched:
    layouts = layout(graph)
    shown = shorten_path(checkpoint.source)
    keras = checkpoint.layout == "keras"
    slots = _slots(layouts, keras)
    notes = list(checkpoint.notes)
    found = {s.name: checkpoint.tensors.get(s.name) for s in slots}
    used = {s.name for s in slots}
    if None in found.values() and _fits_in_order(slots, checkpoint):
        theirs, ours = next(
            (t, s.name)
            for s, t in zip(slots, checkpoint.tensors, strict=True)
            if t != s.name
        )
        notes.append(
            f"matched {shown}'s tensors by position: it names them otherwise "
            f"('{shorten(theirs)}' where the spec has '{shorten(ours)}')"
        )
        found = dict(zip(found, checkpoint.tensors.values(), strict=True))
        used = set(checkpoint.tensors)
    unexpected = [n for n in checkpoint.tensors if n not in used]
    missing = [s for s in slots if found[s.name] is None]
    mismatched = [
        s for s in slots if found[s.name] is not None and found[s.name].shape != s.shape
    ]
    logits = _fine_tuning(layouts, missing + mismatched, found)
    if logits is not None:
        missing = [s for s in missing if s.op != logits]
        mismatched = [s for s in mismatched if s.op != logits]
    problems = _problems(shown, layouts, checkpoint, slots, found, missing, unexpected)
    problems += _size_problems(shown, layouts, found, mismatched)
    if problems:
        raise SpecErrors(problems) if len(problems) > 1 else problems[0]
    readers, initialised, sources = [], [], []
    by_op: list[list[Tensor]] = [[] for _ in layouts]
    for s in slots:
        by_op[s.op].append(found[s.name])
    for index, entry in enumerate(layouts):
        if index == logits:
            readers.append(_initial(graph, entry))
            initialised += list(entry.torch_keys)
            sources.append([])
        else:
            readers.append(_reader(entry, by_op[index], keras, shown))
            sources.append(by_op[index])
    if logits is not None:
        entry = layouts[logits]
        bias = found.get(
            next(s.name for s in slots if s.op == logits and len(s.shape) == 1)
        )
        theirs = f"{bias.shape[0]} classes" if bias is not None else "no classifier"
        notes.append(
            f"left {', '.join(entry.torch_keys)} at their initialisation: the "
            f"checkpoint has {theirs}, the spec {entry.op.attrs['out_f']} classes "
            "(fine-tuning, as timm's pretrained=True with another num_classes)"
        )
    return Matched(layouts, readers, initialised, notes, sources)


def _slots(layouts: list[OpLayout], keras: bool) -> list[Slot]:
    slots = []
    for index, entry in enumerate(layouts):
        shapes = entry.op.keras_shapes if keras else entry.op.torch_shapes
        names = (
            [f"{entry.keras_name}/{i}" for i in range(len(shapes))]
            if keras
            else entry.torch_keys
        )
        slots += [Slot(n, s, index) for n, s in zip(names, shapes, strict=True)]
    return slots


def _fits_in_order(slots: list[Slot], checkpoint: Checkpoint) -> bool:
    tensors = list(checkpoint.tensors.values())
    return (
        checkpoint.ordered
        and len(tensors) == len(slots)
        and all(t.shape == s.shape for t, s in zip(tensors, slots, strict=True))
    )


def _fine_tuning(layouts: list[OpLayout], wrong: list[Slot], found) -> int | None:
    """The logits op's index when it alone does not fit — by its class count only,
    or missing altogether — else None."""
    index = next((i for i, e in enumerate(layouts) if e.op.name.endswith(LOGITS)), None)
    if index is None or {s.op for s in wrong} != {index}:
        return None
    tensors = [found[s.name] for s in wrong]
    if len(wrong) < len(layouts[index].op.torch_shapes):
        return None  # part of the classifier fits: a damaged file, not another task
    if all(t is None for t in tensors):
        return index  # a checkpoint without a classifier
    in_f = layouts[index].op.attrs["in_f"]
    for slot, tensor in zip(wrong, tensors, strict=True):
        # weight: PyTorch (out, in), Keras (in, out) or (1, 1, in, out); bias (out,)
        if tensor is None or len(tensor.shape) != len(slot.shape):
            return None
        if len(slot.shape) > 1 and in_f not in tensor.shape:
            return None
    return index


def _problems(shown, layouts, checkpoint, slots, found, missing, unexpected):
    """Unreadable tensors, missing and unexpected ones: a line each."""
    problems = []
    bad = next((t for t in found.values() if t is not None and t.problem), None)
    if bad is not None:
        problems.append(
            SpecError(f"{shown}: tensor '{shorten(bad.name)}' {bad.problem}")
        )
    if missing:
        first = missing[0]
        op = layouts[first.op].op
        listed = _listed(
            [f"'{shorten(first.name)}' {first.shape} for {op.name} ({op.kind})"]
            + [f"'{shorten(s.name)}'" for s in missing[1:]]
        )
        problems.append(
            SpecError(
                f"{shown}: missing {len(missing)} tensor(s) the spec needs: {listed}"
            )
        )
    if unexpected:
        listed = _listed(
            [f"'{shorten(n)}' {checkpoint.tensors[n].shape}" for n in unexpected[:1]]
            + [f"'{shorten(n)}'" for n in unexpected[1:]]
        )
        problems.append(
            SpecError(
                f"{shown}: {len(unexpected)} unexpected tensor(s), which the spec has "
                f"no place for: {listed}"
            )
        )
    return problems


def _size_problems(shown, layouts, found, mismatched) -> list[SpecError]:
    if not mismatched:
        return []
    first = mismatched[0]
    op = layouts[first.op].op
    more = len(mismatched) - 1
    return [
        SpecError(
            f"{shown}: '{shorten(first.name)}' has shape {found[first.name].shape}; "
            f"the spec needs {first.shape} for {op.name} ({op.kind})"
            + (f" (and {more} more tensors of other shapes)" if more else "")
        )
    ]


def _listed(items: list[str]) -> str:
    text = ", ".join(items[:LISTED])
    if len(items) > LISTED:
        text += f" ... and {len(items) - LISTED} more"
    return text


def _reader(entry: OpLayout, tensors: list[Tensor], keras: bool, shown: str):
    def read() -> list[np.ndarray]:
        arrays = [t.read(shown) for t in tensors]
        return keras_to_torch(entry.op, arrays) if keras else arrays

    return read


def _initial(graph: Graph, entry: OpLayout):
    scheme = graph.network.conventions.initialization
    return lambda: initial_logits(entry.op, scheme)
