"""The documentation: its generated pages are fresh, the site builds strictly, and
what the pages say about the spec language and set-up matches the code and CI."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import pytest

import docs_examples
from helpers import ROOT
from mbcompile import compiler
from mbcompile.frontend.load import load_data
from mbcompile.frontend.model import Spec
from mbcompile.ir.blocks import ROW_MODELS


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "docs_pages", ROOT / "tools" / "docs_pages.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_pages = _load_tool()


def test_generated_pages_are_fresh():
    """docs/cli.md and docs/spec_reference.md are what the parsers and the spec
    models give now (`python tools/docs_pages.py` rewrites them)."""
    assert docs_pages.stale() == []


def test_every_spec_key_has_a_meaning_and_an_example():
    models = [Spec, *ROW_MODELS.values()]
    models += [
        Spec.model_fields[name].annotation
        for name in ("conventions", "stem", "squeeze_excite")
    ]
    from mbcompile.frontend import model

    models += [model.HeadSpec, model.HeadConvSpec, model.HiddenSpec]
    undocumented = [
        f"{m.__name__}.{name}"
        for m in models
        for name, field in m.model_fields.items()
        if not field.description
    ]
    assert undocumented == []
    page = (ROOT / "docs" / "spec_reference.md").read_text()
    keys = [line for line in page.splitlines() if re.match(r"^\| `\w+` \|", line)]
    assert len(keys) > 100
    assert [line for line in keys if "Example: `" not in line] == []


@pytest.mark.parametrize("where", sorted(docs_pages.FALLBACK_EXAMPLES))
def test_each_written_example_is_a_valid_spec_value(where):
    """The examples no shipped spec provides are checked here: each one, set in a
    small network, validates and expands."""
    section, key = where
    value = docs_pages.FALLBACK_EXAMPLES[where]
    if section == "spec":
        spec = docs_pages.drawn_spec("inverted_residual")
        spec[key] = value
        if key == "output_stride":
            spec["include_top"], spec["head"] = False, {"pool": "avg"}
    else:
        needs = {"dilation": {"s": 1}, "end": {"k": 3}}
        needs |= {"se_ratio": {"se": True}, "se_c": {"se": True}}
        row = {key: value, **needs.get(key, {})}
        if key == "exp":
            row["t"] = None
        spec = docs_pages.drawn_spec(section, **row)
        spec["stages"][0] = {
            k: v for k, v in spec["stages"][0].items() if v is not None
        }
    compiler.expand(load_data(spec, []))


def test_a_stale_generated_page_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(docs_pages, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    for page in docs_pages.PAGES:
        (tmp_path / page).write_text("an old page\n")
    assert docs_pages.stale() == list(docs_pages.PAGES)


def test_set_up_commands_are_the_ones_ci_runs():
    """The README's test command is the one `.ci/run` runs, and Getting started
    shows the README's two set-up commands."""
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python -m venv .venv[^\n]*)\n```", readme)
    assert len(commands) == 2
    assert ci.endswith(commands[1])
    started = (ROOT / "docs" / "getting_started.md").read_text()
    assert all(f"```bash\n{c}\n```" in started for c in commands)


def mkdocs_build(docs: str, site: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", site],
        cwd=cwd,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: every page in the nav, every link and anchor found."""
    result = mkdocs_build("docs", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "spec_reference" / "index.html").is_file()


def test_a_broken_anchor_fails_the_build(tmp_path):
    """The strict build can fail: a link to a heading that does not exist."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path)  # the changelog page shows it
    page = tmp_path / "docs" / "getting_started.md"
    page.write_text(page.read_text() + "\n[gone](promises.md#no-such-heading)\n")
    result = mkdocs_build("docs", str(tmp_path / "site"), cwd=tmp_path)
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr


# -- every example runs -------------------------------------------------------------
GENERATED_PAGES = {Path(page).name for page in docs_pages.PAGES}
PAGES = ["README.md"] + [
    path.relative_to(ROOT).as_posix()
    for path in sorted((ROOT / "docs").glob("*.md"))
    if path.name not in GENERATED_PAGES
]


def _examples(page: str) -> list[docs_examples.Example]:
    return docs_examples.examples(ROOT / page)


def _pages_where(condition) -> list[str]:
    return [page for page in PAGES if any(map(condition, _examples(page)))]


@pytest.mark.parametrize(
    "page", _pages_where(lambda e: e.runs and "slow" not in e.directives)
)
def test_page_examples_run(page, tmp_path):
    """Every shell and Python block of the page runs, in order, in one folder and
    one Python process; the slow ones are left to the next test."""
    report = docs_examples.run_page(ROOT / page, tmp_path)
    assert report.ran


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_where(lambda e: "slow" in e.directives))
def test_page_examples_run_with_the_slow_ones(page, tmp_path):
    """The whole page, the examples too heavy for the default run included
    (conversions, quantization, porting through TensorFlow)."""
    report = docs_examples.run_page(ROOT / page, tmp_path, slow=True)
    assert not report.slow


def test_every_block_runs_or_says_why(figures):
    """A shell or Python block that is not run (or runs only with -m slow) says why
    and where its path is tested; the counts are printed at the end of the run."""
    counts = {"run": 0, "slow": 0, "not run": 0, "data": 0}
    unexplained = []
    for page in PAGES:
        for example in _examples(page):
            d = example.directives
            if example.lang in docs_examples.DATA:
                counts["data"] += 1
            elif example.lang not in (*docs_examples.SHELL, "python"):
                continue
            elif "slow" in d or "skip" in d:
                counts["slow" if "slow" in d else "not run"] += 1
                if len((d.get("slow") or d.get("skip")).split()) < 4:
                    unexplained.append(example.where)
            elif example.runs:
                counts["run"] += 1
            else:
                counts["not run"] += 1
    assert unexplained == []
    assert counts["run"] >= 15
    figures.append(
        "docs examples: {run} shell/Python blocks run, {slow} more with -m slow, "
        "{not run} not run (each says why), {data} YAML/TOML blocks parsed".format(
            **counts
        )
    )


BENCHMARK = re.compile(r"^python (benchmarks/\w+\.py)(.*)$", re.M)


def test_benchmark_commands_use_options_that_exist(monkeypatch):
    """The benchmark commands the pages show (not run: they time minutes of work)
    use options their scripts have."""
    commands = [
        (page, match[1], match[2])
        for page in PAGES
        for example in _examples(page)
        if example.lang in docs_examples.SHELL
        for match in BENCHMARK.finditer(example.code)
    ]
    assert len(commands) >= 9
    helps = {}
    for page, script, args in commands:
        if script not in helps:
            spec = importlib.util.spec_from_file_location("bench", ROOT / script)
            module = importlib.util.module_from_spec(spec)
            monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
            spec.loader.exec_module(module)
            monkeypatch.setattr(sys, "argv", [script, "--help"])
            out = io.StringIO()
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
                module.main()
            helps[script] = out.getvalue()
        for option in re.findall(r"(?<!\S)(--?[\w-]+)", args.split("#")[0]):
            assert option in helps[script], f"{page}: {script} has no {option}"


BROKEN_PAGE = """\
# A page with examples

```bash
mbcompile costs specs/v2.yaml --format json > costs.json
```

```python
import json

costs = json.load(open("costs.json"))
```

```python
assert costs["trainable_params"] == 3_504_872  # torchvision's V2; uses `costs`
```

<!-- docs-test: skip: shown only -->
```bash
exit 3
```

```bash
mbcompile specs/v2.yaml --set width_multiplier=oops
```
"""


def test_the_harness_runs_blocks_in_order_and_fails_a_broken_one(tmp_path):
    """A page whose last example is broken: the blocks before it run in order (the
    Python ones in one namespace, reading what a shell block wrote), the skipped one
    is not run, and the broken one fails naming its line."""
    page = tmp_path / "page.md"
    page.write_text(BROKEN_PAGE)
    with pytest.raises(docs_examples.ExampleFailed, match=r"page.md:22: shell") as e:
        docs_examples.run_page(page, tmp_path / "run", page="page.md")
    assert "width_multiplier" in str(e.value)
    assert e.value.report.ran == ["page.md:3", "page.md:7", "page.md:13"]
    assert e.value.report.not_run == ["page.md:18"]


@pytest.mark.parametrize(
    "block, message",
    [
        ("```python\nraise ValueError('broken on purpose')\n```\n", "ValueError"),
        ("```python\nundefined_name\n```\n", "NameError"),
        (
            "<!-- docs-test: skip: shown only, never run -->\n```yaml\na: [1\n```\n",
            "yaml",
        ),
        ("<!-- docs-test: file: x.toml -->\n```toml\na = \n```\n", "toml"),
        (
            "<!-- docs-test: same-as: specs/v2.yaml -->\n```yaml\nname: v2\n```\n",
            "differs",
        ),
        ("<!-- docs-test: skipp: typo -->\n```bash\ntrue\n```\n", "unknown"),
    ],
)
def test_the_harness_fails_each_kind_of_broken_block(tmp_path, block, message):
    page = tmp_path / "page.md"
    page.write_text("# Broken\n\n" + block)
    with pytest.raises(docs_examples.ExampleFailed, match=message):
        docs_examples.run_page(page, tmp_path / "run", page="page.md")


def test_the_version_has_one_home_and_the_changelog_names_it():
    """pyproject.toml reads the version from mbcompile/version.py; CHANGELOG.md has
    an Unreleased section and then the current version's."""
    from mbcompile import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "mbcompile/version.py"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.findall(r"^## \[([^\]]+)\]", changelog, re.M)[:2] == [
        "Unreleased",
        __version__,
    ]
