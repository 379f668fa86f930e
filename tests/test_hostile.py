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
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


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
    "deep_flow": (DEEP_FLOW, 1, "nested deeper than 32 levels"),
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


@pytest.mark.usefixtures("no_hang")  # a YAML bomb would run for minutes
@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_malformed_yaml(tmp_path, capsys, case):
    content, line, fragment = YAML_CASES[case]
    path = tmp_path / "spec.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code, out, err = run([path, "--backend", "torch"], capsys)
    assert_bad_input(code, err, path, line)
    assert len(err.splitlines()) == 1, err
    assert fragment in err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


@pytest.mark.usefixtures("no_hang")  # /dev/zero read to its end never ends
@pytest.mark.parametrize("path", ["/dev/zero", "<dir>", "<missing>"])
def test_unreadable_sources(tmp_path, capsys, path):
    path = {"<dir>": tmp_path, "<missing>": tmp_path / "nope.yaml"}.get(path, path)
    if not Path(path).exists() and path != tmp_path / "nope.yaml":
        pytest.fail(f"{path} is expected on Linux")
    code, _, err = run([path, "--report"], capsys)
    assert_bad_input(code, err, path)


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
    code, _, err = run([*argv, f"--set={field}={payload}"], capsys)
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
    code, _, err = run([path, "--backend", "keras", "-o", tmp_path / "o.py"], capsys)
    line = text.splitlines().index(f'name: "{escaped}"') + 1
    assert_bad_input(code, err, path, line=line)
    assert "name: must be a Python identifier" in err
    assert not (tmp_path / "o.py").exists()


def test_adversarial_keys_are_reported_on_one_line(tmp_path, capsys):
    text = V2_TEXT + '"evil\\nkey\\u202e": 1\n'
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code, _, err = run([path, "--report"], capsys)
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
    code, _, err = run([path, "--backend", backend, "-o", out_file], capsys)
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
    code, _, err = run([path, "--backend", "torch", "-o", out_file], capsys)
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
        ("num_classes=-1", "num_classes", "greater than or equal to 0"),
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
    code, _, err = run(argv, capsys)
    if field is None:
        assert code == 0, err
        return
    assert_bad_input(code, err)
    assert err.startswith(f"mbcompile: error: --set {override}: {field}: "), err
    assert fragment in err
    assert not out_file.exists()


@pytest.mark.usefixtures("no_hang")  # refused before any tensor is allocated
def test_parameter_budget_names_the_culprit(tmp_path, capsys):
    # ... but with width 8 and 100,000 classes the classifier alone needs 1.3e10.
    text = V2_TEXT.replace("num_classes: 1000", "num_classes: 100000")
    text = text.replace("conv: {c: 1280", "conv: {c: 16384")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code, _, err = run([path, "--set", "width_multiplier=8"], capsys)
    assert_bad_input(code, err)
    (line,) = err.splitlines()
    assert line.startswith("mbcompile: error: --set width_multiplier=8: ") or (
        line.startswith(f"mbcompile: error: {path}:")
    )
    assert "head: the network would have" in line
    assert "over the limit of 2,000,000,000" in line


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
    code, _, err = run(argv, capsys)
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
    code, _, err = run(
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
    code, _, err = run(
        [SPECS / "v2.yaml", "--backend", "torch", "-o", tmp_path / "m.py"], capsys
    )
    assert code == 130
    assert err == "mbcompile: interrupted\n"
    assert _files(tmp_path) == []


def test_missing_output_directories_are_created(tmp_path, capsys):
    out_file = tmp_path / "a" / "b" / "c" / "model.py"
    code, _, err = run(
        [SPECS / "v2.yaml", "--backend", "keras", "-o", out_file], capsys
    )
    assert code == 0, err
    assert out_file.read_text() == compiler.compile_spec(SPECS / "v2.yaml", "keras")
    assert oct(out_file.stat().st_mode & 0o777) == "0o644"
    assert _files(tmp_path) == ["a", "a/b", "a/b/c", "a/b/c/model.py"]


def test_output_path_that_is_a_directory(tmp_path, capsys):
    code, _, err = run(
        [SPECS / "v2.yaml", "--backend", "keras", "-o", tmp_path], capsys
    )
    assert_bad_input(code, err)
    assert err == (
        f"mbcompile: error: refusing to write {tmp_path}: it is a directory, not a "
        "regular file\n"
    )
    assert _files(tmp_path) == []


def test_output_under_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "model.py"
    code, _, err = run([SPECS / "v2.yaml", "--backend", "keras", "-o", target], capsys)
    assert_bad_input(code, err)
    assert err.startswith(f"mbcompile: error: cannot write {target}: ")
    assert _files(tmp_path) == ["file"]


# ------------------------------------------------------------- unusable paths


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo.yaml")
    return tmp / "fifo.yaml"


def _symlink_loop(tmp: Path) -> Path:
    (tmp / "loop_a.yaml").symlink_to(tmp / "loop_b.yaml")
    (tmp / "loop_b.yaml").symlink_to(tmp / "loop_a.yaml")
    return tmp / "loop_a.yaml"


def _oversized(tmp: Path) -> Path:
    (tmp / "big.yaml").write_text("#" * (4 * MAX_BYTES))
    return tmp / "big.yaml"


# name -> (path in tmp_path, what the one-line message says)
UNUSABLE_PATHS = {
    "fifo": (_fifo, "is a FIFO (named pipe); expected a regular file"),
    "symlink loop": (_symlink_loop, "Too many levels of symbolic links"),
    "NUL byte": (lambda tmp: f"{tmp}/sp\0ec.yaml", "sp\\x00ec.yaml"),
    "name too long": (lambda tmp: tmp / ("s" * 300 + ".yaml"), "File name too long"),
    "path too long": (
        lambda tmp: tmp / "/".join(["d" * 200] * 30) / "spec.yaml",
        "File name too long",
    ),
    "directory": (lambda tmp: tmp, "is a directory"),
    "device": (lambda tmp: "/dev/zero", "is a character device"),
    "oversized": (_oversized, "larger than 65,536 bytes"),
}


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("case", sorted(UNUSABLE_PATHS))
def test_unusable_spec_paths_are_one_short_line(tmp_path, capsys, case):
    make, fragment = UNUSABLE_PATHS[case]
    code, out, err = run([make(tmp_path), "--report"], capsys)
    assert_bad_input(code, err)
    (line,) = err.splitlines()
    assert fragment in line and len(line) < 600, line
    assert out == ""


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("case", sorted(UNUSABLE_PATHS))
def test_unusable_extends_paths_are_located(tmp_path, capsys, case):
    make, fragment = UNUSABLE_PATHS[case]
    base = str(make(tmp_path)).replace("\\", "\\\\").replace("\0", "\\0")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f'name: child\nextends: "{base}"\n')
    code, _, err = run([spec, "--report"], capsys)
    assert_bad_input(code, err, spec, line=2)
    (line,) = err.splitlines()
    assert line.startswith(f"mbcompile: error: {spec}:2: extends: ")
    assert fragment in line and len(line) < 600, line


def test_extends_chains_merge_in_linear_time(tmp_path, capsys):
    """Four files of ~60 KB, each replacing thousands of keys of the one it
    extends: the quadratic merge took 16-24 s, about 40 times as long as reading
    the same keys from one file; a linear merge takes about as long. Both are
    timed in turn (best of three), so a busy machine slows both alike."""
    for i in range(4):
        head = f"extends: f{i - 1}.yaml\n" if i else V2_TEXT
        keys = "".join(f"zz{j:05d}: {j}\n" for j in range(4500 - 500 * (i == 0)))
        (tmp_path / f"f{i}.yaml").write_text(head + keys)
    assert (tmp_path / "f3.yaml").stat().st_size > 60_000
    one_file = tmp_path / "one.yaml"
    one_file.write_text(V2_TEXT + "".join(f"zz{j:05d}: {j}\n" for j in range(4500)))
    times = {"chain": [], "one": []}
    for _ in range(3):
        for kind, path in (("chain", tmp_path / "f3.yaml"), ("one", one_file)):
            start = time.perf_counter()
            code, _, err = run([path, "--report"], capsys)
            times[kind].append(time.perf_counter() - start)
            assert_bad_input(code, err)  # the keys are unknown, and reported briefly
            assert len(err.splitlines()) <= 21
    ratio = min(times["chain"]) / min(times["one"])
    assert ratio < 8, f"four files take {ratio:.1f} times as long as one"


# ------------------------------------------------------------- huge numbers

HUGE = "1" * 5000

# (file text replacement or None, --set override or None)
HUGE_NUMBERS = {
    "file value": (("resolution: 224", f"resolution: {HUGE}"), None),
    "file negative": (("num_classes: 1000", f"num_classes: -{HUGE}"), None),
    "file row value": (
        ("{t: 6, c: 24,  n: 2, s: 2}", f"{{t: 6, c: {HUGE}, n: 2, s: 2}}"),
        None,
    ),
    "file key": (("name: mobilenet_v2", f"name: mobilenet_v2\n{HUGE}: 1"), None),
    "file hex": (("resolution: 224", f"resolution: 0x{HUGE}"), None),
    "set value": (None, f"resolution={HUGE}"),
    "set row value": (None, f"stages.2.c=-{HUGE}"),
    "set index": (None, f"stages.{HUGE}.c=8"),
}


@pytest.mark.parametrize("case", sorted(HUGE_NUMBERS))
def test_huge_numbers_are_located_bad_input(tmp_path, capsys, case):
    replacement, override = HUGE_NUMBERS[case]
    text = V2_TEXT
    if replacement:
        assert replacement[0] in text
        text = text.replace(replacement[0], replacement[1], 1)
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    argv = [spec, "--report", *(["--set", override] if override else [])]
    code, _, err = run(argv, capsys)
    assert_bad_input(code, err)
    (line,) = err.splitlines()
    assert len(line) < 600, line
    assert line.startswith(
        f"mbcompile: error: {spec}:" if replacement else "mbcompile: error: --set "
    ), line


# ------------------------------------------------------------- messages

LONG = "x" * 100_000

# argv after the spec; every message line stays short whatever it echoes.
ECHOING = {
    "long name": ["--set", f"name={LONG}"],
    "long activation": ["--set", f"stem.act={LONG}"],
    "long key": ["--set", f"{LONG}=1"],
    "long nested key": ["--set", f"stages.0.{LONG}=1"],
    "long missing field": ["--set", f"head.{LONG}.c=1"],
    "long row index": ["--set", f"stages.{'9' * 6000}.c=1"],
    "long all_rows key": ["--set", f"all_rows.{LONG}=1"],
    "long variant path": ["--set", f"{'a.' * 30_000}b=1"],
}


@pytest.mark.parametrize("case", sorted(ECHOING))
def test_echoed_input_is_cut_to_a_readable_length(tmp_path, capsys, case):
    code, _, err = run([SPECS / "v2.yaml", *ECHOING[case]], capsys)
    assert_bad_input(code, err)
    assert err.splitlines() and all(len(line) < 600 for line in err.splitlines())


# Arguments that are not UTF-8 reach Python as lone surrogates.
UNDECODABLE = {
    "value": ["--set", "name=ab\udcff"],
    "key": ["--set", "stem.\udcff=1"],
    "activation": ["--set", "stem.act=\udcffrelu"],
}


@pytest.mark.parametrize("case", sorted(UNDECODABLE))
def test_undecodable_arguments_are_bad_input(capsys, case):
    code, _, err = run([SPECS / "v2.yaml", "--report", *UNDECODABLE[case]], capsys)
    assert_bad_input(code, err)
    (line,) = err.splitlines()
    assert line.endswith("not UTF-8 text")


def test_echoed_file_content_is_cut_to_a_readable_length(tmp_path, capsys):
    spec = tmp_path / ("s" * 200 + ".yaml")
    # An explicit key (`? key`): implicit ones are limited to 1,024 characters.
    spec.write_text(V2_TEXT.replace("stem: {", f"? {'k' * 60_000}\n: 1\nstem: {{"))
    code, _, err = run([spec, "--report", "--set", f"name={'n' * 9000}"], capsys)
    assert_bad_input(code, err)
    assert len(err.splitlines()) == 2
    assert all(len(line) < 600 for line in err.splitlines()), err


def test_set_cannot_name_a_base_spec(capsys):
    code, _, err = run(
        [SPECS / "v2.yaml", "--report", "--set", "extends=v1.yaml"], capsys
    )
    assert_bad_input(code, err)
    assert "did you mean" not in err
    assert err.startswith("mbcompile: error: --set extends=v1.yaml: 'extends' names")


# (spec, --set of all_rows, the row field it must set everywhere it applies)
ALL_ROWS = [
    ("v1", "all_rows.k=5", "k", 5),
    ("v2", "all_rows.k=5", "k", 5),
    ("v3_large", "all_rows.k=5", "k", 5),
    ("v3_large", "all_rows.se=false", "se", False),
    ("v3_small", "all_rows.act=relu", "act", "relu"),
]


@pytest.mark.parametrize("spec,override,field,value", ALL_ROWS)
def test_set_all_rows_works_without_all_rows_in_the_file(spec, override, field, value):
    from mbcompile.frontend.load import load

    assert "all_rows" not in (SPECS / f"{spec}.yaml").read_text()
    loaded = load(SPECS / f"{spec}.yaml", [override])
    assert [getattr(row, field) for row in loaded.spec.stages] == [value] * len(
        loaded.spec.stages
    )


# The same field, as errors print it and as a dotted path.
BRACKETS = [
    ("stages[3].c=48", "stages.3.c=48"),
    ("stages[0].n=2", "stages.0.n=2"),
    ("head.conv.c=640", "head.conv.c=640"),
]


@pytest.mark.parametrize("bracketed,dotted", BRACKETS)
def test_set_accepts_the_field_paths_errors_print(bracketed, dotted):
    with_brackets = compiler.compile_spec(SPECS / "v2.yaml", "torch", [bracketed])
    assert with_brackets == compiler.compile_spec(SPECS / "v2.yaml", "torch", [dotted])


@pytest.mark.parametrize("override", ["stages[1].s=3", "stages.1.s=3"])
def test_set_errors_print_the_path_set_accepts(capsys, override):
    code, _, err = run([SPECS / "v2.yaml", "--report", "--set", override], capsys)
    assert_bad_input(code, err)
    assert err.startswith(f"mbcompile: error: --set {override}: stages[1].s: stride")


# Values YAML 1.1 reads in a way nobody means: refused in --set and in files.
YAML11 = [
    ("resolution", "1:00"),
    ("resolution", "0224"),
    ("num_classes", "-017"),
    ("stages.0.n", "01"),
    ("width_multiplier", "1:30.5"),
    ("include_top", "yes"),
    ("include_top", "No"),
    ("fold_batch_norm", "on"),
    ("fold_batch_norm", "OFF"),
]


@pytest.mark.parametrize("field,value", YAML11)
def test_yaml_1_1_surprises_in_set_are_refused(capsys, field, value):
    argv = [SPECS / "v2.yaml", "--report", "--set", f"{field}={value}"]
    code, out, err = run(argv, capsys)
    assert_bad_input(code, err)
    assert err.startswith(f"mbcompile: error: --set {field}={value}: '{value}'")
    assert "YAML 1.1" in err and out == ""


@pytest.mark.parametrize("field,value", [(f, v) for f, v in YAML11 if "." not in f])
def test_yaml_1_1_surprises_in_files_are_refused(tmp_path, capsys, field, value):
    lines = [x for x in V2_TEXT.splitlines() if not x.startswith(f"{field}:")]
    spec = tmp_path / "spec.yaml"
    spec.write_text("\n".join([*lines, f"{field}: {value}", ""]))
    code, _, err = run([spec, "--report"], capsys)
    assert_bad_input(code, err, spec, line=len(lines) + 1)
    assert "YAML 1.1" in err


@pytest.mark.parametrize(
    "override",
    [
        "resolution=224",
        "resolution=1_92",
        "num_classes=0x10",
        "include_top=true",
        "fold_batch_norm=False",
        "width_multiplier=.5",
        "conventions.bn_epsilon=1e-3",
    ],
)
def test_plain_values_are_still_read(override):
    assert compiler.load_and_expand(SPECS / "v2.yaml", [override])


# spec file name -> (the module name of its default output, or None: refused)
ODD_NAMES = {
    "my-net.v2.yaml": "my_net_v2",
    "2net.yaml": "_2net",
    "class.yaml": "class_",
    "net copy (2).yaml": "net_copy__2_",
    "ｖ2.yaml": "_2",
    "---.yaml": None,
}


@pytest.mark.parametrize("file_name", sorted(ODD_NAMES))
def test_default_outputs_are_importable_modules(
    tmp_path, capsys, monkeypatch, file_name
):
    import keyword

    spec = tmp_path / file_name
    spec.write_text(V2_TEXT)
    monkeypatch.chdir(tmp_path)
    code, _, err = run([spec, "--backend", "torch"], capsys)
    expected = ODD_NAMES[file_name]
    if expected is None:
        assert_bad_input(code, err)
        assert "give the output file with -o" in err
        return
    assert code == 0, err
    (written,) = (tmp_path / "generated" / "torch").iterdir()
    assert written.name == f"{expected}.py"
    assert expected.isidentifier() and expected.isascii()
    assert not keyword.iskeyword(expected)


# ----------------------------------------------------------------- pictures


def test_pictures_of_huge_networks_stay_small(tmp_path, capsys):
    """8,192 blocks (the limit) draw as at most PICTURE_BARS bars over all panels
    (parameters, MACs, estimated latency): the picture was 78 MB and took minutes."""
    from mbcompile.analysis.plots import PICTURE_BARS

    rows = "".join("  - {t: 1, c: 8, n: 64, s: 1}\n" for _ in range(128))
    head, _, rest = V2_TEXT.partition("stages:\n")
    spec = tmp_path / "huge.yaml"
    spec.write_text(head + "stages:\n" + rows + rest[rest.index("head:") :])
    picture = tmp_path / "huge.svg"
    argv = ["plot", spec, "--set", "resolution=32", "-o", picture]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    text = picture.read_text()
    bars = re.findall(r'<g id="patch_\d+">', text)
    assert len(bars) <= PICTURE_BARS + 10  # plus the panels' frames
    assert picture.stat().st_size < 2_000_000


# ------------------------------------------------------------ external tools


def _dot_script(directory: Path, body: str) -> None:
    script = directory / "dot"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)


# A stand-in `dot` that goes wrong -> what the one-line message says.
BROKEN_DOTS = {
    "fails": (
        "echo 'Error: syntax error in line 1' >&2; exit 1",
        "failed (exit code 1): Error: syntax",
    ),
    "crashes": ("kill -SEGV $$", "was killed by signal 11"),
    "hangs": ("cat > /dev/null; sleep 60", "did not finish within 1 seconds"),
    "writes nothing": ("cat > /dev/null", "wrote no SVG"),
    "not executable": (None, "cannot run Graphviz"),
}


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("case", sorted(BROKEN_DOTS))
def test_graphviz_failures_are_one_line_exit_2(tmp_path, capsys, monkeypatch, case):
    from mbcompile.analysis import diagram

    body, fragment = BROKEN_DOTS[case]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if body is None:
        _dot_script(bin_dir, "exit 0")
        monkeypatch.setattr(
            diagram.shutil, "which", lambda name: str(bin_dir / "missing")
        )
    else:
        _dot_script(bin_dir, body)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(diagram, "DOT_TIMEOUT", 1)
    target = tmp_path / "v2.svg"
    code, _, err = run(["diagram", SPECS / "v2.yaml", "-o", target], capsys)
    assert_bad_input(code, err)
    (line,) = err.splitlines()
    assert fragment in line, line
    assert not target.exists()
