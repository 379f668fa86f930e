"""The roofline latency estimate (analysis/latency.py) and device profiles
(frontend/device.py): the arithmetic against ops computed by hand, the profile's
validation, and the estimate in every report format."""

from __future__ import annotations

import csv
import io
import json

import pytest

from helpers import SPECS, run_cli
from mbcompile import compiler
from mbcompile.analysis import calibrate
from mbcompile.analysis.latency import estimate
from mbcompile.errors import SpecError
from mbcompile.frontend.device import (
    bundled_devices,
    dump_device,
    load_device,
    parse_device,
)
from mbcompile.ir.graph import Graph

# A round machine for hand arithmetic: 100 GMAC/s, 10 GB/s (ridge point 10 MACs per
# byte), float32, no cache level, no overheads unless a test adds them.
ROUND = """\
name: round
sources: [hand arithmetic]
peak_gmacs: 100
bandwidth_gbs: 10
"""


def profile(extra: str = ""):
    return parse_device(ROUND + extra, "round.yaml")


def single_op(kind: str, shape: tuple[int, int, int], **attrs) -> Graph:
    graph = Graph()
    x = graph.add("input", [], "input", shape=shape)
    graph.add(kind, [x], "op", **attrs)
    return graph


def conv(in_c: int, out_c: int, size: int, kernel: int) -> Graph:
    """A k x k convolution, stride 1, the output the input's size."""
    return single_op(
        "conv",
        (in_c, size, size),
        in_c=in_c,
        out_c=out_c,
        kernel=kernel,
        stride=1,
        dilation=1,
        groups=1,
        padding=(kernel // 2, kernel // 2),
        bias=False,
    )


def pointwise(channels: int, size: int) -> Graph:
    return conv(channels, channels, size, 1)


def depthwise(channels: int, size: int, kernel: int = 3) -> Graph:
    return single_op(
        "dwconv",
        (channels, size, size),
        channels=channels,
        multiplier=1,
        kernel=kernel,
        stride=1,
        dilation=1,
        padding=(kernel // 2, kernel // 2),
        bias=False,
    )


def the_op(graph: Graph, device, batch: int = 1):
    (op,) = [op for op in estimate(graph, device, batch).ops if op.name == "op"]
    return op


def test_a_1x1_convolution_is_compute_bound():
    op = the_op(pointwise(256, 14), profile())
    # 14 x 14 outputs x 256 x 256 MACs; 4 bytes x (input + output + weights).
    macs = 14 * 14 * 256 * 256  # 12,845,056
    moved = 4 * (2 * 256 * 14 * 14 + 256 * 256)  # 663,552
    assert (op.work, op.bytes) == (macs, moved)
    assert op.compute_s == pytest.approx(128.45056e-6)  # 12.8M / 100 G
    assert op.memory_s == pytest.approx(66.3552e-6)  # 663,552 B / 10 GB/s
    assert op.bound == "compute"
    assert op.time_s == pytest.approx(128.45056e-6)


def test_a_depthwise_convolution_is_memory_bound():
    op = the_op(depthwise(256, 56), profile())
    macs = 56 * 56 * 256 * 9  # 7,225,344: 1.1 MACs per byte moved
    moved = 4 * (2 * 256 * 56 * 56 + 256 * 9)  # 6,431,744
    assert (op.work, op.bytes) == (macs, moved)
    assert op.compute_s == pytest.approx(72.25344e-6)
    assert op.memory_s == pytest.approx(643.1744e-6)
    assert op.bound == "memory"


def test_efficiency_overhead_cache_dtype_and_batch():
    graph = depthwise(256, 56)
    tuned = profile(
        "overhead_us: 5\n"
        "ops: {depthwise: {efficiency: 0.05, overhead_us: 7}, conv: {efficiency: 0.5}}\n"
    )
    op = the_op(graph, tuned)
    # 7.2M MACs at 5% of 100 G: 1.445 ms, now above the memory time; the class's
    # own overhead (7 us) replaces the profile's (5 us).
    assert op.compute_s == pytest.approx(1.4450688e-3)
    assert op.bound == "compute"
    assert op.time_s == pytest.approx(1.4450688e-3 + 7e-6)
    # A cache that holds the 6.4 MB moves them at its bandwidth; one that does not
    # leaves main memory's.
    fits = the_op(graph, profile("cache: {bytes: 8000000, bandwidth_gbs: 80}\n"))
    assert fits.memory_s == pytest.approx(6431744 / 80e9)
    small = the_op(graph, profile("cache: {bytes: 1000000, bandwidth_gbs: 80}\n"))
    assert small.memory_s == pytest.approx(643.1744e-6)
    # int8: a quarter of the bytes. Batch 4: four times the work and activations,
    # the weights once.
    assert the_op(graph, profile("dtype: int8\n")).bytes == 6431744 // 4
    batch = the_op(graph, profile(), batch=4)
    assert batch.work == 4 * 7225344
    assert batch.bytes == 4 * (4 * 2 * 256 * 56 * 56) + 4 * 256 * 9


def test_a_kernel_size_the_profile_names_has_its_own_class():
    # LiteRT 2.3's XNNPACK runs 7x7 depthwise convolutions 25-70x slower than 5x5
    # ones on an AVX2 machine (benchmarks/latency_estimate.py): MACs do not see it,
    # a class per kernel size does.
    device = profile(
        "ops: {depthwise: {efficiency: 0.5}, depthwise_7x7: {efficiency: 0.01}}\n"
    )
    seven, three = (
        the_op(depthwise(64, 28, 7), device),
        the_op(depthwise(64, 28), device),
    )
    assert (seven.op_class, three.op_class) == ("depthwise_7x7", "depthwise")
    assert seven.compute_s == pytest.approx(28 * 28 * 64 * 49 / (100e9 * 0.01))
    assert three.compute_s == pytest.approx(28 * 28 * 64 * 9 / (100e9 * 0.5))


def stem(size: int = 32) -> Graph:
    """A 3x3 convolution from 3 channels to 16."""
    return conv(3, 16, size, 3)


def test_a_convolution_pays_per_output_element_and_kernel_tap():
    device = profile(
        "ops: {conv: {efficiency: 0.5, tap_ns: 2}, pointwise: {efficiency: 0.5, "
        "tap_ns: 2}, depthwise: {efficiency: 0.5}}\n"
    )
    # 16 x 32 x 32 = 16,384 outputs, 9 taps each (147,456), 3 MACs per tap.
    op = the_op(stem(), device)
    assert (op.work, op.taps) == (16384 * 27, 147456)
    # 442,368 MACs at 50 GMAC/s: 8.85 us; 147,456 taps at 2 ns: 294.9 us.
    assert op.compute_s == pytest.approx(8.84736e-6 + 294.912e-6)
    # A 1x1 convolution with 256 input channels: one tap per output (50,176), so
    # 256 MACs per tap: 256.9 us of MACs, 100.4 us of taps.
    wide = the_op(pointwise(256, 14), device)
    assert wide.taps == 256 * 14 * 14
    assert wide.compute_s == pytest.approx(12845056 / 50e9 + 50176 * 2e-9)
    assert the_op(pointwise(256, 14), device, batch=3).taps == 3 * 50176
    # A depthwise convolution's tap is one MAC: no taps of its own.
    assert the_op(depthwise(64, 28), device).taps == 0
    # Without tap_ns (the default) a convolution is MACs alone, as before.
    assert the_op(stem(), profile()).compute_s == pytest.approx(442368 / 100e9)


def test_tap_costs_only_for_convolutions_and_only_written_when_set():
    with pytest.raises(SpecError, match="tap_ns of 'depthwise'"):
        profile("ops: {depthwise: {tap_ns: 1}}\n")
    device = profile("ops: {conv_3x3: {tap_ns: 0.5}, dense: {efficiency: 0.5}}\n")
    text = dump_device(device)
    assert "tap_ns: 0.5" in text and text.count("tap_ns") == 1
    assert parse_device(text, "again.yaml") == device
    # A profile without taps keeps the digest (and dump) it had before taps.
    plain = profile("ops: {dense: {efficiency: 0.5}}\n")
    assert "tap_ns" not in dump_device(plain)
    assert "tap_ns" not in plain.data()["ops"]["dense"]


def test_the_fit_gives_1x1_and_kxk_convolutions_one_rate_and_tap_cost():
    assert calibrate.group("conv_3x3") == calibrate.group("conv") == "pointwise"
    assert calibrate.group("depthwise_3x3") == "depthwise_3x3"  # its own
    assert calibrate.group("conv", gemm=()) == "conv"
    truth = profile(
        "ops: {conv: {efficiency: 0.4, tap_ns: 1.5}, "
        "pointwise: {efficiency: 0.4, tap_ns: 1.5}}\n"
    )
    graphs = [stem(32), stem(64), pointwise(64, 28), pointwise(256, 14)]
    samples = [
        calibrate.Sample(str(i), g, estimate(g, truth).total_s)
        for i, g in enumerate(graphs)
    ]
    fitted = calibrate.fit(samples, profile("ops: {conv: {efficiency: 0.9}}\n"))
    for klass in ("conv", "pointwise"):  # within the pull towards the start
        assert fitted.op(klass).efficiency == pytest.approx(0.4, rel=0.01)
        assert fitted.op(klass).tap_ns == pytest.approx(1.5, rel=0.01)


def test_fused_ops_cost_nothing_and_blocks_add_up():
    _, graph = compiler.load_and_expand(SPECS / "v2.yaml")
    lat = estimate(graph, load_device("desktop_avx2"))
    kinds = {op.kind for op in lat.ops if op.fused_into}
    assert kinds == {"bn", "act"}  # folded batch norm, relu6 into the conv
    assert all(op.time_s == 0 for op in lat.ops if op.fused_into)
    assert sum(b.time_s for b in lat.blocks) == pytest.approx(lat.total_s)
    # Each run op: conv, depthwise or dense (53), the residual adds (10), the pool.
    assert lat.ops_run == 52 + 1 + 10 + 1
    shares = sum(lat.share(part) for part in ("compute", "memory", "overhead"))
    assert shares == pytest.approx(1)


def test_hardswish_runs_where_relu_fuses():
    _, graph = compiler.load_and_expand(SPECS / "v3_small.yaml")
    device = load_device("desktop_avx2")
    ran = {op.op_class for op in estimate(graph, device).ops if op.time_s}
    assert {"hardswish", "hardsigmoid", "mul", "pool"} <= ran
    assert "relu" not in ran and "batch_norm" not in ran


# ------------------------------------------------------------------- profiles


def test_every_shipped_profile_loads_and_names_its_sources():
    shipped = bundled_devices()
    assert {"phone_cpu", "desktop_avx2", "desktop_avx512", "edgetpu"} <= set(shipped)
    for name in shipped:
        device = load_device(name)
        assert device.name == name and device.sources


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("peek_gmacs: 3\n", "round.yaml:5: peek_gmacs: unknown key 'peek_gmacs'"),
        ("cache: {bytes: 10, bandwidth_gbs: 3, bandwith: 1}\n", "did you mean"),
        ("ops: {depthwize: {efficiency: 0.5}}\n", "unknown op class 'depthwize'"),
        ("ops: {depthwise_4x4: {efficiency: 0.5}}\n", "kernel must be odd"),
        ("ops: {conv: {efficiency: 1.5}}\n", "round.yaml:5: ops.conv.efficiency:"),
        ("fuses: {activations: [relu, swishy]}\n", "unknown activation 'swishy'"),
        ("dtype: float64\n", "round.yaml:5: dtype:"),
        ("threads: 0\n", "round.yaml:5: threads:"),
    ],
)
def test_profile_errors_are_located(extra, expected):
    with pytest.raises(SpecError) as caught:
        profile(extra)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_values_in_the_file_are_located():
    text = ROUND.replace("peak_gmacs: 100", "peak_gmacs: -1")
    with pytest.raises(SpecError, match=r"^bad\.yaml:3: peak_gmacs: must be greater"):
        parse_device(text, "bad.yaml")
    with pytest.raises(SpecError, match="missing required key 'sources'"):
        parse_device("name: x\npeak_gmacs: 1\nbandwidth_gbs: 1\n", "bad.yaml")
    with pytest.raises(SpecError, match="expected a mapping of device profile keys"):
        parse_device("- 1\n", "bad.yaml")


def test_cli_device_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(ROUND + "ops: {pointwise: {efficency: 0.5}}\n")
    code, out, err = run_cli(["costs", SPECS / "v2.yaml", "--device", bad])
    assert code == 2 and out == ""
    assert err.strip().endswith(
        "bad.yaml:5: ops.pointwise.efficency: unknown key 'efficency' — did you mean "
        "'efficiency'?"
    )
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["costs", SPECS / "v2.yaml", "--device", "nosuch"])
    assert code == 2 and "no shipped profile of that name" in err


# --------------------------------------------------------------------- reports


def test_costs_shows_time_and_bound_per_block():
    code, out, _ = run_cli(["costs", SPECS / "v2.yaml", "--device", "desktop_avx2"])
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith(" #"))
    assert header.split()[-4:] == ["ms", "time", "%", "bound"]
    classifier = next(line for line in out.splitlines() if "classifier " in line)
    assert classifier.split()[-1] in ("compute", "memory")
    assert "estimated latency on desktop_avx2 (ms)" in out


def test_json_and_csv_carry_the_estimate():
    argv = ["costs", SPECS / "v3_small.yaml", "--device", "edgetpu"]
    data = json.loads(run_cli([*argv, "--format", "json"])[1])
    latency = data["latency"]
    assert latency["device"] == "edgetpu" and latency["dtype"] == "int8"
    assert sum(b["time_s"] for b in latency["blocks"]) == pytest.approx(
        latency["total_ms"] / 1e3
    )
    assert len(latency["layers"]) == len(data["layers"])
    rows = list(csv.DictReader(io.StringIO(run_cli([*argv, "--format", "csv"])[1])))
    assert float(rows[-1]["est_ms"]) == pytest.approx(latency["total_ms"], rel=1e-5)
    assert {r["bound"] for r in rows[:-1]} <= {"compute", "memory"}
