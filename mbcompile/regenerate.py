"""Rewrite generated/ from specs/: `python -m mbcompile.regenerate`.

generated/<backend>/<spec>.py is the committed output for every spec in specs/ (and
generated/<backend>/examples/<name>.py for examples/), and
generated/reports/<spec>.md its cost report; the golden test fails when any of them
is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import compiler
from .analysis import report


def expected_outputs(root: Path) -> dict[Path, str]:
    """Every file generated/ should hold, with its content."""
    outputs = {}
    specs = [(s, s.stem) for s in sorted((root / "specs").glob("*.yaml"))]
    specs += [(s, f"timm/{s.stem}") for s in sorted(root.glob("specs/timm/*.yaml"))]
    specs += [(s, f"examples/{s.stem}") for s in sorted(root.glob("examples/*.yaml"))]
    for spec, stem in specs:
        _, graph = compiler.load_and_expand(spec.relative_to(root).as_posix())
        for backend in compiler.BACKENDS:
            target = root / "generated" / backend / f"{stem}.py"
            outputs[target] = compiler.generate(graph, backend)
        report_path = root / "generated" / "reports" / f"{stem}.md"
        outputs[report_path] = report.markdown(graph)
    return outputs


def main() -> int:
    root = Path.cwd()
    if not (root / "specs").is_dir():
        print("run from the repository root (no specs/ here)", file=sys.stderr)
        return 2
    for target, text in expected_outputs(root).items():
        compiler.write_output(text, str(target), "", "")
        print(f"wrote {target.relative_to(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
