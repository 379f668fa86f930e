"""The registry of normalisations: one module per norm, each with a `NORM`
descriptor (settings model, IR op kind, attributes, weights, costs, what it can do).

This is the one list of norms. The spec's `norm:` field, the JSON schema, the IR's
op kinds, costs, weight layouts and both backends' templates
(`templates/<backend>/norms/<name>.py.j2`) read it. Adding a norm: its module here,
its line below, one template per backend.
"""

from __future__ import annotations

from . import batch_norm, evonorm_s0, group_norm, layer_norm, rms_norm
from .base import Norm, NormType

NORM_TYPES: dict[str, NormType] = {
    module.NORM.name: module.NORM
    for module in (batch_norm, group_norm, layer_norm, evonorm_s0, rms_norm)
}
# IR op kind -> its norm
NORMS_BY_KIND = {norm.kind: norm for norm in NORM_TYPES.values()}
NORM_KINDS = tuple(NORMS_BY_KIND)
# Norm name -> the model of its settings (the spec's `norm:` union)
NORM_MODELS = {name: norm.settings for name, norm in NORM_TYPES.items()}

__all__ = ["NORMS_BY_KIND", "NORM_KINDS", "NORM_MODELS", "NORM_TYPES", "Norm"]
