"""Optional dependencies: which extra installs a module, and one message when it is
missing (exit code 2, naming the extra to install)."""

from __future__ import annotations

import importlib.util

from .errors import SpecError

# module -> the extra of pyproject.toml that installs it
EXTRAS = {
    "numpy": "weights",
    "h5py": "weights",
    "safetensors": "weights",
    "huggingface_hub": "hub",
    "torch": "torch",
    "keras": "keras",
    "tensorflow": "keras",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "ai_edge_litert": "tflite",
    "executorch": "executorch",
}


def require(modules, purpose: str, extra: str | None = None) -> None:
    """A SpecError naming the extra to install (`extra`, or each missing module's)
    if any of `modules` is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    extras = extra or ",".join(dict.fromkeys(EXTRAS.get(m, m) for m in missing))
    verb = "is" if len(missing) == 1 else "are"
    raise SpecError(
        f"{purpose} needs {' and '.join(missing)}, which {verb} not installed; "
        f"install the extra: pip install 'mbcompile[{extras}]'"
    )
