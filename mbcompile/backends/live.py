"""Generated source run as a live module, without writing a file: what the Python
API's `load_module` and the export stage build models from. Importing the module
imports keras or torch."""

from __future__ import annotations

import itertools
import linecache
import sys
import types

_modules = itertools.count(1)


def run_source(source: str, backend: str) -> types.ModuleType:
    """The generated `source` executed in a fresh module object, registered so that
    TorchScript, pickling and tracebacks can read it."""
    name = f"mbcompile_live_{backend}_{next(_modules)}"
    filename = f"<mbcompile: {name}>"
    # Source lines where inspect.getsource (TorchScript) and tracebacks look.
    linecache.cache[filename] = (
        len(source),
        None,
        source.splitlines(keepends=True),
        filename,
    )
    module = types.ModuleType(name)  # its docstring is set as the source runs
    module.__file__ = filename
    sys.modules[name] = module  # classes resolve their module (pickle, inspect)
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module
