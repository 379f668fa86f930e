"""Hostile input: malformed YAML, injection attempts, absurd sizes, and output that
is atomic. Every bad input ends with exit code 2 and one located line per problem,
quickly, without a traceback and without touching any output file."""

from __future__ import annotations

import ast
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from helpers import SPECS
from mbcompile import cli, compiler
from mbcompile.frontend.yamlsource import MAX_BYTES

V2_TEXT = (SPECS / "v2.yaml").read_text()
# `mbcompile: error: file[:line]: message`
LOCATED = re.compile(r"^mbcompile: error: (?P<file>[^:]+)(?::(?P<line>\d+))?: \S")


def run(argv, capsys):
    start = time.perf_counter()
    code = cli.main([str(a) for a in argv])
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    return code, out, err, elapsed


def assert_bad_input(code, err, path=None, line=None):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and all(x.startswith("mbcompile: error: ") for x in lines), err
    if path is not None:
        match = LOCATED.match(lines[0])
        assert match and match["file"] == str(path), lines[0]
        if line is not None:
            assert match["line"] == str(line), lines[0]


# ----------------------------------------------------------------------- YAML

BILLION_LAUGHS = "lol: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 12)
)
DEEP_FLOW = "name: " + "[" * 20_000 + "]" * 20_000 + "\n"  # past PyYAML's recursion
DEEP_BLOCK = "name:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 40))

# (file content, expected line or None, message fragment)
YAML_CASES = {
    # reported at the first anchor that is reused
    "billion_laughs": (BILLION_LAUGHS, 1, "anchors and aliases are not supported"),
    "deep_flow": (DEEP_FLOW, None, "nested"),
    "deep_block": (DEEP_BLOCK, 33, "nested deeper than 32 levels"),
    "oversized": ("#" * (MAX_BYTES + 1), None, "larger than"),
    "binary": (b"name: \x00\x01\x02", None, "binary content"),
    "invalid_utf8": (b"name: x\nfamily: \xff\xfe\n", 2, "invalid UTF-8"),
    "empty": ("", None, "empty document"),
    "only_comments": ("# nothing here\n", None, "empty document"),
    "list": ("- 1\n- 2\n", 1, "top level is a list"),
    "scalar": ("just text\n", 1, "top level is a str"),
    "two_documents": ("a: 1\n---\nb: 2\n", 2, "single document"),
    "syntax": ("name: [unclosed\n", 2, "invalid YAML"),
    "python_tag": (
        "name: !!python/object/apply:os.system ['echo pwned']\n",
        1,
        "unsupported YAML tag '!!python/object/apply:os.system'",
    ),
    "custom_tag": ("name: !Ref x\n", 1, "unsupported YAML tag '!Ref'"),
    "binary_tag": ("name: !!binary aGk=\n", 1, "unsupported YAML tag '!!binary'"),
    "merge_key": ("base: {a: 1}\nother:\n  <<: {a: 1}\n", 3, "merge keys"),
    "duplicate_key": ("name: a\nname: b\n", 2, "duplicate key 'name'"),
    "non_string_key": ("1: a\n", 1, "key 1 is not a string"),
    "date": ("name: 2024-01-01\n", 1, "reads as a date"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_malformed_yaml(tmp_path, capsys, case):
    content, line, fragment = YAML_CASES[case]
    path = tmp_path / "spec.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code, out, err, elapsed = run([path, "--backend", "torch"], capsys)
    assert_bad_input(code, err, path, line)
    assert len(err.splitlines()) == 1, err
    assert fragment in err
    assert elapsed < 2.0, f"{case} took {elapsed:.2f}s"
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


@pytest.mark.parametrize("path", ["/dev/zero", "<dir>", "<missing>"])
def test_unreadable_sources(tmp_path, capsys, path):
    path = {"<dir>": tmp_path, "<missing>": tmp_path / "nope.yaml"}.get(path, path)
    if not Path(path).exists() and path != tmp_path / "nope.yaml":
        pytest.fail(f"{path} is expected on Linux")
    code, _, err, elapsed = run([path, "--report"], capsys)
    assert_bad_input(code, err, path)
    assert elapsed < 2.0


# ----------------------------------------------------------------------- injection

PAYLOADS = [
    "x'); __import__('os').system('echo pwned'); ('",
    'x"); __import__("os").system("echo pwned"); ("',
    'x"""\nimport os\nos.system("echo pwned")\n"""',
    "x\nimport os",
    "__import__('os').system('id')",
    "relu6\n",
    "relu6 #",
    "ｒｅｌｕ６",  # fullwidth look-alike
    "relu\u200b6",  # zero-width space
    "mobilenet\u202ev2",  # right-to-left override
    "{{ 7 * 7 }}",  # template syntax
    "a" * 65,
]
# Every spec string that could reach generated code, as a --set path / file key.
STRING_FIELDS = [
    "name",
    "family",
    "block",
    "conventions",
    "conventions.profile",
    "conventions.stride2_padding",
    "stem.act",
    "stages.0.act",
    "stages.0.block",
    "head.conv.act",
    "head.pool",
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("field", STRING_FIELDS)
def test_adversarial_strings_via_set(tmp_path, capsys, field, payload):
    """Rejected with one line; or, where YAML reads the value as a plain valid one
    (`relu6 #` is relu6 and a comment), compiled to exactly the canonical program."""
    out_file = tmp_path / "out.py"
    argv = [SPECS / "v2.yaml", "--backend", "torch", "-o", out_file]
    code, _, err, _ = run([*argv, f"--set={field}={payload}"], capsys)
    if code == 0:
        plain = yaml.safe_load(payload)  # an independent reading of the value
        assert isinstance(plain, str) and plain.isidentifier(), plain
        expected = compiler.compile_spec(
            SPECS / "v2.yaml", "torch", [f"{field}={plain}"]
        )
        assert out_file.read_text() == expected
        return
    assert_bad_input(code, err)
    assert len(err.splitlines()) == 1, err
    assert not out_file.exists()


@pytest.mark.parametrize("payload", PAYLOADS[:6])
def test_adversarial_names_in_a_file_are_rejected(tmp_path, capsys, payload):
    escaped = payload.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    text = V2_TEXT.replace("name: mobilenet_v2", f'name: "{escaped}"')
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code, _, err, _ = run([path, "--backend", "keras", "-o", tmp_path / "o.py"], capsys)
    line = text.splitlines().index(f'name: "{escaped}"') + 1
    assert_bad_input(code, err, path, line=line)
    assert "name: must be a Python identifier" in err
    assert not (tmp_path / "o.py").exists()


def test_adversarial_keys_are_reported_on_one_line(tmp_path, capsys):
    text = V2_TEXT + '"evil\\nkey\\u202e": 1\n'
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code, _, err, _ = run([path, "--report"], capsys)
    assert_bad_input(code, err, path, line=len(V2_TEXT.splitlines()) + 1)
    assert err.splitlines() == [
        f"mbcompile: error: {path}:{len(V2_TEXT.splitlines()) + 1}: evil key\\u202e: "
        "unknown key 'evil key\\u202e'"
    ]


def _names_and_calls(source: str) -> tuple[set, set, set]:
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    strings = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    return names, attrs, strings


HOSTILE_FILE_NAMES = [
    "evil'); __import__('os').system('id'); ('.yaml",
    'evil"""; import os; os.system("id"); """.yaml',
    "evil {{ 7 * 7 }} \\ $(id).yaml",
]


@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("file_name", HOSTILE_FILE_NAMES)
def test_hostile_file_names_stay_inert(tmp_path, capsys, file_name, backend):
    """The spec's file name is the one piece of text we quote unvalidated (in the
    header comment); the generated program must be exactly the canonical one."""
    path = tmp_path / file_name
    path.write_text(V2_TEXT)
    out_file = tmp_path / "out.py"
    code, _, err, _ = run([path, "--backend", backend, "-o", out_file], capsys)
    assert code == 0, err
    hostile = out_file.read_text()
    canonical = compiler.compile_spec(SPECS / "v2.yaml", backend)
    assert ast.dump(ast.parse(hostile)) == ast.dump(ast.parse(canonical))
    assert hostile.splitlines()[1:] == canonical.splitlines()[1:]
    assert hostile.splitlines()[0].startswith("# ")
    names, attrs, _ = _names_and_calls(hostile)
    assert not {"os", "__import__", "eval", "exec", "system", "open"} & (names | attrs)


def test_file_names_with_line_breaks_are_rejected(tmp_path, capsys):
    path = tmp_path / "evil\nimport os\nos.system('id')\n.yaml"
    path.write_text(V2_TEXT)
    out_file = tmp_path / "out.py"
    code, _, err, _ = run([path, "--backend", "torch", "-o", out_file], capsys)
    assert_bad_input(code, err)
    assert err.count("\n") == 1
    assert "file name contains control or invisible characters" in err
    assert not out_file.exists()


def test_generated_code_uses_only_expected_names():
    """Names in generated code come from templates, not specs: two specs with
    different names produce the same set of identifiers apart from the class."""
    for backend in ("keras", "torch"):
        a = compiler.compile_spec(SPECS / "v2.yaml", backend)
        b = compiler.compile_spec(
            SPECS / "v2.yaml", backend, ["name=zz_renamed_network"]
        )
        names_a, attrs_a, strings_a = _names_and_calls(a)
        names_b, attrs_b, strings_b = _names_and_calls(b)
        assert names_a - {"MobilenetV2"} == names_b - {"ZzRenamedNetwork"}
        assert attrs_a == attrs_b
        assert {s.replace("mobilenet_v2", "zz_renamed_network") for s in strings_a} == (
            strings_b
        )


# ----------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "override,field,fragment",
    [
        ("stages.1.c=0", "stages[1].c", "channels must be"),
        ("stages.1.n=-1", "stages[1].n", "repeats must be"),
        ("stages.1.s=3", "stages[1].s", "stride must be 1 or 2"),
        ("stages.1.k=4", "stages[1].k", "kernel must be an odd size"),
        ("stages.1.k=15", "stages[1].k", "kernel must be an odd size"),
        ("width_multiplier=0", "width_multiplier", "greater than 0"),
        ("width_multiplier=-0.5", "width_multiplier", "greater than 0"),
        ("num_classes=0", "num_classes", "greater than or equal to 1"),
        ("resolution=16", "resolution", "16 is too small for this network"),
        ("stages.1.t=.nan", "stages[1].t", "finite"),
        ("conventions.bn_epsilon=.inf", "conventions.bn_epsilon", "finite"),
        ("stages.1.c=16384", "stages[1]", "parameters, over the limit of"),
        ("head.conv.c=16384", None, None),  # fine alone (~26M parameters) ...
    ],
)
def test_out_of_range_values_name_the_field(
    tmp_path, capsys, override, field, fragment
):
    out_file = tmp_path / "out.py"
    argv = [SPECS / "v2.yaml", "--backend", "torch", "-o", out_file, "--set", override]
    code, _, err, _ = run(argv, capsys)
    if field is None:
        assert code == 0, err
        return
    assert_bad_input(code, err)
    assert err.startswith(f"mbcompile: error: --set {override}: {field}: "), err
    assert fragment in err
    assert not out_file.exists()


def test_parameter_budget_names_the_culprit(tmp_path, capsys):
    # ... but with width 8 and 100,000 classes the classifier alone needs 1.3e10.
    text = V2_TEXT.replace("num_classes: 1000", "num_classes: 100000")
    text = text.replace("conv: {c: 1280", "conv: {c: 16384")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code, _, err, elapsed = run([path, "--set", "width_multiplier=8"], capsys)
    assert_bad_input(code, err)
    (line,) = err.splitlines()
    assert line.startswith("mbcompile: error: --set width_multiplier=8: ") or (
        line.startswith(f"mbcompile: error: {path}:")
    )
    assert "head: the network would have" in line
    assert "over the limit of 2,000,000,000" in line
    assert elapsed < 5


# ----------------------------------------------------------------------- output


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.mark.parametrize(
    "override", ["stages.2.s=3", "name=1bad", "resolution=8", "nosuch.key=1"]
)
def test_failed_compile_leaves_existing_output_identical(tmp_path, capsys, override):
    out_file = tmp_path / "model.py"
    out_file.write_bytes(b"# precious, hand-edited\n")
    before = out_file.stat()
    argv = [SPECS / "v2.yaml", "--backend", "torch", "-o", out_file, "--set", override]
    code, _, err, _ = run(argv, capsys)
    assert_bad_input(code, err)
    assert out_file.read_bytes() == b"# precious, hand-edited\n"
    assert out_file.stat().st_mtime_ns == before.st_mtime_ns
    assert _files(tmp_path) == ["model.py"]


def test_failure_while_writing_leaves_no_temp_file(tmp_path, capsys, monkeypatch):
    out_file = tmp_path / "model.py"
    out_file.write_bytes(b"old")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    code, _, err, _ = run(
        [SPECS / "v2.yaml", "--backend", "torch", "-o", out_file], capsys
    )
    assert code == 2
    assert err == (
        f"mbcompile: error: cannot write {out_file}: No space left on device\n"
    )
    assert out_file.read_bytes() == b"old"
    assert _files(tmp_path) == ["model.py"]


def test_interrupted_write_leaves_no_temp_file(tmp_path, capsys, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    code, _, err, _ = run(
        [SPECS / "v2.yaml", "--backend", "torch", "-o", tmp_path / "m.py"], capsys
    )
    assert code == 130
    assert err == "mbcompile: interrupted\n"
    assert _files(tmp_path) == []


def test_missing_output_directories_are_created(tmp_path, capsys):
    out_file = tmp_path / "a" / "b" / "c" / "model.py"
    code, _, err, _ = run(
        [SPECS / "v2.yaml", "--backend", "keras", "-o", out_file], capsys
    )
    assert code == 0, err
    assert out_file.read_text() == compiler.compile_spec(SPECS / "v2.yaml", "keras")
    assert oct(out_file.stat().st_mode & 0o777) == "0o644"
    assert _files(tmp_path) == ["a", "a/b", "a/b/c", "a/b/c/model.py"]


def test_output_path_that_is_a_directory(tmp_path, capsys):
    code, _, err, _ = run(
        [SPECS / "v2.yaml", "--backend", "keras", "-o", tmp_path], capsys
    )
    assert_bad_input(code, err)
    assert err == f"mbcompile: error: output path {tmp_path} is a directory\n"
    assert _files(tmp_path) == []


def test_output_under_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "model.py"
    code, _, err, _ = run(
        [SPECS / "v2.yaml", "--backend", "keras", "-o", target], capsys
    )
    assert_bad_input(code, err)
    assert err.startswith(f"mbcompile: error: cannot write {target}: ")
    assert _files(tmp_path) == ["file"]
