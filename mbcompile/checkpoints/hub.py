"""Hugging Face model folders and the hub: `config.json` beside `model.safetensors`
or `pytorch_model.bin` (the layout timm's `save_for_hf` writes and the hub serves),
a local folder or `hf-hub:timm/NAME.TAG[@REVISION]` through `huggingface_hub` (an
optional extra; it downloads when online and reads its cache offline,
`HF_HUB_OFFLINE=1`).

The folder's `config.json` is checked against the spec — what both say must agree,
and a mismatch names both values — and the preprocessing it records (input size,
mean, std, interpolation, crop, label names) travels on to exported files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError, shorten, shorten_path
from ..files import read_input
from ..ir.graph import Graph

PREFIX = "hf-hub:"
CONFIG = "config.json"
# In the order timm's loader prefers them.
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
MAX_CONFIG_BYTES = 4 * 1024**2  # ImageNet-21k's label names fit easily
# pretrained_cfg entries a deployer needs, carried to exported files' metadata (the
# input size is the spec's: a difference from the trained size is a note).
PREPROCESSING = ("interpolation", "crop_pct", "crop_mode", "mean", "std")


@dataclass(frozen=True)
class Located:
    """Where a folder or hub reference keeps its weights and config."""

    weights: Path
    config: Path | None
    display: str  # the weights file as messages name it


def is_reference(source: str) -> bool:
    return source.startswith(PREFIX)


def locate(source: str) -> Located:
    """The weights and config of a folder or `hf-hub:` reference."""
    if is_reference(source):
        return _from_hub(source)
    folder = Path(source)
    for name in WEIGHTS:
        if (folder / name).is_file():
            config = folder / CONFIG
            return Located(
                folder / name,
                config if config.exists() else None,
                os.path.join(source, name),
            )
    if (folder / "model.safetensors.index.json").exists():
        raise SpecError(
            f"{shorten_path(source)}: a sharded checkpoint; mobile networks fit one "
            "file (merge the shards first)"
        )
    raise SpecError(
        f"{shorten_path(source)}: a folder without {' or '.join(WEIGHTS)} (a Hugging "
        "Face model folder holds one, with config.json)"
    )


def _from_hub(source: str) -> Located:
    reference = source.removeprefix(PREFIX)
    repo, _, revision = reference.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise SpecError(
            f"{shorten(source)}: expected hf-hub:OWNER/NAME[@REVISION], e.g. "
            "hf-hub:timm/mobilenetv4_conv_small.e2400_r224_in1k"
        )
    try:
        import huggingface_hub
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError:
        raise SpecError(
            f"{shorten(source)}: reading from the Hugging Face hub needs "
            "huggingface_hub; install the extra: pip install 'mbcompile[hub]'"
        ) from None

    def fetch(name: str) -> Path:
        path = huggingface_hub.hf_hub_download(repo, name, revision=revision or None)
        return Path(path)

    try:
        config = fetch(CONFIG)
        for name in WEIGHTS:
            try:
                weights = fetch(name)
                break
            except EntryNotFoundError:
                continue
        else:
            raise SpecError(f"{shorten(source)}: holds none of {', '.join(WEIGHTS)}")
    except SpecError:
        raise
    except Exception as exc:  # offline and not cached, no such repo, the network
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        hint = (
            " (HF_HUB_OFFLINE is set: only the local cache is read)" if offline else ""
        )
        reason = " ".join(str(exc).split())
        raise SpecError(
            f"{shorten(source)}: cannot get it from the Hugging Face hub: "
            f"{type(exc).__name__}: {shorten(reason, 160)}{hint}"
        ) from None
    return Located(weights, config, f"{source}/{weights.name}")


def read_config(path: Path, display: str) -> dict[str, Any]:
    shown = shorten_path(display)
    data = read_input(path, display, MAX_CONFIG_BYTES, "a config.json").data
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SpecError(f"{shown}: not JSON ({shorten(str(exc), 100)})") from None
    if not isinstance(config, dict):
        raise SpecError(f"{shown}: not a JSON object")
    return config


@dataclass
class ConfigCheck:
    """What a config.json told: its preprocessing (for exported files' metadata),
    its class count, and lines for the user."""

    preprocessing: dict[str, Any] = field(default_factory=dict)
    label_names: list[str] | None = None
    num_classes: int | None = None
    notes: list[str] = field(default_factory=list)


def check_config(config: dict[str, Any], graph: Graph, display: str) -> ConfigCheck:
    """Compare a config.json with the spec: architecture and input channels must
    agree, and a fixed input size; the class count may differ (fine-tuning: the
    classifier stays at its initialisation). Returns the preprocessing."""
    shown = shorten_path(display)
    net = graph.network
    cfg = config.get("pretrained_cfg") or {}
    if not isinstance(cfg, dict):
        raise SpecError(f"{shown}: pretrained_cfg is not a mapping")
    problems = []
    arch = config.get("architecture")
    if arch is not None and arch != net.name:
        problems.append(
            f"architecture {shorten(repr(arch))}, but the spec builds {net.name!r}"
        )
    size = cfg.get("input_size")
    if size is not None and not _sizes(size):
        problems.append(
            f"pretrained_cfg.input_size {shorten(repr(size))} is not [C, H, W]"
        )
        size = None
    if size is not None and size[0] != net.in_channels:
        problems.append(
            f"pretrained_cfg.input_size has {size[0]} channels, the spec "
            f"{net.in_channels} (in_channels)"
        )
    own = [net.in_channels, net.resolution, net.resolution]
    if size is not None and cfg.get("fixed_input_size") and list(size) != own:
        problems.append(
            f"pretrained_cfg.input_size {list(size)} is fixed, the spec takes {own} "
            "(resolution)"
        )
    if problems:
        raise SpecError("; ".join(f"{shown}: {p}" for p in problems))
    check = ConfigCheck()
    classes = config.get("num_classes", cfg.get("num_classes"))
    if isinstance(classes, int) and not isinstance(classes, bool):
        check.num_classes = classes
    for key in PREPROCESSING:
        if key in cfg:
            check.preprocessing[key] = cfg[key]
    labels = cfg.get("label_names")
    if isinstance(labels, list) and all(isinstance(x, str) for x in labels):
        check.label_names = labels
    tested = cfg.get("test_input_size")
    sizes = [s for s in (size, tested) if s is not None and _sizes(s)]
    if sizes and all(list(s) != own for s in sizes):
        check.notes.append(
            f"{shown} was trained at {'x'.join(map(str, sizes[0][1:]))}, the spec "
            f"runs at {net.resolution}x{net.resolution} (--set resolution=...)"
        )
    return check


def _sizes(value) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
