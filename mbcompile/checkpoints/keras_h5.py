"""Keras weights files, read and written with h5py alone (no Keras, no TensorFlow).

Reading takes both of Keras' formats: a Keras 3 `.weights.h5`, whose groups Keras 3
names by layer class and count (`layers/conv2d_3/vars/0`; recent versions also
record the layer's name as the `name` attribute of `vars`, and then names match),
and a legacy `.h5` (keras.applications' files), whose groups are the layers' names.
A file is walked through plain (hard) links only — soft and external links and
data stored in other files are refused — and a dataset's type and shape are known
before its data is read. Writing produces the Keras 3 layout, which the generated
model's `load_weights` reads.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError, shorten, shorten_path
from .layout import OpLayout
from .tensors import Checkpoint, Tensor

SUFFIXES = (".weights.h5", ".h5", ".hdf5")
OUTPUT_SUFFIX = ".weights.h5"
SIGNATURE = b"\x89HDF\r\n\x1a\n"
# h5py's errors for a damaged file
H5_ERRORS = (KeyError, ValueError, TypeError, OSError, RuntimeError)


class _Malformed(Exception):
    """A Keras file whose structure is not what Keras writes."""


def read(handle, display: str, layouts: list[OpLayout]) -> Checkpoint:
    """Tensors named `<layer name>/<i>`, in Keras' layout."""
    import h5py

    shown = shorten_path(display)
    try:
        file = h5py.File(handle, "r")
    except (OSError, ValueError) as exc:
        raise SpecError(
            f"{shown}: not a readable HDF5 file ({shorten(str(exc), 120)})"
        ) from None
    try:
        if "layer_names" in file.attrs or _link(file, "model_weights") is not None:
            found = _legacy_datasets(file)
        else:
            found = _keras3_datasets(file, layouts)
        tensors = {}
        for layer, datasets in found:
            for i, dataset in enumerate(datasets):
                name = f"{layer}/{i}"
                tensors[name] = Tensor(
                    name,
                    tuple(dataset.shape),
                    str(dataset.dtype),
                    _reader(dataset, shown),
                    _dataset_problem(dataset),
                )
    except _Malformed as exc:
        file.close()
        raise SpecError(f"{shown}: {exc}") from None
    except H5_ERRORS as exc:
        file.close()
        raise SpecError(
            f"{shown}: damaged HDF5 file ({shorten(str(exc), 120)})"
        ) from None
    checkpoint = Checkpoint(display, "keras", tensors, ordered=True)
    checkpoint.files.append(file)
    return checkpoint


def write(handle, layouts: list[OpLayout], arrays) -> None:
    """A Keras 3 `.weights.h5` into `handle`: for each op (`layouts`) its arrays in
    Keras' layout (`arrays` yields one list per op, so that only one op's arrays
    are held at a time). No timestamps: the same weights give the same bytes.

    A transposed kernel is laid out in one scratch buffer reused from op to op
    (instead of h5py's copy into a new array for each). Datasets are created with
    h5py's low-level calls, which write the bytes `create_dataset(str(i),
    data=value, track_times=False)` writes without building its property list,
    type and wrapper again for each dataset (0.1 s of B7's thousand)."""
    import h5py
    from h5py import h5d, h5p, h5s, h5t

    # create_dataset's settings for a contiguous dataset: no times, no
    # attribute order (track_order=False)
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    dcpl.set_attr_creation_order(0)
    float32 = h5t.py_create(np.dtype(np.float32), logical=True)
    scratch = np.empty(0, np.float32)
    with h5py.File(handle, "w", track_order=False) as file:
        for entry, values in zip(layouts, arrays, strict=True):
            group = file.create_group(f"{entry.keras_path}/vars", track_order=False)
            group.attrs["name"] = entry.keras_name
            for i, value in enumerate(values):
                value = np.asarray(value, np.float32)
                if not value.flags.c_contiguous:  # HDF5 takes C order only
                    if scratch.size < value.size:
                        scratch = np.empty(value.size, np.float32)
                    out = scratch[: value.size].reshape(value.shape)
                    np.copyto(out, value)
                    value = out
                space = h5s.create_simple(value.shape)
                dataset = h5d.create(group.id, str(i).encode(), float32, space, dcpl)
                dataset.write(h5s.ALL, h5s.ALL, value)


def _reader(dataset, shown: str):
    def read() -> np.ndarray:
        try:
            return dataset[()]
        except H5_ERRORS as exc:
            raise SpecError(
                f"{shown}: damaged HDF5 file ({shorten(str(exc), 120)})"
            ) from None

    return read


def _dataset_problem(dataset) -> str | None:
    """Why a dataset cannot be a weight, judged without reading it."""
    if dataset.dtype.kind != "f":
        return f"holds {dataset.dtype}, not floating-point numbers"
    if dataset.external or dataset.is_virtual:
        return "keeps its data in other files; refused"
    return None


def _link(group, name: str):
    """The link `name` in `group` (not followed), or None."""
    return group.get(name, getlink=True)


def _walk(group, path: str, want: type):
    """The object at `path` under `group`, reached through hard links only (a soft
    link can loop, an external one opens another file), or None if missing."""
    import h5py

    node = group
    for name in path.split("/"):
        if not name or not isinstance(node, h5py.Group):
            raise _Malformed(f"'{shorten(path)}' is not a path to a group or dataset")
        link = _link(node, name)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            kind = "soft" if isinstance(link, h5py.SoftLink) else "external"
            raise _Malformed(
                f"'{shorten(path)}' goes through a {kind} link; only plain groups "
                "and datasets are read"
            )
        node = node[name]
    if not isinstance(node, want):
        found = "group" if isinstance(node, h5py.Group) else "dataset or type"
        wanted = "group" if want is h5py.Group else "dataset"
        raise _Malformed(f"'{shorten(path)}' is a {found} where a {wanted} belongs")
    return node


def _text(raw, what: str) -> str:
    if not isinstance(raw, bytes | str):
        raise _Malformed(f"{what} is not a name")
    try:
        # h5py hands back undecodable bytes as str with surrogate escapes
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        text.encode("utf-8")
    except UnicodeError:
        raise _Malformed(f"{what} is not UTF-8") from None
    return text


def _names(attrs, key: str) -> list[str]:
    """A list-of-names attribute (legacy files' `layer_names`, `weight_names`)."""
    if key not in attrs:
        return []
    values = np.asarray(attrs[key])
    if values.size == 0:
        return []  # Keras writes an empty float array for a layer without weights
    if values.ndim != 1 or values.dtype.kind not in "SUO":
        raise _Malformed(f"attribute '{key}' is not a list of names")
    return [_text(raw, f"a name in '{key}'") for raw in values]


def _legacy_datasets(file) -> list[tuple[str, list]]:
    """(layer name, datasets) of every weighted layer, in the file's layer order."""
    import h5py

    root = file
    if "layer_names" not in file.attrs:
        root = _walk(file, "model_weights", h5py.Group)
    found = []
    for name in _names(root.attrs, "layer_names"):
        group = _walk(root, name, h5py.Group)
        if group is None:
            raise _Malformed(f"layer '{shorten(name)}' is listed but missing")
        datasets = []
        for weight in _names(group.attrs, "weight_names"):
            dataset = _walk(group, weight, h5py.Dataset)
            if dataset is None:
                raise _Malformed(f"'{shorten(name)}/{shorten(weight)}' is missing")
            datasets.append(dataset)
        if datasets:
            found.append((name, datasets))
    return found


def _keras3_datasets(file, layouts: list[OpLayout]) -> list[tuple[str, list]]:
    """(layer name, datasets) of every group under `layers/` holding variables.
    A group is named by its `name` attribute when every such group has one, else
    by the spec's layer at its path (`layers/conv2d_3`) or, if none, by its path."""
    import h5py

    layers = _walk(file, "layers", h5py.Group)
    if layers is None:
        return []
    groups = []
    for child in layers:
        variables = _walk(layers, f"{child}/vars", h5py.Group)
        if variables is None or not len(variables):
            continue
        path = f"layers/{child}"
        datasets = []
        for j in range(len(variables)):
            dataset = _walk(variables, str(j), h5py.Dataset)
            if dataset is None:
                raise _Malformed(f"'{shorten(path)}/vars' has no variable {j}")
            datasets.append(dataset)
        name = variables.attrs.get("name")
        name = None if name is None else _text(name, f"'{shorten(path)}/vars' name")
        groups.append((path, name, datasets))
    by_path = {entry.keras_path: entry.keras_name for entry in layouts}
    if not all(name is not None for _, name, _ in groups):
        groups = [
            (path, by_path.get(path, path), datasets) for path, _, datasets in groups
        ]
    seen: set[str] = set()
    for path, name, _ in groups:
        if name in seen:
            raise _Malformed(
                f"two groups hold layer '{shorten(name)}' ({shorten(path)})"
            )
        seen.add(name)
    return [(name, datasets) for _, name, datasets in groups]
