"""The command line: exit codes, output paths, reports, and that compiling never
imports a framework."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT, SPECS
from mbcompile import cli, compiler

V2 = str(SPECS / "v2.yaml")


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_default_output_is_generated_backend_stem_under_cwd(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    code, out, err = run([V2, "--backend", "torch"], capsys)
    assert code == 0, err
    target = tmp_path / "generated" / "torch" / "v2.py"
    assert target.read_text() == compiler.compile_spec(V2, "torch")
    assert err == f"mbcompile: wrote {target.relative_to(tmp_path)}\n"
    assert out == ""
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["v2.py"]


@pytest.mark.parametrize("flags", [["--backend", "all"], []])
def test_all_backends(tmp_path, monkeypatch, capsys, flags):
    monkeypatch.chdir(tmp_path)
    code, _, err = run([V2, *flags], capsys)
    assert code == 0, err
    for backend in ("keras", "torch"):
        written = (tmp_path / "generated" / backend / "v2.py").read_text()
        assert written == compiler.compile_spec(V2, backend)


def test_output_to_stdout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run([V2, "--backend", "keras", "-o", "-"], capsys)
    assert code == 0
    assert out == compiler.compile_spec(V2, "keras")
    assert list(tmp_path.iterdir()) == []


def test_all_backends_to_one_output_is_bad_input(tmp_path, capsys):
    code, _, err = run([V2, "-o", str(tmp_path / "x.py")], capsys)
    assert code == 2
    assert err == (
        "mbcompile: error: -o/--output needs a single --backend (keras or torch)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_report_json(capsys):
    code, out, _ = run([V2, "--report", "--format", "json"], capsys)
    assert code == 0
    data = json.loads(out)
    # torchvision's mobilenet_v2: 3,504,872 parameters; 34,112 BN running statistics
    # (2 x 17,056 BN channels); ~300M multiply-adds in the paper's Table 3.
    assert data["trainable_params"] == 3_504_872
    assert data["non_trainable_params"] == 34_112
    assert 295e6 < data["macs"] < 305e6
    assert len(data["layers"]) > 100
    assert {"name", "kind", "params", "macs"} <= set(data["layers"][0])


def test_report_table_writes_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run([V2, "--report"], capsys)
    assert code == 0
    assert "3,504,872" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv,message",
    [
        (["missing.yaml"], "mbcompile: error: missing.yaml: file not found"),
        ([V2, "--set", "stages.2.s=3"], "stages[2].s: stride must be 1 or 2"),
        ([V2, "--backend", "jax"], "invalid choice"),
        ([V2, "--no-such-flag"], "unrecognized arguments"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_input_exits_2_without_traceback(
    tmp_path, monkeypatch, capsys, argv, message
):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert out == ""
    assert list(tmp_path.iterdir()) == []


def test_help_and_version(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "exit codes:" in out
    assert "2  bad input" in out
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.startswith("mbcompile ")


def test_internal_error_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated\nfailure")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(compiler, "build_graph", broken)
    code, out, err = run([V2, "--backend", "torch"], capsys)
    assert code == 1
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mbcompile: internal error: RuntimeError: simulated failure")
    assert "test_cli.py" in err  # where it happened
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_generation_failure_writes_nothing(tmp_path, monkeypatch, capsys):
    """With both backends, the second one failing must not leave the first written."""
    real = compiler.generate

    def torch_breaks(loaded, graph, backend):
        if backend == "torch":
            raise KeyError("template")
        return real(loaded, graph, backend)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(compiler, "generate", torch_breaks)
    code, _, err = run([V2], capsys)
    assert code == 1
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mbcompile", V2, "--backend", "torch", "-o", "-"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == compiler.compile_spec(V2, "torch")
    bad = subprocess.run(
        [sys.executable, "-m", "mbcompile", V2, "--set", "num_classes=-1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("mbcompile: error: --set num_classes=-1: num_classes")
    assert len(bad.stderr.splitlines()) == 1


FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")
CHECK_IMPORTS = """
import sys
from mbcompile.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in {frameworks} if m in sys.modules)
print(code, loaded)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--backend", "all"],
        ["--report", "--format", "json"],
        ["--report", "--backend", "keras", "--set", "conventions=keras_applications"],
    ],
)
def test_compiling_never_imports_a_framework(tmp_path, args):
    script = CHECK_IMPORTS.format(frameworks=FRAMEWORKS)
    result = subprocess.run(
        [sys.executable, "-c", script, str(SPECS / "v3_small.yaml"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 []"


# ----------------------------------------------------------- bundled specs by name


def test_every_command_takes_a_bundled_spec_by_name(tmp_path, monkeypatch, capsys):
    """As the Python API does: a name that is no file here is a bundled spec."""
    monkeypatch.chdir(tmp_path)  # no spec files here
    name = "mobilenetv4_conv_small"
    expected = compiler.compile_spec(SPECS / "timm" / f"{name}.yaml", "keras")
    code, _, err = run([name, "--backend", "keras"], capsys)
    assert code == 0, err
    written = tmp_path / "generated" / "keras" / f"{name}.py"
    assert written.read_text().splitlines()[1:] == expected.splitlines()[1:]
    for argv in (
        ["costs", name],
        ["plot", name, "-o", "costs.svg"],
        ["diagram", name, "-o", "graph.mmd"],
        ["compare", "v2", name],
    ):
        code, _, err = run(argv, capsys)
        assert code == 0, (argv, err)
    code, _, err = run(["costs", "mobilenetv9"], capsys)
    assert code == 2 and "no bundled spec of that name" in err
    assert "`mbcompile specs` lists them" in err


def test_specs_lists_the_bundled_specs_with_their_costs(capsys):
    import mbcompile

    code, out, err = run(["specs", "--format", "json"], capsys)
    assert code == 0, err
    listed = {e["name"]: e for e in json.loads(out)}
    assert set(listed) == set(mbcompile.bundled_specs())
    small = listed["mobilenetv4_conv_small"]
    # timm's own count (shared/reference/timm.md), and its family and file
    assert (small["params"], small["family"]) == (3_774_024, "v4")
    assert small["file"] == "specs/timm/mobilenetv4_conv_small.yaml"
    assert listed["v2"]["conventions"] == "torchvision"
    code, out, _ = run(["specs"], capsys)
    assert code == 0 and "mobilenetv4_conv_small" in out and "3,774,024" in out
