"""The spec JSON Schema, for editors (yaml-language-server; `mbcompile schema`).

Derived from the pydantic models (model.py, the block modules' row models and the
norm modules' settings), then adjusted to what the loader accepts beyond them:
`extends:` and `all_rows:` (consumed by compose.py), partial specs that extend
another, rows that take their block type from the top-level `block:`, the
`conventions: <profile>` and `norm: <type>` shorthands and activation aliases.
schema/mbcompile-spec.schema.json is the committed copy the shipped specs point at;
a test fails when it is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..ir.blocks import ROW_MODELS
from ..ir.norms import NORM_TYPES
from . import compose
from .fields import ACTIVATION_ALIASES, ACTIVATIONS
from .model import Spec

SCHEMA_PATH = Path("schema") / "mbcompile-spec.schema.json"
MODELINE = f"# yaml-language-server: $schema=../{SCHEMA_PATH.as_posix()}"


def build() -> dict[str, Any]:
    schema = Spec.model_json_schema()
    defs = schema["$defs"]
    rows = {model.__name__ for model in ROW_MODELS.values()}
    # A spec that extends another gives only what it changes, at any depth, so
    # required keys are required only at the top of a spec without `extends`
    # (validation still checks the merged result).
    for model in defs.values():
        model.pop("required", None)
    required = schema.pop("required")
    schema["if"] = {"required": ["extends"]}
    schema["else"] = {"required": required}
    # A row, or a group of rows (one stage); rows are told apart by `block:`,
    # which they may leave to the top-level `block:`, so no discriminator.
    row, group = schema["properties"]["stages"]["items"]["oneOf"]
    row = {"anyOf": row["oneOf"]}
    group = {**group, "items": row}
    schema["properties"]["stages"]["items"] = {"anyOf": [row, group]}
    conventions = schema["properties"]["conventions"]
    profiles = defs["ConventionsSpec"]["properties"]["profile"]["enum"]
    schema["properties"]["conventions"] = {
        "anyOf": [conventions, {"type": "string", "enum": profiles}]
    }
    norm = schema["properties"]["norm"]
    default = norm.pop("default")
    schema["properties"]["norm"] = {
        "anyOf": [norm, {"type": "string", "enum": list(NORM_TYPES)}],
        "default": default,
    }
    activations = [*ACTIVATIONS, *ACTIVATION_ALIASES]
    for model in defs.values():
        if "act" in model.get("properties", {}):
            act = model["properties"]["act"]  # its own words (`block`) after them
            act["enum"] = [*activations, *act.get("enum", [])]
    row_keys: dict[str, Any] = {}
    for name in sorted(rows):
        for key, prop in defs[name]["properties"].items():
            if key != "block":
                row_keys.setdefault(key, prop)
    schema["properties"]["extends"] = {
        "type": "string",
        "description": "Base spec, relative to this file; this file's values are "
        "merged on top (mappings merge, lists and scalars replace).",
    }
    schema["properties"]["all_rows"] = {
        "type": "object",
        "description": "Keys applied on top of every stage row whose block type "
        "has them, e.g. {k: 3, se: false}.",
        "properties": dict(sorted(row_keys.items())),
        "additionalProperties": False,
    }
    assert set(compose.KEYS) <= set(schema["properties"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "mbcompile spec",
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
