"""The specs that ship with mbcompile, reachable by name from every command and
the Python API (`mbcompile mobilenetv4_conv_small --backend keras`,
`build_model("v2", "torch")`): a name is looked up only when no file has that path.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SpecError, shorten


def bundled_specs() -> dict[str, Path]:
    """The specs that ship with mbcompile, by name: the canonical MobileNets and
    `specs/timm/`'s models."""
    found: dict[str, Path] = {}
    for folder in _spec_folders():
        for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("timm/*.yaml")):
            found.setdefault(path.stem, path)
    return found


def _spec_folders() -> list[Path]:
    """Specs ship inside the wheel; in a checkout they sit at the repo root."""
    here = Path(__file__).resolve().parent.parent
    return [p for p in (here / "specs", here.parent / "specs") if p.is_dir()]


def display(path: Path) -> str:
    """A bundled spec as messages and headers name it: `specs/timm/<name>.yaml`."""
    root = path.parent
    root = root.parent if root.name == "timm" else root
    return path.relative_to(root.parent).as_posix()


def resolve(path: str | Path) -> tuple[Path, str | None]:
    """Where the spec `path` is read from, and how messages and generated headers
    name it (None: as given). A path that exists is itself; a bundled spec's name
    is that spec (named `specs/timm/<name>.yaml`); a missing file that looks like a
    name (no folder, no `.yaml`) is an error listing the bundled names."""
    text = os.fspath(path)
    if _exists(text):
        return Path(text), None
    bundled = bundled_specs()
    if text in bundled:
        return bundled[text], display(bundled[text])
    if os.sep not in text and "/" not in text and not text.endswith(".yaml"):
        raise SpecError(
            f"no spec file '{shorten(text)}', and no bundled spec of that name "
            f"(bundled: {shorten(', '.join(bundled), 200)}; `mbcompile specs` "
            "lists them)"
        )
    return Path(text), None  # reading it says what is wrong


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):  # a NUL byte, a name too long: reading says so
        return False
