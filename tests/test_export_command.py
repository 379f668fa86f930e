"""`mbcompile export`: a checkpoint in, a validated deployment file out.

timm's mobilenetv4_conv_small, written by `save_for_hf` (random weights, batch-norm
statistics measured on data, label names in its config.json), exports at 64x64 to
every format; each file is run again here in its runtime and must compute timm's
own logits within TOLERANCE (a reference independent of the export's own check),
and must carry the config's preprocessing and class names in its metadata. A
canonical spec (v3_small, from a PyTorch state_dict) exports too. The check can
fail: an exported file with one tensor perturbed is refused with exit code 2 and
nothing written. Exported files are shared per module; the canonical spec's rarer
formats and ExecuTorch int8 are `slow`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import (
    SPECS,
    TOLERANCE,
    build,
    difference,
    random_images,
    randomize_torch,
    run_cli,
    run_limited,
    run_python,
    run_torch,
    xnnpack_partitions,
)
from mbcompile.export import formats

pytestmark = [
    pytest.mark.usefixtures("no_hang"),
    pytest.mark.hang_limit(600),
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword"
        ":DeprecationWarning"
    ),
]

SMALL = "resolution=64"
NAME = "mobilenetv4_conv_small"
FORMATS = list(formats.FORMATS)
LABELS = [f"class {i}" for i in range(1000)]


def formats_slow_but(fast: tuple[str, ...]) -> list:
    """Every format as a test parameter, those not in `fast` marked slow."""
    return [
        pytest.param(f, marks=() if f in fast else (pytest.mark.slow,)) for f in FORMATS
    ]


def target(folder: Path, stem: str, fmt: str) -> Path:
    """Where `fmt` is exported to: a file named by its suffix, or a folder."""
    return folder / f"{stem}{formats.FORMATS[fmt].suffix or '_saved_model'}"


def export(*argv) -> tuple[int, str, str]:
    return run_cli(["export", *map(str, argv), "-q"])


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory):
    """save_for_hf's folder of a timm model, its logits at 64x64 on fixed images,
    and those images."""
    from reference_models import create, import_timm

    tmp = tmp_path_factory.mktemp("timm")
    model = create(NAME)
    calibration = np.random.default_rng(3).standard_normal((8, 3, 64, 64))
    randomize_torch(model, calibration.astype(np.float32), seed=3)
    folder = tmp / "hf"
    import_timm().models.save_for_hf(
        model, folder, model_config={"pretrained_cfg": {"label_names": LABELS}}
    )
    images = np.random.default_rng(11).standard_normal((3, 3, 64, 64))
    images = images.astype(np.float32)
    np.save(tmp / "images.npy", images)
    return folder, tmp / "images.npy", images, run_torch(model, images)


@pytest.fixture(scope="module")
def exported(timm_folder, tmp_path_factory):
    """Exported files by format, made on first use: (path, stdout, stderr)."""
    folder, images_file, _, _ = timm_folder
    tmp = tmp_path_factory.mktemp("exported")
    made: dict[str, tuple[Path, str, str]] = {}

    def get(fmt: str):
        if fmt not in made:
            path = target(tmp, "m", fmt)
            code, out, err = export(
                NAME, "--set", SMALL, "--weights", folder, "--format", fmt,
                "-o", path, "--validate-inputs", images_file,
            )  # fmt: skip
            assert code == 0, err
            made[fmt] = (path, out, err)
        return made[fmt]

    return get


# The default run exports the flagship paths and the quick ones; SavedModel and
# ExecuTorch (the slowest to lower) are `slow`.
TIMM_FAST = ("onnx", "tflite", "keras", "pt2")


@pytest.mark.parametrize(
    "fmt",
    formats_slow_but(TIMM_FAST),
)
def test_every_format_exports_timm_weights_validated(
    fmt, exported, timm_folder, worst_differences
):
    _, _, images, want = timm_folder
    path, out, _ = exported(fmt)
    assert path.exists()
    assert f"validated {path.name} in" in out and "worst |difference|" in out
    # Run again here: timm's logits, in the file's own runtime.
    run = formats.FORMATS[fmt].load(path)
    batch = images if formats.FORMATS[fmt].dynamic_batch else images[:1]
    feed = (
        batch if formats.FORMATS[fmt].layout == "NCHW" else batch.transpose(0, 2, 3, 1)
    )
    (got,) = run(np.ascontiguousarray(feed)).values()
    diff = difference(want[: len(batch)], got)
    worst_differences.append((f"export {fmt} {NAME} vs timm", diff))
    assert diff <= TOLERANCE, diff
    if fmt == "tflite":  # the classifier head too runs whole in XNNPACK
        from ai_edge_litert.interpreter import Interpreter

        assert xnnpack_partitions(Interpreter(model_path=str(path))) == 1
    # The metadata a deployer needs, in the format's own fields.
    metadata = formats.FORMATS[fmt].read_metadata(path)
    assert metadata["input_name"] == formats.INPUT_NAME[formats.FORMATS[fmt].backend]
    assert metadata["mean"] == [0.485, 0.456, 0.406]  # timm's, from config.json
    assert metadata["std"] == [0.229, 0.224, 0.225]
    assert metadata["interpolation"] == "bicubic"
    assert metadata["class_names"] == LABELS
    assert metadata["layout"] == formats.FORMATS[fmt].layout
    assert "mean: [0.485, 0.456, 0.406]" in out  # and printed


def test_the_check_can_fail(timm_folder, tmp_path, monkeypatch):
    """An exported file with one weight perturbed: exit 2, one line, no file."""
    import onnx
    from onnx import numpy_helper

    folder, _, _, _ = timm_folder
    real = formats.FORMATS["onnx"]

    def perturbed(*args, **kwargs):
        path = real.produce(*args, **kwargs)
        proto = onnx.load(str(path))
        first = next(t for t in proto.graph.initializer if len(t.dims) == 4)
        array = numpy_helper.to_array(first).copy()
        array.flat[0] += 1.0
        first.CopyFrom(numpy_helper.from_array(array, first.name))
        onnx.save(proto, str(path))
        return path

    monkeypatch.setitem(
        formats.FORMATS, "onnx", dataclasses.replace(real, produce=perturbed)
    )
    target = tmp_path / "bad.onnx"
    # a fixed batch: exporting a dynamic one takes twice as long and is not the point
    code, _, err = export(
        NAME, "--set", SMALL, "--weights", folder, "--format", "onnx", "-o", target,
        "--batch", "1",
    )  # fmt: skip
    assert code == 2, err
    (line,) = err.splitlines()
    assert "the onnx file differs from the eager model" in line
    assert "nothing written" in line and not target.exists()
    assert not list(tmp_path.iterdir())


def test_refusals_are_one_line(timm_folder, tmp_path, monkeypatch):
    folder, _, _, _ = timm_folder
    bad_shape = tmp_path / "wrong.npy"
    np.save(bad_shape, np.zeros((2, 3, 32, 32), np.float32))
    cases = [
        (
            ["--format", "onnx", "--validate-inputs", bad_shape],
            "expected N x 3 x 64 x 64",
        ),
        (
            ["--format", "onnx", "--int8"],
            "--int8 exports tflite or executorch, not onnx",
        ),
        (["--format", "tflite", "--int8"], "--int8 needs --calibration"),
        (
            ["--format", "onnx", "-o", tmp_path / "x.tflite"],
            "onnx files are named *.onnx",
        ),
        (["--format", "onnx", "--set", "width_multiplier=0.5"], "has shape"),
    ]
    for extra, fragment in cases:
        code, _, err = export(NAME, "--set", SMALL, "--weights", folder, *extra)
        assert code == 2, (extra, err)
        (line,) = err.splitlines()
        assert fragment in line, (extra, line)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    code, _, err = export(NAME, "--weights", folder, "--format", "onnx")
    assert code == 2 and "pip install 'mbcompile[onnx]'" in err, err
    assert not list(Path.cwd().glob("*.onnx"))


@pytest.mark.slow
def test_int8_refuses_a_file_that_disagrees(tmp_path):
    """With random weights, the float model's two best logits lie within int8's
    rounding error of each other on a third of the images (top-1 agreement 64.1% on
    one CPU, 62.5% on another, ten classes): the command refuses the file, exit 2,
    nothing written. A trained model's int8 export passes (tests/test_learning.py)."""
    from reference_models import create, import_timm

    model = create(NAME, num_classes=10)
    images = np.random.default_rng(5).standard_normal((64, 3, 64, 64))
    images = images.astype(np.float32)
    randomize_torch(model, images, seed=5)
    import_timm().models.save_for_hf(model, tmp_path / "hf")
    np.save(tmp_path / "calibration.npy", images)
    path = tmp_path / "int8.tflite"
    code, _, err = export(
        NAME, "--set", SMALL, "--set", "num_classes=10", "--weights",
        tmp_path / "hf", "--format", "tflite", "--int8", "--calibration",
        tmp_path / "calibration.npy", "-o", path,
    )  # fmt: skip
    assert code == 2
    found = re.search(r"agrees with the float model's on ([\d.]+)% of the 64 ", err)
    assert found and float(found[1]) < 90, err
    assert "under 99%; nothing written" in err
    assert not path.exists()


# ------------------------------------------------------------ a canonical spec

CANONICAL_FAST = ("tflite",)


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    """v3_small at 64x64: a state_dict of random weights and measured statistics,
    and its logits on fixed images."""
    import torch

    tmp = tmp_path_factory.mktemp("v3_small")
    _, graph, model = build(SPECS / "v3_small.yaml", "torch", tmp, [SMALL])
    randomize_torch(model, random_images(graph, seed=4), seed=4)
    weights = tmp / "v3_small.pt"
    torch.save(model.state_dict(), weights)
    images = random_images(graph, seed=6)
    return weights, images, run_torch(model, images)


@pytest.mark.parametrize(
    "fmt",
    formats_slow_but(CANONICAL_FAST),
)
def test_a_canonical_spec_exports_to_every_format(fmt, canonical, tmp_path):
    weights, images, want = canonical
    path = target(tmp_path, "v3_small", fmt)
    code, out, err = export(
        "v3_small", "--set", SMALL, "--weights", weights, "--format", fmt,
        "-o", path, "--batch", "2",
    )  # fmt: skip
    assert code == 0, err
    assert "(batch 2)" in out
    run = formats.FORMATS[fmt].load(path)
    nchw = images[:2]
    feed = nchw if formats.FORMATS[fmt].layout == "NCHW" else nchw.transpose(0, 2, 3, 1)
    (got,) = run(np.ascontiguousarray(feed)).values()
    assert difference(want[:2], got) <= TOLERANCE


def test_a_fixed_batch_larger_than_the_validation_images(canonical, tmp_path):
    """--batch 6 with the 4 random validation images: the file is exported at batch
    6 (the images repeated to fill it), and validated at that batch."""
    weights, _, _ = canonical
    path = tmp_path / "six.pt2"
    code, out, err = export(
        "v3_small", "--set", SMALL, "--weights", weights, "--format", "pt2",
        "-o", path, "--batch", "6",
    )  # fmt: skip
    assert code == 0, err
    assert "(batch 6)" in out
    import torch

    module = torch.export.load(path).module()
    assert module(torch.zeros(6, 3, 64, 64)).shape == (6, 1000)


def test_fine_tuning_export(canonical, tmp_path):
    """A 10-class export of the 1000-class checkpoint says what it left
    initialised."""
    weights, _, _ = canonical
    code, _, err = export(
        "v3_small", "--set", SMALL, "--set", "num_classes=10", "--weights", weights,
        "--format", "pt2", "-o", tmp_path / "ten.pt2", "--batch", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "left classifier.3.weight, classifier.3.bias at their initialisation" in err


@pytest.mark.slow
def test_fold_bn_export(canonical, tmp_path):
    """The folded inference form validates against its own eager model."""
    weights, _, _ = canonical
    code, _, err = export(
        "v3_small", "--set", SMALL, "--weights", weights, "--format", "onnx",
        "--fold-bn", "-o", tmp_path / "folded.onnx",
    )  # fmt: skip
    assert code == 0, err
    metadata = formats.FORMATS["onnx"].read_metadata(tmp_path / "folded.onnx")
    assert metadata["model"] == "mobilenet_v3_small"


@pytest.mark.parametrize(
    "fmt",
    formats_slow_but(("pt2",)),  # the cheapest to start in a fresh process
)
def test_a_file_size_limit_during_export_is_exit_2(fmt, canonical, tmp_path):
    """The scratch files a framework writes on the way count too. (torch's own
    .pt2 writer, refused, aborted the process: exit status -6.)"""
    weights, _, _ = canonical
    path = target(tmp_path, "limited", fmt)
    argv = [
        "export", "v3_small", "--set", SMALL, "--weights", str(weights),
        "--format", fmt, "-o", str(path), "-q", "--batch", "1",
    ]  # fmt: skip
    done = run_limited(argv, 50_000)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert "File too large" in line and line.startswith("mbcompile: error: ")
    assert not path.exists()


def test_metadata_is_json_in_every_field(exported):
    """ONNX's metadata_props are strings: lists and numbers read back as JSON."""
    path, _, _ = exported("onnx")
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["mean"]) == [0.485, 0.456, 0.406]
    assert props["layout"] == "NCHW" and props["input_name"] == "images"


# ---------------------------------------------------------------------- memory


def test_an_export_that_cannot_fit_is_refused_before_it_starts(canonical, tmp_path):
    """--memory under every format's need: exit 2, one line naming both figures,
    before the model is built; nothing written."""
    weights, _, _ = canonical
    path = tmp_path / "small.tflite"
    code, out, err = run_cli(
        ["export", "v3_small", "--set", SMALL, "--weights", weights,
         "--format", "tflite", "-o", path, "--memory", "0.3"]
    )  # fmt: skip
    assert code == 2 and not out
    (line,) = err.splitlines()  # no progress: nothing was read or built
    assert re.fullmatch(
        r"mbcompile: error: exporting 2\.55M parameters to tflite takes about "
        r"1\.\d GiB of memory and --memory allows 0\.3 GiB",
        line,
    ), line
    assert not path.exists()
    code, _, err = export("v3_small", "--format", "onnx", "--memory", "-1")
    assert code == 2 and "--memory -1: expected GiB, more than 0" in err


def test_the_memory_plan_meets_what_was_measured():
    """On a 23 GiB machine (CI's), as measured there: efficientnet_b7 (66.7M
    parameters) converts to TFLite by the fast traced route (7.9 GiB at 224x224);
    mobilenetv5_300m (294M), whose traced conversion (beside efficientnetv2_xl's)
    was killed past 23 GiB, converts through a SavedModel (13.6 GiB at 64x64,
    below); efficientnet_l2 (481M), killed at 21 GiB even at 64x64, is refused,
    naming what fits."""
    from mbcompile import compiler
    from mbcompile.errors import SpecError
    from mbcompile.export import memory

    def parameters(name: str) -> int:
        _, graph = compiler.load_and_expand(SPECS / "timm" / f"{name}.yaml")
        return compiler.cost_report(graph).total_params

    machine = 23 * memory.GIB
    assert (
        memory.route("tflite", parameters("efficientnet_b7"), machine, said=False)
        == "traced"
    )
    v5 = parameters("mobilenetv5_300m")
    assert memory.route("tflite", v5, machine, said=False) == "savedmodel"
    with pytest.raises(SpecError) as refused:
        memory.route("tflite", parameters("efficientnet_l2"), machine, said=False)
    message = str(refused.value)
    assert message.startswith("exporting 481M parameters to tflite takes about 3")
    assert "this machine has 23.0 GiB available; onnx, " in message
    assert memory.route("onnx", v5, None, said=False) == ""  # not Linux: not known
    # What this machine has: more than nothing, less than all of it.
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < memory.available() < total


def test_tflite_through_a_savedmodel_is_the_same_file(canonical, tmp_path, monkeypatch):
    """The lean route (taken when the traced one would not fit; here the only one
    the export knows) writes the same ops, outputs, signature and metadata, in one
    XNNPACK partition, and says which route it took."""
    from collections import Counter

    from ai_edge_litert.interpreter import Interpreter

    from mbcompile.export import memory

    weights, images, want = canonical
    routes = memory.ROUTES["tflite"]
    files = {}
    for route in ("traced", "savedmodel"):
        only = {route: routes[route]}
        monkeypatch.setitem(memory.ROUTES, "tflite", only)
        path = tmp_path / f"{route}.tflite"
        code, _, err = run_cli(
            ["export", "v3_small", "--set", SMALL, "--weights", weights,
             "--format", "tflite", "-o", path]
        )  # fmt: skip
        assert code == 0, err
        assert ("exporting to tflite through a SavedModel" in err) == (
            route == "savedmodel"
        )
        interpreter = Interpreter(model_path=str(path))
        assert xnnpack_partitions(interpreter) == 1
        ops = Counter(op["op_name"] for op in interpreter._get_ops_details())
        run = formats.FORMATS["tflite"].load(path)
        (got,) = run(np.ascontiguousarray(images.transpose(0, 2, 3, 1))).values()
        assert difference(want, got) <= TOLERANCE
        metadata = formats.FORMATS["tflite"].read_metadata(path)
        files[route] = ops, interpreter.get_signature_list(), metadata
    assert files["traced"] == files["savedmodel"]


@pytest.mark.slow
def test_the_largest_mobilenetv5_exports_to_tflite(tmp_path):
    """mobilenetv5_300m (294M parameters), whose traced conversion does not fit in
    24 GiB, exports through a SavedModel, validated, in one XNNPACK partition; at
    64x64 with --memory 22 (a 24 GiB machine; the plan's choice, whatever is free
    now). Peaks at 13.6 GiB: run it beside small tests only."""
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "v5.tflite"
    argv = [
        "export", "mobilenetv5_300m", "--set", SMALL, "--format", "tflite",
        "-o", str(path), "--memory", "22",
    ]  # fmt: skip
    done = run_python(
        f"import sys\nfrom mbcompile import cli\nsys.exit(cli.main({argv!r}))"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exporting to tflite through a SavedModel" in done.stderr
    assert "validated v5.tflite in LiteRT" in done.stdout
    assert xnnpack_partitions(Interpreter(model_path=str(path))) == 1
