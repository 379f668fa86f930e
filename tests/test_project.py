"""Projects: a config listing what to generate, `mbcompile generate` and
`mbcompile check`, in a repository of the user's (a temporary folder here).

Expected files come from the single-spec CLI (`mbcompile SPEC`, `mbcompile costs`),
whose output the golden tests hold against the committed generated/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import ROOT, SPECS, run_cli
from mbcompile import __version__
from mbcompile.project import outputs
from mbcompile.project.config import toml_lines

CONFIG = """\
[project]
name = "my-app"

[tool.mbcompile]
report = "generated/reports/{name}.md"

[[tool.mbcompile.targets]]
spec = "specs/*.yaml"
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A user's repository: two specs and a pyproject.toml listing them."""
    (tmp_path / "specs").mkdir()
    shutil.copy(SPECS / "v3_small.yaml", tmp_path / "specs" / "net.yaml")
    shutil.copy(SPECS / "v1.yaml", tmp_path / "specs" / "tiny.yaml")
    (tmp_path / "pyproject.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli_outputs(spec: str, *args: str) -> dict[str, str]:
    """What `mbcompile SPEC` writes for both backends, and its Markdown report."""
    code, report, err = run_cli(["costs", spec, "--format", "markdown", *args])
    assert code == 0, err
    found = {"report": report}
    for backend in ("keras", "torch"):
        code, out, err = run_cli([spec, "--backend", backend, "-o", "-", *args])
        assert code == 0, err
        found[backend] = out
    return found


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------- generate


def test_generate_writes_what_the_cli_writes(project):
    code, _, err = run_cli(["generate"])
    assert code == 0, err
    for name in ("net", "tiny"):
        expected = cli_outputs(f"specs/{name}.yaml")
        for backend in ("keras", "torch"):
            written = (project / "generated" / backend / f"{name}.py").read_text()
            assert written == expected[backend]
        report = (project / "generated" / "reports" / f"{name}.md").read_text()
        assert report == expected["report"]
    assert "mbcompile: wrote generated/torch/net.py" in err
    assert err.endswith("6 generated files: 6 written, 0 unchanged\n")


def test_generate_rewrites_only_what_changed(project):
    assert run_cli(["generate"])[0] == 0
    mtimes = {p: p.stat().st_mtime_ns for p in project.rglob("generated/**/*.*")}
    spec = project / "specs" / "tiny.yaml"
    spec.write_text(
        spec.read_text().replace("width_multiplier: 1.0", "width_multiplier: 0.5")
    )
    code, _, err = run_cli(["generate"])
    assert code == 0, err
    changed = sorted(
        str(p.relative_to(project))
        for p, mtime in mtimes.items()
        if p.stat().st_mtime_ns != mtime
    )
    assert changed == [
        "generated/keras/tiny.py",
        "generated/reports/tiny.md",
        "generated/torch/tiny.py",
    ]
    assert err.endswith("6 generated files: 3 written, 3 unchanged\n")


def test_a_target_lists_its_specs(project):
    """`spec` may list files and globs: each file it matches once, in the list's
    order, and no other."""
    shutil.copy(SPECS / "v2.yaml", project / "specs" / "other.yaml")
    (project / "pyproject.toml").write_text(
        CONFIG.replace(
            'spec = "specs/*.yaml"',
            'spec = ["specs/tiny.yaml", "specs/n*.yaml", "specs/tiny.yaml"]',
        )
    )
    code, _, err = run_cli(["generate"])
    assert code == 0, err
    written = sorted(p.stem for p in (project / "generated" / "torch").glob("*.py"))
    assert written == ["net", "tiny"]
    assert err.index("generated/torch/tiny.py") < err.index("generated/torch/net.py")
    assert err.endswith("6 generated files: 6 written, 0 unchanged\n")


def test_overrides_name_backends_and_fold_bn(project):
    (project / "pyproject.toml").write_text(
        CONFIG
        + textwrap.dedent("""
        [[tool.mbcompile.targets]]
        spec = "specs/net.yaml"
        name = "net_075"
        backends = ["torch"]
        set = { width_multiplier = 0.75, "stages[2].k" = 3, "conventions.bn_epsilon" = 0.01 }

        [[tool.mbcompile.targets]]
        spec = "specs/net.yaml"
        fold_bn = true
        output = "deploy/{backend}/{name}.py"
        report = ""
        """)
    )
    code, _, err = run_cli(["generate"])
    assert code == 0, err
    sets = ["--set", "width_multiplier=0.75", "--set", "stages.2.k=3"]
    sets += ["--set", "conventions.bn_epsilon=0.01"]
    varied = cli_outputs("specs/net.yaml", *sets)
    assert (project / "generated/torch/net_075.py").read_text() == varied["torch"]
    assert (project / "generated/reports/net_075.md").read_text() == varied["report"]
    assert not (project / "generated/keras/net_075.py").exists()
    folded = cli_outputs("specs/net.yaml", "--set", "fold_batch_norm=true")
    for backend in ("keras", "torch"):
        written = (project / "deploy" / backend / "net_folded.py").read_text()
        assert written == folded[backend]
    assert not (project / "generated/reports/net_folded.md").exists()


def test_mbcompile_toml_found_from_a_subfolder(project):
    (project / "pyproject.toml").unlink()
    (project / "mbcompile.toml").write_text(
        '[[targets]]\nspec = "specs/tiny.yaml"\nbackends = ["keras"]\n'
    )
    (project / "src" / "app").mkdir(parents=True)
    os.chdir(project / "src" / "app")
    code, _, err = run_cli(["generate"])
    assert code == 0, err
    assert "wrote ../../generated/keras/tiny.py" in err
    assert sorted(snapshot(project / "generated")) == ["keras/tiny.py"]
    code, out, _ = run_cli(["check"])
    assert (code, out) == (0, "mbcompile check: 1 generated files are up to date\n")


def test_config_option_names_the_file(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.chdir(elsewhere)
    code, _, err = run_cli(["generate", "--config", project / "pyproject.toml"])
    assert code == 0, err
    assert (project / "generated" / "torch" / "net.py").is_file()
    assert not (elsewhere / "generated").exists()


def test_one_bad_spec_writes_nothing_and_names_every_problem(project):
    (project / "specs" / "bad.yaml").write_text(
        (SPECS / "v2.yaml")
        .read_text()
        .replace("{t: 6, c: 24,  n: 2, s: 2}", "{t: 6, c: 24,  n: 2, s: 3}")
    )
    (project / "specs" / "worse.yaml").write_text("name: x\n")
    code, out, err = run_cli(["generate"])
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert any(
        line.startswith("mbcompile: error: specs/bad.yaml:") and "stages[1].s" in line
        for line in lines
    ), err
    assert any(line.startswith("mbcompile: error: specs/worse.yaml") for line in lines)
    assert not (project / "generated").exists()


def test_generate_never_writes_through_a_link_onto_a_spec(project):
    assert run_cli(["generate"])[0] == 0
    before = snapshot(project)
    target = project / "generated" / "torch" / "net.py"
    target.unlink()
    target.symlink_to(project / "specs" / "net.yaml")
    spec = project / "specs" / "tiny.yaml"
    spec.write_text(spec.read_text().replace("num_classes: 1000", "num_classes: 10"))
    after_edit = snapshot(project)
    code, _, err = run_cli(["generate"])
    assert code == 2
    assert err == (
        "mbcompile: error: refusing to overwrite generated/torch/net.py: it is the "
        "spec this command reads\n"
    )
    assert snapshot(project) == after_edit  # not even tiny's files were written
    assert after_edit["specs/net.yaml"] == before["specs/net.yaml"]


# -------------------------------------------------------------------------- check


def test_check_passes_when_fresh(project):
    code, out, _ = run_cli(["check"])
    assert code == 1 and out.count(": missing: ") == 6
    assert run_cli(["generate"])[0] == 0
    code, out, err = run_cli(["check"])
    assert (code, out, err) == (
        0,
        "mbcompile check: 6 generated files are up to date\n",
        "",
    )


def test_check_lists_stale_files_with_a_diff(project):
    assert run_cli(["generate"])[0] == 0
    spec = project / "specs" / "tiny.yaml"
    spec.write_text(spec.read_text().replace("num_classes: 1000", "num_classes: 10"))
    code, out, _ = run_cli(["check"])
    assert code == 1
    lines = out.splitlines()
    stale = [line for line in lines if ": stale: " in line]
    assert [line.split(":")[0] for line in stale] == [
        "generated/keras/tiny.py",
        "generated/torch/tiny.py",
        "generated/reports/tiny.md",
    ]
    assert "its spec changed since it was generated (spec sha256 " in stale[0]
    assert "--- generated/torch/tiny.py (committed)" in lines
    assert "+++ generated/torch/tiny.py (generated now)" in lines
    assert any(line.startswith("+") and "10" in line for line in lines)
    assert lines[-1].startswith("mbcompile check: 3 of 6 generated files are not")
    code, out, _ = run_cli(["check", "--no-diff"])
    assert code == 1 and len(out.splitlines()) == 4
    assert run_cli(["generate"])[0] == 0
    assert run_cli(["check"])[0] == 0


def test_check_tells_hand_edits_versions_and_line_ends_apart(project):
    assert run_cli(["generate"])[0] == 0
    torch_file = project / "generated" / "torch" / "net.py"
    text = torch_file.read_text()
    torch_file.write_text(text.replace("BN_MOMENTUM = 0.01", "BN_MOMENTUM = 0.1"))
    keras_file = project / "generated" / "keras" / "net.py"
    keras_text = keras_file.read_text()
    keras_file.write_text(
        keras_text.replace(f"mbcompile {__version__}", "mbcompile 0.0.9", 1)
    )
    tiny = project / "generated" / "torch" / "tiny.py"
    tiny.write_bytes(tiny.read_bytes().replace(b"\n", b"\r\n"))
    (project / "generated" / "reports" / "net.md").unlink()
    code, out, _ = run_cli(["check", "--no-diff"])
    assert code == 1
    assert out.splitlines()[:4] == [
        f"generated/keras/net.py: stale: generated by mbcompile 0.0.9; this is {__version__}",
        "generated/torch/net.py: edited: changed since it was generated (same spec, "
        "same mbcompile)",
        "generated/reports/net.md: missing: not generated yet, or deleted",
        "generated/torch/tiny.py: edited: its line ends are CRLF (check generated "
        "files out with LF: `generated/** text eol=lf` in .gitattributes)",
    ]


def test_check_finds_orphans_of_a_renamed_spec(project):
    assert run_cli(["generate"])[0] == 0
    (project / "specs" / "tiny.yaml").rename(project / "specs" / "small.yaml")
    code, out, _ = run_cli(["check", "--no-diff"])
    assert code == 1
    lines = out.splitlines()
    assert "generated/keras/small.py: missing: not generated yet, or deleted" in lines
    orphaned = [line.split(":")[0] for line in lines if ": orphaned: " in line]
    # Reports carry no module header; only generated modules are recognised.
    assert orphaned == ["generated/keras/tiny.py", "generated/torch/tiny.py"]
    code, _, err = run_cli(["generate"])
    assert code == 0 and "generated/torch/tiny.py: generated by mbcompile" in err
    assert (project / "generated" / "torch" / "tiny.py").exists()  # never deleted


def test_check_diff_is_short_and_safe_for_a_terminal(project):
    assert run_cli(["generate"])[0] == 0
    target = project / "generated" / "torch" / "net.py"
    target.write_text("\x1b[2J" + "x = 1\n" * 500)
    code, out, _ = run_cli(["check"])
    assert code == 1
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert "... " in out and "more lines of diff" in out
    diff = [line for line in out.splitlines() if line[:1] in "+- @"]
    assert len(diff) <= outputs.DIFF_LINES


def test_check_and_generate_import_neither_framework(project):
    assert run_cli(["generate"])[0] == 0
    code = (
        "import sys\n"
        "from mbcompile.cli import main\n"
        "assert main(['check']) == 0\n"
        "assert main(['generate']) == 0\n"
        "frameworks = {'torch', 'tensorflow', 'keras', 'jax'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in frameworks))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


# ------------------------------------------------------------------- bad configs

TARGET = '[[tool.mbcompile.targets]]\nspec = "specs/net.yaml"\n'

BAD_CONFIGS = [
    # (config text, the located message expected on the first error line)
    (
        TARGET + 'spek = "x"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].spek: unknown key 'spek' — did "
        "you mean 'spec'?",
    ),
    (
        TARGET + 'backends = ["tf"]\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].backends: unknown backend 'tf'; "
        "expected keras or torch",
    ),
    (
        TARGET + 'backends = ["torch", "torch"]\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].backends: names a backend twice",
    ),
    (
        TARGET + "backends = []\n",
        "pyproject.toml:3: tool.mbcompile.targets[0].backends: List should have at "
        "least 1 item after validation, not 0",
    ),
    (
        TARGET + 'output = "generated/{name}.txt"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].output: must end in .py",
    ),
    (
        TARGET + 'output = "../elsewhere/{backend}/{name}.py"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].output: must be a relative path "
        "inside the project folder",
    ),
    (
        TARGET + 'output = "/tmp/{backend}/{name}.py"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].output: must be a relative path",
    ),
    (
        TARGET + 'output = "gen/{model}/{backend}.py"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].output: unknown placeholder "
        "{model}; use {name}, {backend}",
    ),
    (
        TARGET + 'report = "reports/{name}.pdf"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].report: must end in one of .md, "
        ".json, .csv, .txt",
    ),
    (
        TARGET + 'report = "reports/{backend}.md"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].report: unknown placeholder "
        "{backend}; use {name}",
    ),
    (
        TARGET + 'fold_bn = "yes"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].fold_bn: Input should be a valid "
        "boolean",
    ),
    (
        TARGET + 'name = "2net"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].name: must be a Python module "
        "name",
    ),
    (
        '[[tool.mbcompile.targets]]\nname = "x"\n',
        "pyproject.toml:1: tool.mbcompile.targets[0].spec: missing required key 'spec'",
    ),
    (
        "[tool.mbcompile]\ntargets = []\n",
        "pyproject.toml:2: tool.mbcompile.targets: List should have at least 1 item",
    ),
    (
        "[tool.mbcompile]\nreport = 3\n" + TARGET,
        "pyproject.toml:2: tool.mbcompile.report: Input should be a valid string",
    ),
    (
        '\n\n[[tool.mbcompile.targets]]\nspec = "specs/missing.yaml"\n',
        "pyproject.toml:4: tool.mbcompile.targets[0].spec: spec file not found: "
        "specs/missing.yaml",
    ),
    (
        '[[tool.mbcompile.targets]]\nspec = "models/*.yaml"\n',
        "pyproject.toml:2: tool.mbcompile.targets[0].spec: the glob models/*.yaml "
        "matches no file",
    ),
    (
        '[[tool.mbcompile.targets]]\nspec = ["specs/net.yaml", "specs/nix.yaml"]\n',
        "pyproject.toml:2: tool.mbcompile.targets[0].spec[1]: spec file not found: "
        "specs/nix.yaml",
    ),
    (
        "[[tool.mbcompile.targets]]\nspec = []\n",
        "pyproject.toml:2: tool.mbcompile.targets[0].spec: must name a spec file or a "
        "glob such as specs/*.yaml (or a list of them)",
    ),
    (
        '[[tool.mbcompile.targets]]\nspec = "specs/*.yaml"\nname = "one"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].name: names one output, but the "
        "spec glob matches several files",
    ),
    (
        TARGET + TARGET,
        "pyproject.toml:3: tool.mbcompile.targets[1].output: specs/net.yaml would "
        "write generated/keras/net.py, as specs/net.yaml "
        "(tool.mbcompile.targets[0]) does; give each its own name or output",
    ),
    (
        TARGET + 'output = "generated/{name}.py"\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].output: specs/net.yaml would "
        "write generated/net.py, as specs/net.yaml (tool.mbcompile.targets[0]) does",
    ),
    (
        TARGET + "set = { width_multiplier = [1, 2] }\n",
        "pyproject.toml:3: tool.mbcompile.targets[0].set.width_multiplier: "
        "'width_multiplier': a list is not a single value",
    ),
    (
        TARGET + 'set = { "stages..c" = 3 }\n',
        "pyproject.toml:3: tool.mbcompile.targets[0].set.stages..c: 'stages..c' is "
        "not a field path",
    ),
    (
        TARGET + '\n[tool.mbcompile.targets.set]\n"stages.2.s" = 3\n',
        # A bad value is found by the spec's validation, blamed on the config line.
        "pyproject.toml:5: stages[2].s: stride must be 1 or 2",
    ),
    (
        TARGET + "set = { stagez = 3 }\n",
        "pyproject.toml:3: stagez: unknown key 'stagez' — did you mean 'stages'?",
    ),
    (
        TARGET + "set = {width_multiplier = \n",
        "pyproject.toml:3: invalid TOML: Invalid",
    ),
    (  # tomllib recurses per level; its RecursionError is not a crash of ours
        TARGET + "set = {name = " + "[" * 5000 + "]" * 5000 + "}\n",
        "pyproject.toml:3: invalid TOML: nested too deeply to read",
    ),
    ("[tool.other]\nx = 1\n", "pyproject.toml: has no [tool.mbcompile] table"),
    ("[tool]\nmbcompile = 3\n", "pyproject.toml:2: tool.mbcompile: must be a table"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_is_a_located_error_and_writes_nothing(project, text, message):
    (project / "pyproject.toml").write_text(text)
    before = snapshot(project)
    for command in ("generate", "check"):
        code, out, err = run_cli([command, "--config", "pyproject.toml"])
        assert (code, out) == (2, ""), err
        first = err.splitlines()[0]
        assert first.startswith(f"mbcompile: error: {message}"), first
    assert snapshot(project) == before


def test_deep_toml_names_a_line_inside_the_nesting(project):
    # Brackets in a comment and a string come first and must not count.
    text = TARGET + '# [[[[[[\nname = "[[[[[["\nx = ' + "[\n" * 5000 + "]" * 5000
    (project / "pyproject.toml").write_text(text)
    code, _, err = run_cli(["check"])
    assert code == 2, err
    match = re.fullmatch(
        r"mbcompile: error: pyproject\.toml:(\d+): invalid TOML: nested too deeply "
        r"to read\n",
        err,
    )
    assert match, err
    assert 5 < int(match[1]) < 5005  # the "x = [" line is 5; the last "[" is 5004


def test_no_config_or_two_configs(project, tmp_path_factory):
    lone = tmp_path_factory.mktemp("no_project")
    os.chdir(lone)
    code, _, err = run_cli(["check"])
    assert code == 2 and "no project config here or in a folder above" in err
    os.chdir(project)
    (project / "mbcompile.toml").write_text('[[targets]]\nspec = "specs/net.yaml"\n')
    code, _, err = run_cli(["generate"])
    assert code == 2 and "keep one" in err
    assert not (project / "generated").exists()


def test_a_pyproject_without_the_table_is_passed_over(project):
    """A package's own pyproject.toml inside a larger project does not stop the
    search for the project's config."""
    (project / "pkg").mkdir()
    (project / "pkg" / "pyproject.toml").write_text('[project]\nname = "pkg"\n')
    os.chdir(project / "pkg")
    code, _, err = run_cli(["generate"])
    assert code == 0, err
    assert (project / "generated" / "torch" / "net.py").is_file()


def test_toml_lines_point_at_tables_keys_and_array_entries():
    text = textwrap.dedent('''\
        [tool.mbcompile]
        output = "x/{name}.py"  # a comment [with brackets]
        backends = [
            "keras",
            "torch",
        ]
        note = """
        spec = "not a key"
        """

        [[tool.mbcompile.targets]]
        spec = "a.yaml"

        [[tool.mbcompile.targets]]
        "spec" = "b.yaml"
        set = { width_multiplier = 0.5, "stages.3.c" = 48 }

        [tool.mbcompile.targets.set]
        resolution = 192
        ''')
    lines = toml_lines(text)
    t = ("tool", "mbcompile")
    assert lines[t] == 1
    assert lines[(*t, "output")] == 2
    assert lines[(*t, "backends")] == 3
    assert lines[(*t, "note")] == 7
    assert (*t, "spec") not in lines  # inside a multi-line string
    assert lines[(*t, "targets")] == 11
    assert lines[(*t, "targets", 0)] == 11
    assert lines[(*t, "targets", 0, "spec")] == 12
    assert lines[(*t, "targets", 1, "spec")] == 15
    assert lines[(*t, "targets", 1, "set", "stages.3.c")] == 16
    assert lines[(*t, "targets", 1, "set")] == 16
    assert lines[(*t, "targets", 1, "set", "resolution")] == 19


def test_the_documented_config_works_as_written(project):
    """The config shown in docs/project.md ("Generated code in your repository")."""
    page = (ROOT / "docs" / "project.md").read_text()
    start = page.index("```toml\n") + 8
    text = page[start : page.index("```\n", start)]
    shutil.copytree(SPECS, project / "specs", dirs_exist_ok=True)
    (project / "pyproject.toml").write_text(text)
    code, _, err = run_cli(["generate"])
    assert code == 0, err
    assert (project / "src/models/v3_large_075.py").is_file()
    assert (project / "generated/keras/v2.py").is_file()
    assert (project / "generated/reports/v3_large_075.md").is_file()
    assert run_cli(["check"])[0] == 0
