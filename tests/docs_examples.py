"""Runs the code blocks of a documentation page, in order, as a reader would.

A page's blocks run in one temporary folder holding copies of `specs/`, `examples/`,
`schema/`, `generated/` and `docs/`: shell blocks (`bash`) with bash (`set -eu`, so
every command of a block must succeed) and this environment's `mbcompile` and
`python`; Python blocks in one Python process per page (one namespace, so a block
may use what an earlier one defined; the folder is on `sys.path`, so
`from generated.torch.v2 import build_model` imports what a shell block generated).
A shell block of plain `mbcompile ...` commands (no pipes, redirections or other
programs) runs each command through `mbcompile.cli.main`, the `mbcompile` command's
own entry point, in that Python process: the same code, its exit code and output
checked the same way, without starting Python again for every command.
`yaml`, `toml` and `json` blocks are parsed. Other blocks (`text`, output without a
language, `mermaid`) are not examples.

An HTML comment right before a block (invisible on GitHub and on the site) says
what else to do with it; several may stand one after another:

    <!-- docs-test: skip: REASON -->     not run (data blocks are still parsed);
                                         REASON says why and where it is tested
    <!-- docs-test: slow: REASON -->     run only by the slow docs test (-m slow)
    <!-- docs-test: file: NAME -->       written to NAME in the folder (not run)
    <!-- docs-test: same-as: PATH -->    holds the data of the repository's file
                                         PATH (comments aside; yaml, toml)
    <!-- docs-test: before:
    PYTHON CODE -->                      run in the page's Python process first
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("specs", "examples", "schema", "generated", "docs")
SHELL = ("bash", "sh", "shell")
DATA = ("yaml", "toml", "json")
KINDS = ("skip", "slow", "file", "same-as", "before")
TIMEOUT = 900  # seconds for one block: a TFLite or ExecuTorch conversion included

FENCE = re.compile(r"^```([\w+-]*)\s*$")
DIRECTIVE = re.compile(r"<!-- docs-test: ([\w-]+):\s*(.*?)\s*-->", re.S)


class ExampleFailed(AssertionError):
    """An example that fails; `report` holds what ran before it."""

    report: Report | None = None


@dataclass
class Example:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runs(self) -> bool:
        """A block the harness executes (given the slow ones are wanted)."""
        return (
            (self.lang in SHELL or self.lang == "python")
            and "skip" not in self.directives
            and "file" not in self.directives
            and "same-as" not in self.directives
        )


def _directives(lines: list[str], fence: int, where: str) -> dict[str, str]:
    """The docs-test comments that stand right before the fence at `fence`."""
    end = fence
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    if end == 0 or not lines[end - 1].rstrip().endswith("-->"):
        return {}
    start = end - 1
    while start > 0 and "<!--" not in lines[start]:
        start -= 1
    text = "\n".join(lines[start:end])
    found = {}
    for kind, value in DIRECTIVE.findall(text):
        if kind not in KINDS:
            raise ExampleFailed(f"{where}: unknown docs-test directive '{kind}'")
        found[kind] = value
    if "<!-- docs-test" in text and not found:
        raise ExampleFailed(f"{where}: unreadable docs-test directive")
    if "docs-test" in text:  # a comment that is a directive may be followed by more
        found.update(_directives(lines, start, where))
    return found


def examples(path: Path, page: str | None = None) -> list[Example]:
    """The fenced code blocks of a Markdown page, with their directives."""
    page = page or path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        code = "\n".join(lines[start + 1 : i]) + "\n"
        where = f"{page}:{start + 1}"
        found.append(
            Example(page, start + 1, match[1], code, _directives(lines, start, where))
        )
        i += 1
    return found


# -- the page's Python process ------------------------------------------------------
def _worker(conn, folder: str) -> None:
    os.chdir(folder)
    sys.path[:0] = [folder, str(ROOT), str(ROOT / "tests")]
    namespace: dict = {"__name__": "__main__"}
    while (message := conn.recv()) is not None:
        kind, where, code = message
        if kind == "mbcompile":
            from mbcompile.cli import main

            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(code)
            conn.send((status, out.getvalue()[-2000:] + err.getvalue()[-3000:]))
            continue
        try:
            exec(compile(code, where, "exec"), namespace)
            conn.send(None)
        except BaseException:  # the reader's view: any error fails the example
            conn.send(traceback.format_exc(limit=-8))


class Page:
    """One page's folder and Python process."""

    def __init__(self, folder: Path):
        self.folder = folder
        for name in COPIED:
            shutil.copytree(ROOT / name, folder / name)
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)]),
            "PATH": os.pathsep.join(
                [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
            ),
        }
        self.process = None
        self.conn = None

    def _ask(self, kind: str, where: str, code: str | list[str]) -> object:
        """Runs Python code, or an `mbcompile` argument list, in the page's process."""
        if self.process is None:
            context = multiprocessing.get_context("spawn")
            self.conn, child = context.Pipe()
            self.process = context.Process(
                target=_worker, args=(child, str(self.folder)), daemon=True
            )
            self.process.start()
        self.conn.send((kind, where, code))
        if not self.conn.poll(TIMEOUT):
            raise ExampleFailed(f"{where}: example still running after {TIMEOUT} s")
        return self.conn.recv()

    def python(self, where: str, code: str) -> None:
        error = self._ask("python", where, code)
        if error is not None:
            raise ExampleFailed(f"{where}: Python example failed:\n{error}")

    def shell(self, where: str, code: str) -> None:
        commands = _mbcompile_commands(code)
        if commands is not None:
            for argv in commands:
                status, output = self._ask("mbcompile", where, argv)
                if status != 0:
                    raise ExampleFailed(
                        f"{where}: shell example exited {status}:\n{output}"
                    )
            return
        try:
            result = subprocess.run(
                ["bash", "-eu", "-o", "pipefail", "-c", code],
                cwd=self.folder,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise ExampleFailed(f"{where}: shell example still running") from exc
        if result.returncode != 0:
            raise ExampleFailed(
                f"{where}: shell example exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-3000:]}"
            )

    def close(self) -> None:
        if self.process is not None:
            self.conn.send(None)
            self.process.join(30)
            if self.process.is_alive():
                self.process.kill()


PLAIN = re.compile(r"[\w./@=,:{}+-]+")


def _mbcompile_commands(code: str) -> list[list[str]] | None:
    """The argument lists of a block made only of plain `mbcompile` commands (one a
    line, a backslash continuing one, `#` comments); None for anything else."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] != "mbcompile" or not all(map(PLAIN.fullmatch, words)):
            return None
        commands.append(words[1:])
    return commands


def _parse(example: Example, text: str | None = None):
    """The data of a yaml, toml or json block (or of `text` in its language)."""
    text = example.code if text is None else text
    try:
        if example.lang == "yaml":
            return list(yaml.safe_load_all(text))
        if example.lang == "toml":
            return tomllib.loads(text)
        return json.loads(text)
    except Exception as exc:
        raise ExampleFailed(
            f"{example.where}: not valid {example.lang}: {exc}"
        ) from exc


@dataclass
class Report:
    ran: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)  # left for the slow run
    not_run: list[str] = field(default_factory=list)  # skip / data / file / same-as


def run_page(
    path: Path, folder: Path, slow: bool = False, page: str | None = None
) -> Report:
    """Runs every example of the page (the slow ones too when `slow`); raises
    ExampleFailed naming the first that fails."""
    report = Report()
    runner = Page(folder)
    try:
        for example in examples(path, page):
            d = example.directives
            if "slow" in d and not slow:
                report.slow.append(example.where)
                continue
            if example.lang in DATA:
                _parse(example)
            if "same-as" in d:
                original = (ROOT / d["same-as"]).read_text()
                if _parse(example) != _parse(example, original):
                    raise ExampleFailed(f"{example.where}: differs from {d['same-as']}")
            if "file" in d:
                target = folder / d["file"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(example.code)
            if not example.runs:
                if example.lang in (*SHELL, "python", *DATA):
                    report.not_run.append(example.where)
                continue
            if "before" in d:
                runner.python(f"{example.where} (before)", d["before"])
            if example.lang == "python":
                runner.python(example.where, example.code)
            else:
                runner.shell(example.where, example.code)
            report.ran.append(example.where)
    except ExampleFailed as failure:
        failure.report = report
        raise
    finally:
        runner.close()
    return report
