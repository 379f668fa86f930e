"""The project config: which specs become which committed files.

It is the `[tool.mbcompile]` table of `pyproject.toml`, or the top level of an
`mbcompile.toml`, found in the working folder or the nearest folder above it:

    [tool.mbcompile]
    output = "generated/{backend}/{name}.py"     # defaults for every target
    report = "generated/reports/{name}.md"

    [[tool.mbcompile.targets]]
    spec = "specs/*.yaml"                        # a file, a glob, or a list of them

    [[tool.mbcompile.targets]]
    spec = "specs/v3_large.yaml"
    name = "v3_large_075"
    backends = ["torch"]
    set = { width_multiplier = 0.75, "stages.3.c" = 48 }
    fold_bn = true

Paths are relative to the config's folder (the project root); outputs must stay
inside it. The config is validated like a spec: unknown keys and bad values are
errors naming the file, line and field. `read()` turns it into jobs, one per spec
matched: the spec, its overrides and the files it becomes.
"""

from __future__ import annotations

import glob
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)

from ..backends import BACKENDS
from ..compiler import DEFAULT_OUTPUT, model_name
from ..errors import SpecError, SpecErrors, shorten, shorten_path
from ..files import FileError, Inputs, read_input
from ..frontend.load import Override, field_path, fold_bn, override, problem_text
from ..frontend.yamlsource import Located

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_FILE = "mbcompile.toml"
PYPROJECT = "pyproject.toml"
MAX_CONFIG_BYTES = 1 << 20
MAX_OUTPUTS = 4096  # files one config may generate (a glob over a huge folder stops)

# Report formats by the report file's suffix.
REPORT_FORMATS = {".md": "markdown", ".json": "json", ".csv": "csv", ".txt": "table"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # an importable module name


def _placeholders(template: str, allowed: tuple[str, ...]) -> str:
    try:
        fields = [
            f for _, f, _, _ in string.Formatter().parse(template) if f is not None
        ]
    except ValueError as exc:
        raise ValueError(f"not a path template: {exc}") from None
    for name in fields:
        if name not in allowed:
            shown = ", ".join("{" + a + "}" for a in allowed)
            raise ValueError(f"unknown placeholder {{{shorten(name)}}}; use {shown}")
    return template


def _inside(text: str) -> str:
    path = PurePosixPath(text.replace("\\", "/"))
    if not text.strip() or path.is_absolute() or ".." in path.parts:
        raise ValueError("must be a relative path inside the project folder")
    return text


class _Options(BaseModel):
    """What a target may set and the config's top level sets for every target."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    backends: list[StrictStr] | None = Field(None, min_length=1)
    # Where each backend's source goes: {name} and {backend} are filled in.
    output: StrictStr | None = None
    # The cost report ({name}; format by suffix); "" for none.
    report: StrictStr | None = None
    # The inference form (`--fold-bn`); its default name ends in `_folded`.
    fold_bn: StrictBool | None = None

    @field_validator("backends")
    @classmethod
    def _backends(cls, value):
        if value is None:
            return value
        for name in value:
            if name not in BACKENDS:
                raise ValueError(
                    f"unknown backend '{shorten(name)}'; expected {' or '.join(BACKENDS)}"
                )
        if len(set(value)) != len(value):
            raise ValueError("names a backend twice")
        return value

    @field_validator("output")
    @classmethod
    def _output(cls, value):
        if value is None:
            return value
        if not value.endswith(".py"):
            raise ValueError("must end in .py (the generated module)")
        return _inside(_placeholders(value, ("name", "backend")))

    @field_validator("report")
    @classmethod
    def _report(cls, value):
        if not value:
            return value
        if Path(value).suffix not in REPORT_FORMATS:
            raise ValueError(
                f"must end in one of {', '.join(REPORT_FORMATS)} (the report's format)"
            )
        return _inside(_placeholders(value, ("name",)))


class TargetConfig(_Options):
    # A spec file or a glob, or a list of them (each file once, in the list's order).
    spec: StrictStr | list[StrictStr]
    name: StrictStr | None = None
    # Spec values by dotted path, as `--set`: {width_multiplier = 0.75}
    overrides: dict[str, Any] = Field(default_factory=dict, alias="set")

    @field_validator("spec")
    @classmethod
    def _spec(cls, value):
        patterns = [value] if isinstance(value, str) else value
        for pattern in patterns or [""]:
            if not pattern.strip():
                raise ValueError(
                    "must name a spec file or a glob such as specs/*.yaml (or a list "
                    "of them)"
                )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value):
        if value is not None and not NAME.fullmatch(value):
            raise ValueError(
                "must be a Python module name (letters, digits, _; not a digit first)"
            )
        return value


class ProjectConfig(_Options):
    targets: list[TargetConfig] = Field(min_length=1)


@dataclass(frozen=True)
class Job:
    """One spec to compile, with its overrides, and the files it becomes."""

    spec: Path  # as the process reaches it
    display: str  # relative to the project root: headers, reports and messages
    overrides: tuple[Override, ...]
    # (backend, or "report:<format>"), path relative to the project root
    outputs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Project:
    root: Path  # the config's folder
    jobs: tuple[Job, ...]
    inputs: Inputs  # the config file, which no output may replace


# ------------------------------------------------------------------ finding, reading


def find(start: Path) -> Path:
    """The config of the project `start` is in: the nearest folder at or above it
    with an mbcompile.toml or a pyproject.toml that has a [tool.mbcompile] table."""
    start = Path(os.path.abspath(start))
    for folder in (start, *start.parents):
        own = folder / CONFIG_FILE
        pyproject = folder / PYPROJECT
        found = [p for p in (own, pyproject) if p.is_file() and _configures(p)]
        if len(found) == 2:
            raise SpecError(
                f"both {CONFIG_FILE} and the [tool.mbcompile] table of {PYPROJECT} "
                "configure this project; keep one",
                source=shorten_path(folder),
            )
        if found:
            return found[0]
    raise SpecError(
        f"no project config here or in a folder above: add a [tool.mbcompile] "
        f"table to {PYPROJECT} or an {CONFIG_FILE} (docs/project.md), or name one "
        "with --config",
        source=shorten_path(start),
    )


_TABLE_DECLARED = re.compile(r"^\s*\[\[?\s*tool\s*\.\s*mbcompile\s*[\].]", re.M)


def _configures(path: Path) -> bool:
    if path.name != PYPROJECT:
        return True
    try:
        text = read_input(path, str(path), MAX_CONFIG_BYTES, "a project config").data
    except FileError:
        return True  # read() says what is wrong with it
    return _TABLE_DECLARED.search(text.decode("utf-8", "replace")) is not None


def _first_line_too_deep(text: str) -> int | None:
    """The first line by which tomllib runs out of stack: the shortest run of
    leading lines that still raises RecursionError (found by bisection)."""
    lines = text.splitlines(keepends=True)
    low, high = 0, len(lines)  # lines[:high] raises; lines[:low] does not
    while high - low > 1:
        middle = (low + high) // 2
        try:
            tomllib.loads("".join(lines[:middle]))
        except RecursionError:
            high = middle
            continue
        except tomllib.TOMLDecodeError:
            pass  # a prefix cut inside a value; not too deep yet
        low = middle
    return high or None


def read(config: str | Path | None = None, cwd: Path | None = None) -> Project:
    """The project configured by `config` (by default the one `cwd` is in)."""
    cwd = Path.cwd() if cwd is None else cwd
    path = find(cwd) if config is None else cwd / config
    shown = str(config) if config is not None else os.path.relpath(path, cwd)
    found = read_input(path, shown, MAX_CONFIG_BYTES, "a project config")
    try:
        text = found.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = found.data[: exc.start].count(b"\n") + 1
        raise SpecError("invalid UTF-8", source=shown, line=line) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = re.search(r"\(at line (\d+), column \d+\)$", message)
        line = int(at.group(1)) if at else None
        problem = message[: at.start()].strip() if at else message
        raise SpecError(f"invalid TOML: {problem}", source=shown, line=line) from None
    except RecursionError:  # tomllib recurses once per level of nested array/table
        raise SpecError(
            "invalid TOML: nested too deeply to read",
            source=shown,
            line=_first_line_too_deep(text),
        ) from None
    prefix: tuple = ("tool", "mbcompile") if path.name == PYPROJECT else ()
    table: Any = document
    for key in prefix:
        table = table.get(key) if isinstance(table, dict) else None
    if table is None:
        raise SpecError(f"has no [{'.'.join(prefix)}] table", source=shown)
    at = _Where(shown, document, text, prefix)
    if not isinstance(table, dict):
        raise at.error((), "must be a table")
    try:
        parsed = ProjectConfig.model_validate(table)
    except ValidationError as exc:
        errors = [_located(err, at) for err in exc.errors()]
        errors.sort(key=lambda e: e.line or 0)
        raise SpecErrors(errors) from None
    root = Path(os.path.abspath(path)).parent
    jobs = _jobs(parsed, root, at)
    return Project(root, tuple(jobs), {found.id: "the project config"})


class _Where(Located):
    """The config's document and lines, as a spec's; errors name its file, the
    line and the field's full path (below `prefix`, the mbcompile table)."""

    def __init__(self, source: str, document: Any, text: str, prefix: tuple) -> None:
        super().__init__(document, toml_lines(text), source)
        self.prefix = prefix

    def line(self, loc: tuple) -> int | None:
        return self.line_of((*self.prefix, *loc))

    def error(self, loc: tuple, message: str) -> SpecError:
        field = field_path((*self.prefix, *loc)) or None
        return SpecError(message, source=self.source, line=self.line(loc), field=field)


def _located(err: dict, at: _Where) -> SpecError:
    loc = tuple(err["loc"])
    model = TargetConfig if loc[:1] == ("targets",) else ProjectConfig
    known = [f.alias or n for n, f in model.model_fields.items()]
    return at.error(loc, problem_text(err, loc, known))


# ------------------------------------------------------------------------ targets


def _jobs(config: ProjectConfig, root: Path, at: _Where) -> list[Job]:
    jobs: list[Job] = []
    errors: list[SpecError] = []
    writers: dict[str, tuple[tuple, str]] = {}  # output -> (target field, spec)
    for i, target in enumerate(config.targets):
        try:
            found = _target_jobs(i, target, config, root, at)
        except SpecError as exc:
            errors.append(exc)
            continue
        for job in found:
            for kind, output in job.outputs:
                key = os.path.normcase(os.path.normpath(output))
                field = (
                    "targets",
                    i,
                    "report" if kind.startswith("report") else "output",
                )
                if key in writers:
                    other_field, other_spec = writers[key]
                    other = field_path((*at.prefix, *other_field[:2]))
                    errors.append(
                        at.error(
                            field,
                            f"{job.display} would write {output}, as {other_spec} "
                            f"({other}) does; give each its own name or output",
                        )
                    )
                writers[key] = (field, job.display)
        jobs.extend(found)
        if len(writers) > MAX_OUTPUTS:
            raise at.error(("targets", i), f"more than {MAX_OUTPUTS} files to generate")
    if errors:
        raise SpecErrors(errors)
    return jobs


def _target_jobs(
    i: int, target: TargetConfig, config: ProjectConfig, root: Path, at: _Where
) -> list[Job]:
    def pick(key: str, default: Any) -> Any:
        for source in (target, config):
            if getattr(source, key) is not None:
                return getattr(source, key)
        return default

    backends = pick("backends", list(BACKENDS))
    output = pick("output", DEFAULT_OUTPUT)
    report = pick("report", "")
    folded = pick("fold_bn", False)
    overrides = [
        _override(key, value, at, ("targets", i, "set", key))
        for key, value in target.overrides.items()
    ]
    if folded:
        where = ("targets", i, "fold_bn") if target.fold_bn else ("fold_bn",)
        overrides.append(fold_bn(f"{at.source}:{at.line(where)}"))
    where = ("targets", i, "spec")
    if isinstance(target.spec, str):
        specs = _specs(target.spec, root, at, where)
    else:  # each file once, in the list's order
        found = [_specs(p, root, at, (*where, j)) for j, p in enumerate(target.spec)]
        specs = list(dict.fromkeys(s for files in found for s in files))
    if target.name is not None and len(specs) > 1:
        raise at.error(
            ("targets", i, "name"),
            "names one output, but the spec glob matches several files (each is "
            "named after its spec file)",
        )
    jobs = []
    for display in specs:
        if target.name is not None:
            name = target.name
        else:
            try:
                name = model_name(display, folded)
            except SpecError as exc:
                raise at.error(("targets", i, "spec"), exc.message) from None
        outputs = [(b, output.format(name=name, backend=b)) for b in backends]
        if report:
            kind = "report:" + REPORT_FORMATS[Path(report).suffix]
            outputs.append((kind, report.format(name=name)))
        jobs.append(Job(root / display, display, tuple(overrides), tuple(outputs)))
    return jobs


def _override(key: str, value: Any, at: _Where, loc: tuple) -> Override:
    origin = f"{at.source}:{at.line(loc)}"
    try:
        return override(key, value, origin)
    except SpecError as exc:
        raise at.error(loc, exc.message) from None


_GLOB_CHARS = re.compile(r"[*?[]")


def _specs(pattern: str, root: Path, at: _Where, loc: tuple) -> list[str]:
    """The spec files `pattern` names, relative to the root, in sorted order."""
    if _GLOB_CHARS.search(pattern) is None:
        if not (root / pattern).is_file():
            raise at.error(loc, f"spec file not found: {shorten_path(pattern)}")
        return [PurePosixPath(os.path.normpath(pattern)).as_posix()]
    matches = glob.glob(pattern, root_dir=root, recursive=True)
    found = sorted(
        PurePosixPath(os.path.normpath(m)).as_posix()
        for m in matches
        if (root / m).is_file()
    )
    if not found:
        raise at.error(loc, f"the glob {shorten(pattern)} matches no file")
    if len(found) > MAX_OUTPUTS:
        raise at.error(loc, f"the glob matches more than {MAX_OUTPUTS} files")
    return found


# ------------------------------------------------------------------ TOML locations

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_PART = re.compile(rf"{_BARE}|{_QUOTED}")
_DOTTED = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_HEADER = re.compile(rf"\s*(\[\[?)\s*({_DOTTED})\s*\]")
_ASSIGN = re.compile(rf"\s*({_DOTTED})\s*=")
_INLINE_ASSIGN = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")


def toml_lines(text: str) -> dict[tuple, int]:
    """The line of each table and key of a TOML document, by path (array-of-table
    entries by index): enough to point at a field, not a parser. Keys inside
    multi-line strings and arrays are skipped; inline tables' keys share their line."""
    lines: dict[tuple, int] = {(): 1}
    table: tuple = ()
    arrays: dict[tuple, int] = {}  # array of tables -> entries so far
    open_brackets, string_end = 0, ""
    for number, line in enumerate(text.splitlines(), 1):
        if string_end:  # inside a multi-line string
            if line.count(string_end) % 2:
                string_end = ""
            continue
        if open_brackets:  # inside a multi-line array
            open_brackets += _bracket_change(line)
            continue
        header = _HEADER.match(line)
        if header:
            is_array = header.group(1) == "[["
            parts = _keys(header.group(2))
            path: tuple = ()
            for j, part in enumerate(parts):
                path = (*path, part)
                if is_array and j == len(parts) - 1:
                    lines.setdefault(path, number)
                    arrays[path] = arrays.get(path, 0) + 1
                    path = (*path, arrays[path] - 1)
                elif path in arrays:
                    path = (*path, arrays[path] - 1)
            table = path
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if not assign:
            continue
        key = (*table, *_keys(assign.group(1)))
        lines.setdefault(key, number)
        rest = line[assign.end() :]
        for inner in _INLINE_ASSIGN.finditer(rest):
            lines.setdefault((*key, *_keys(inner.group(1))), number)
        for quotes in ('"""', "'''"):
            if rest.count(quotes) % 2:
                string_end = quotes
        if not string_end:
            open_brackets = max(0, _bracket_change(rest))
    return lines


def _keys(dotted: str) -> list[str]:
    return [p[1:-1] if p[0] in "\"'" else p for p in _PART.findall(dotted)]


def _bracket_change(text: str) -> int:
    """Opened minus closed brackets and braces, outside strings and comments."""
    change, quote, escaped = 0, "", False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            change += 1
        elif ch in "]}":
            change -= 1
    return change
