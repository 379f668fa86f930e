"""Checkpoint key layouts other than the generated models' own, as pure functions
from a checkpoint's keys to the spec's state_dict keys (no framework imported).

Gemma 3n: the checkpoints of Hugging Face's Gemma 3n models hold its image
encoder — timm's mobilenetv5_300m_enc, `specs/timm/mobilenetv5_300m_enc.yaml` —
under `model.vision_tower.timm_model.`, beside the language and audio towers.
timm's `checkpoint_filter_fn` for MobileNetV5 recognises such a checkpoint by the
stem's weight under that prefix, keeps the keys that hold the prefix and removes
it; `gemma3n_vision` does the same.
"""

from __future__ import annotations

from collections.abc import Iterable

GEMMA3N_VISION_PREFIX = "model.vision_tower.timm_model."
# The key by which timm recognises a Gemma 3n checkpoint.
GEMMA3N_MARKER = GEMMA3N_VISION_PREFIX + "conv_stem.conv.weight"


def gemma3n_vision(keys: Iterable[str]) -> dict[str, str] | None:
    """For the keys of a Gemma 3n checkpoint, checkpoint key -> state_dict key of
    each tensor of its image encoder, in the checkpoint's order (the other towers'
    keys are left out); None for keys of any other layout."""
    keys = list(keys)
    if GEMMA3N_MARKER not in keys:
        return None
    return {
        key: key.replace(GEMMA3N_VISION_PREFIX, "")
        for key in keys
        if GEMMA3N_VISION_PREFIX in key
    }
