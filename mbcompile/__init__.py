"""mbcompile: a declarative, spec-driven compiler for mobile convolutional networks.

The Python API (`mbcompile.api`, imported on first use so that `import mbcompile`
stays cheap): `generate_source`, `build_model`, `load_module`, `cost_report`,
`estimate_latency`, `bundled_specs`; errors are `SpecError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .analysis.cost import Report
    from .analysis.latency import Latency
    from .api import (
        build_model,
        bundled_specs,
        cost_report,
        estimate_latency,
        generate_source,
        load_module,
    )
    from .errors import SpecError

__all__ = [
    "Latency",
    "Report",
    "SpecError",
    "__version__",
    "build_model",
    "bundled_specs",
    "cost_report",
    "estimate_latency",
    "generate_source",
    "load_module",
]

_API = {
    "build_model": "api",
    "bundled_specs": "api",
    "cost_report": "api",
    "estimate_latency": "api",
    "generate_source": "api",
    "load_module": "api",
    "Report": "analysis.cost",
    "Latency": "analysis.latency",
    "SpecError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'mbcompile' has no attribute {name!r}")
