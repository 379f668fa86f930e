"""Validation of an exported file: its runtime's outputs against the eager model's
on fixed inputs, the worst difference within the tolerance (`atol` x max(1,
|output|)); for int8 files, the top-1 class agreeing with the float model's on at
least INT8_AGREEMENT of the calibration images.

Images arrive as `.npy` files (N x C x H x W or N x H x W x C, any float type),
read through the one input path without pickles, or are drawn at random with a
fixed seed: standard normal, or pixels in [0, 255] for a network that rescales
its input itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SpecError, shorten, shorten_path
from ..files import read_input
from ..ir.graph import Graph
from .formats import Format

INT8_AGREEMENT = 0.99  # top-1 agreement of an int8 file with the float model

MAX_IMAGES_BYTES = 4 * 1024**3
RANDOM_COUNT, SEED = 4, 0  # validation images when the user gives none


def images(graph: Graph, path) -> tuple[np.ndarray, str]:
    """NCHW float32 validation images, and where they came from."""
    if path is not None:
        array = read_images(path, graph, "--validate-inputs")
        return array, f"{len(array)} images from {shorten_path(path)}"
    count = RANDOM_COUNT
    return random_images(graph, count), f"{count} random images (seed {SEED})"


def random_images(graph: Graph, count: int) -> np.ndarray:
    c, h, w = graph.shape("input")
    rng = np.random.default_rng(SEED)
    if any(graph.node(n)["kind"] == "rescale" for n in graph.order):
        return rng.uniform(0, 255, (count, c, h, w)).astype(np.float32)
    return rng.standard_normal((count, c, h, w)).astype(np.float32)


def calibration(graph: Graph, options, fmt: Format) -> np.ndarray | None:
    if not options.int8:
        return None
    if not graph.network.include_top:
        raise SpecError(
            "--int8 is validated by top-1 agreement, which needs a classifier "
            "(this spec has include_top: false)"
        )
    return read_images(options.calibration, graph, "--calibration")


def read_images(path, graph: Graph, flag: str) -> np.ndarray:
    """A .npy file of images fitting the spec's input, as NCHW float32."""
    import io

    shown = f"{flag} {shorten_path(path)}"
    data = read_input(Path(path), str(path), MAX_IMAGES_BYTES, "images").data
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SpecError(
            f"{shown}: not a NumPy .npy file ({shorten(str(exc), 100)})"
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise SpecError(f"{shown}: holds {array.dtype}, not numbers")
    c, h, w = graph.shape("input")
    if array.ndim == 4 and array.shape[1:] == (c, h, w):
        nchw = array
    elif array.ndim == 4 and array.shape[1:] == (h, w, c):
        nchw = array.transpose(0, 3, 1, 2)
    else:
        raise SpecError(
            f"{shown}: shape {array.shape}; expected N x {c} x {h} x {w} or "
            f"N x {h} x {w} x {c} (the spec's input)"
        )
    if not len(nchw):
        raise SpecError(f"{shown}: holds no images")
    nchw = np.ascontiguousarray(nchw, dtype=np.float32)
    if not np.isfinite(nchw).all():
        raise SpecError(f"{shown}: holds NaN or infinite values")
    return nchw


def batches(fmt: Format, options, count: int) -> list[int]:
    """The batch sizes the exported file is run at: its fixed one, or for a
    dynamic batch all images at once and one at a time (two sizes prove the
    dimension dynamic)."""
    if options.batch is not None:
        return [options.batch]
    if not fmt.dynamic_batch:
        return [1]
    return [count, 1] if count > 1 else [1]


@dataclass(frozen=True)
class Check:
    worst: float  # max |eager - exported|
    scale: float  # max(1, max |eager output|)
    agreement: float | None  # int8 only


def compare(fmt: Format, built, artefact, images, sizes, calibration, options) -> Check:
    run = fmt.load(artefact)
    worst, scale = 0.0, 1.0
    checked = calibration if options.int8 else images
    for batch in sizes:
        for chunk, keep in _chunks(checked, batch):
            expected = built.eager(chunk)
            got = run(in_layout(chunk, fmt))
            pairs = _paired(expected, got, fmt)
            for name, (want, have) in pairs.items():
                want, have = want[:keep], have[:keep]
                if want.shape != have.shape:
                    raise SpecError(
                        f"the {fmt.name} file's output '{shorten(name)}' has shape "
                        f"{have.shape}, the eager model's {want.shape}"
                    )
                worst = max(worst, float(np.abs(want - have).max()))
                scale = max(scale, float(np.abs(want).max()))
    if options.int8:
        agreement = _agreement(built, run, calibration, sizes[0], fmt)
        if agreement < INT8_AGREEMENT:
            raise SpecError(
                f"the int8 {fmt.name} file's top-1 class agrees with the float "
                f"model's on {agreement:.1%} of the {len(calibration)} calibration "
                f"images, under {INT8_AGREEMENT:.0%}; nothing written"
            )
        return Check(worst, scale, agreement)
    if worst > options.atol * scale:
        raise SpecError(
            f"the {fmt.name} file differs from the eager model: worst |difference| "
            f"{worst:.3g} = {worst / scale:.3g} x max(1, |output|), over the "
            f"tolerance {options.atol:g} (max |output| {scale:.3g}); nothing written"
        )
    return Check(worst, scale, None)


def _agreement(built, run, calibration, batch, fmt) -> float:
    same = 0
    for chunk, keep in _chunks(calibration, batch):
        want = next(iter(built.eager(chunk).values()))[:keep]
        have = next(iter(run(in_layout(chunk, fmt)).values()))[:keep]
        same += int((want.argmax(-1) == have.argmax(-1)).sum())
    return same / len(calibration)


def _chunks(images: np.ndarray, batch: int):
    """Batches of exactly `batch` images (the last padded with the first images;
    `keep` says how many rows are real)."""
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        keep = len(chunk)
        if keep < batch:
            reps = math.ceil(batch / len(images))
            filler = np.concatenate([images] * reps)[: batch - keep]
            chunk = np.concatenate([chunk, filler])
        yield np.ascontiguousarray(chunk), keep


def example(images: np.ndarray, batch: int, fmt: Format) -> np.ndarray:
    """The images a file is traced or exported with: exactly `batch` of them (fewer
    validation images than a fixed --batch are repeated), in the format's layout."""
    chunk, _ = next(_chunks(images, batch))
    return in_layout(chunk, fmt)


def in_layout(chunk: np.ndarray, fmt: Format) -> np.ndarray:
    """NCHW images in the format's layout."""
    return (
        chunk
        if fmt.layout == "NCHW"
        else np.ascontiguousarray(chunk.transpose(0, 2, 3, 1))
    )


def _paired(expected: dict, got: dict, fmt: Format) -> dict:
    """(eager, exported) per output: by name, or in order where the runtime names
    its outputs otherwise (LiteRT's output_0, ...)."""
    if set(expected) == set(got):
        return {name: (expected[name], got[name]) for name in expected}
    if len(expected) != len(got):
        raise SpecError(
            f"the {fmt.name} file has {len(got)} outputs, the eager model "
            f"{len(expected)}"
        )
    return {
        name: (value, other)
        for (name, value), other in zip(expected.items(), got.values(), strict=True)
    }
