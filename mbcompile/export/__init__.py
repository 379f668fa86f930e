"""The export stage, after the backends: generated source -> live model with trained
weights -> a deployment file -> run in its own runtime -> compared with eager.

    from mbcompile.export import ExportOptions, export

    report = export(graph, "m.tflite", "tflite", weights="model.safetensors")
    print(report.summary())

`export` builds the spec's generated model (PyTorch for onnx, pt2 and executorch;
Keras for keras, savedmodel and tflite) in memory, loads the weights into it
(`mbcompile.checkpoints`: any file `mbcompile weights` reads; none: the model's
own initialisation), exports it in a scratch folder, runs the exported file in its
runtime on fixed inputs — random (seeded) or the user's — and compares the outputs
with the eager model's: the worst difference must be within the tolerance
(`atol` x max(1, |output|), 1e-4 by default: the tests' TOLERANCE), or for int8
files the top-1 class must agree on at least 99% of the calibration images. Only
then is the file written to `target` (through the one output path; a SavedModel
folder is moved into place whole). The file carries the metadata a deployer needs
(input name, layout, size, mean and std, class names when the checkpoint has them)
in the format's own metadata fields. Before anything is built, the memory the
export needs is weighed against what the machine has (`memory`): a SpecError when
it cannot fit, and TFLite's leaner route when its fast one would not.

Frameworks are imported here only, lazily; a missing runtime is a SpecError naming
the extra to install. `mbcompile bench` runs `formats.FORMATS[name].load(path)`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.cost import report as cost_report
from ..errors import SpecError, shorten, shorten_path
from ..extras import require
from ..files import NO_INPUTS, Inputs, check_target, quiet_streams
from ..ir.graph import Graph
from ..version import __version__
from . import memory, validate
from .formats import FORMATS, INPUT_NAME, Format

__all__ = ["FORMATS", "ExportOptions", "ExportReport", "export"]

DEFAULT_TOLERANCE = 1e-4  # x max(1, |output|): the tests' TOLERANCE


@dataclass(frozen=True)
class ExportOptions:
    batch: int | None = None  # None: dynamic where the format allows, else 1
    fold_bn: bool = False
    int8: bool = False
    calibration: str | Path | None = None  # .npy of images, for int8
    validate_inputs: str | Path | None = None  # .npy of images
    atol: float = DEFAULT_TOLERANCE
    key: str | None = None  # a training checkpoint's state_dict
    memory: float | None = None  # GiB the export may take; None: what is available


@dataclass
class ExportReport:
    """What was exported and how it was checked."""

    format: str
    target: Path
    runtime: str
    eager: str
    inputs: str  # where the validation inputs came from
    batches: list[int]
    worst: float  # max |eager - exported| over the outputs
    scale: float  # max(1, max |eager output|)
    atol: float
    agreement: float | None  # int8: top-1 agreement
    metadata: dict[str, Any]
    metadata_home: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def difference(self) -> float:
        """The worst difference in units of max(1, |output|)."""
        return self.worst / self.scale

    def summary(self) -> list[str]:
        lines = [
            f"validated {self.target.name} in {self.runtime} against eager "
            f"{self.eager} on {self.inputs} (batch {', '.join(map(str, self.batches))})",
        ]
        if self.agreement is not None:
            lines.append(
                f"  int8: top-1 agreement {self.agreement:.1%} with the float model "
                f"(needed {validate.INT8_AGREEMENT:.0%}); "
                f"worst |difference| {self.worst:.3g} (max |output| {self.scale:.3g})"
            )
        else:
            lines.append(
                f"  worst |difference| {self.worst:.3g} = {self.difference:.3g} x "
                f"max(1, |output|) (max |output| {self.scale:.3g}; tolerance "
                f"{self.atol:g} x max(1, |output|))"
            )
        lines.append(f"  metadata ({self.metadata_home}):")
        for key, value in self.metadata.items():
            text = value if isinstance(value, str) else _brief(value)
            lines.append(f"    {key}: {text}")
        return lines


def _brief(value) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"[{', '.join(map(repr, value[:4]))}, ... ({len(value)} in all)]"
    return repr(value) if not isinstance(value, list) else str(value)


Progress = Callable[[str], None]


def export(
    graph: Graph,
    target: str | Path,
    format: str,
    *,
    weights: str | Path | None = None,
    folded: Graph | None = None,
    options: ExportOptions = ExportOptions(),
    inputs: Inputs = NO_INPUTS,
    progress: Progress | None = None,
) -> ExportReport:
    """Export `graph`'s network with `weights` to `target` in `format`, validated;
    `folded` is the spec's inference form when `options.fold_bn`. `inputs` are
    the spec's files (never replaced). Raises SpecError on bad input, a missing
    runtime or a failed validation; nothing is written then."""
    fmt = _format(format, options)
    require(fmt.modules, f"exporting to {fmt.name}", extra=fmt.extra)
    _check_target(fmt, target, inputs)
    parameters = cost_report(graph).total_params
    said = options.memory is not None
    route = memory.route(fmt.name, parameters, _memory(options), said=said)
    say = progress or (lambda line: None)
    clock = _Clock(say)
    from .model import live_model

    step = (
        "reading the weights and building the model"
        if weights
        else "building the model"
    )
    with clock(step), _framework(None, fmt):
        built = live_model(graph, fmt.backend, weights, folded, options.key)
    inputs = {**inputs, **built.inputs}
    check_target(_file_target(fmt, target), inputs)
    images, origin = validate.images(built.graph, options.validate_inputs)
    calibration = validate.calibration(built.graph, options, fmt)
    batches = validate.batches(fmt, options, len(images))
    metadata = _metadata(built, fmt, options, batches[0])
    with tempfile.TemporaryDirectory(prefix="mbcompile-export-") as tmp:
        scratch = Path(tmp)
        note = memory.ROUTES[fmt.name][route].note
        step = f"exporting to {fmt.name}" + (f" {note}" if note else "")
        with clock(step), _framework(scratch, fmt):
            example = validate.example(images, batches[0], fmt)
            run = _Run(options, calibration, route)
            artefact = fmt.produce(built.model, example, run, metadata, scratch)
        with clock(f"validating in {fmt.runtime}"), _framework(scratch, fmt):
            check = validate.compare(
                fmt, built, artefact, images, batches, calibration, options
            )
            carried = fmt.read_metadata(artefact)
        with clock(f"writing {shorten_path(target)}"):
            written = _write(fmt, artefact, target, inputs)
    report = ExportReport(
        fmt.name,
        written,
        fmt.runtime,
        "PyTorch" if fmt.backend == "torch" else "Keras",
        origin,
        batches,
        check.worst,
        check.scale,
        options.atol,
        check.agreement,
        carried,
        fmt.where,
        built.notes,
        clock.timings,
    )
    return report


# ------------------------------------------------------------------ the parts


def _format(name: str, options: ExportOptions) -> Format:
    if name not in FORMATS:
        raise SpecError(
            f"unknown format {shorten(repr(name))}; expected one of "
            f"{', '.join(FORMATS)}"
        )
    fmt = FORMATS[name]
    if options.int8 and not fmt.int8:
        int8 = [f.name for f in FORMATS.values() if f.int8]
        raise SpecError(f"--int8 exports {' or '.join(int8)}, not {name}")
    if options.int8 and options.calibration is None:
        raise SpecError(
            "--int8 needs --calibration FILE.npy: a few hundred training images "
            "(N x 3 x H x W or N x H x W x 3, float32, preprocessed as for the model)"
        )
    if options.calibration is not None and not options.int8:
        raise SpecError("--calibration is for --int8")
    if options.batch is not None and not 1 <= options.batch <= 1024:
        raise SpecError(f"--batch {options.batch}: expected 1 to 1024")
    if not 0 < options.atol < 1:
        raise SpecError(f"--atol {options.atol:g}: expected a number between 0 and 1")
    if options.memory is not None and not 0 < options.memory <= 1 << 20:
        raise SpecError(f"--memory {options.memory:g}: expected GiB, more than 0")
    return fmt


def _memory(options: ExportOptions) -> float | None:
    """Bytes the export may take: --memory, or what the machine has available."""
    if options.memory is not None:
        return options.memory * memory.GIB
    return memory.available()


def _check_target(fmt: Format, target, inputs: Inputs) -> None:
    if fmt.suffix and not str(target).endswith(fmt.suffix):
        raise SpecError(
            f"-o {shorten_path(target)}: {fmt.name} files are named *{fmt.suffix}"
        )
    check_target(_file_target(fmt, target), inputs)


def _file_target(fmt: Format, target) -> Path:
    """What check_target judges: the file, or a SavedModel folder's saved_model.pb."""
    return Path(target) if fmt.suffix else Path(target) / "saved_model.pb"


def _metadata(built, fmt: Format, options: ExportOptions, batch: int) -> dict[str, Any]:
    net = built.graph.network
    c, h, w = built.graph.shape("input")
    batch = "dynamic" if fmt.dynamic_batch and options.batch is None else batch
    shape = [batch, c, h, w] if fmt.backend == "torch" else [batch, h, w, c]
    metadata: dict[str, Any] = {
        "producer": f"mbcompile {__version__}",
        "model": net.name,
        "spec": Path(net.source).name,
        "spec_sha256": net.content_hash,
        "weights": built.weights,
        "input_name": INPUT_NAME[fmt.backend],
        "layout": fmt.layout,
        "input_shape": shape,
        "input_dtype": "int8" if options.int8 else "float32",
        "input_range": (
            "pixels in [0, 255] (the model rescales them)"
            if built.pixels
            else "normalised images: (pixels / 255 - mean) / std"
        ),
    }
    metadata.update(built.preprocessing)
    metadata["outputs"] = built.outputs
    if net.include_top:
        metadata["num_classes"] = net.num_classes
    if built.label_names is not None:
        metadata["class_names"] = built.label_names
    return metadata


@dataclass(frozen=True)
class _Run:
    """What a format's produce() reads: the options, the calibration images in
    each layout, and the route that fits in memory (export.memory.ROUTES)."""

    options: ExportOptions
    calibration: Any
    route: str

    @property
    def batch(self) -> int | None:
        return self.options.batch

    @property
    def int8(self) -> bool:
        return self.options.int8

    @property
    def calibration_nchw(self):
        return self.calibration

    @property
    def calibration_nhwc(self):
        return (
            None if self.calibration is None else self.calibration.transpose(0, 2, 3, 1)
        )


class _Clock:
    """Progress lines for the steps that take seconds, and their times."""

    def __init__(self, say: Progress) -> None:
        self.say = say
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        self.say(f"{step} ...")
        start = time.perf_counter()
        yield
        self.timings[step] = time.perf_counter() - start
        self.say(f"{step}: {self.timings[step]:.1f} s")


@contextlib.contextmanager
def _framework(scratch: Path | None, fmt: Format):
    """Frameworks at work: their chatter silenced, and a write they could not make
    (a full disk, a file-size limit) reported as the environment's failure."""
    try:
        with quiet_streams():
            yield
    except SpecError:
        raise
    except Exception as exc:
        reason = _write_failure(exc)
        if reason is None:
            raise
        where = tempfile.gettempdir() if scratch is None else scratch.parent
        raise SpecError(
            f"cannot write {fmt.name}'s scratch files in {shorten_path(where)}: "
            f"{reason}"
        ) from None


def _write_failure(exc: BaseException) -> str | None:
    """A full disk or a file-size limit anywhere in `exc`'s chain, as the system
    words it; frameworks wrap OSError in their own exceptions."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG):
            return exc.strerror
        text = str(exc)
        for code in (errno.ENOSPC, errno.EFBIG):
            message = os.strerror(code)
            if message in text:
                return message
        exc = exc.__cause__ or exc.__context__
    return None


def _write(fmt: Format, artefact: Path, target, inputs: Inputs) -> Path:
    from ..files import copy_file, move_folder

    if not fmt.suffix:
        return move_folder(artefact, target, inputs, marker="saved_model.pb")
    return copy_file(artefact, target, inputs)
