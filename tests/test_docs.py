"""The documentation: its generated pages are fresh, the site builds strictly, and
what the pages say about the spec language and set-up matches the code and CI."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest

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
        needs = {"dilation": {"s": 1}, "se_ratio": {"se": True}, "end": {"k": 3}}
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
    page = tmp_path / "docs" / "getting_started.md"
    page.write_text(page.read_text() + "\n[gone](promises.md#no-such-heading)\n")
    result = mkdocs_build("docs", str(tmp_path / "site"), cwd=tmp_path)
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr
