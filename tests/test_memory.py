"""The reported peak activation memory against a measurement.

The report counts the tensors alive while the ops run in order, each freed right
after its last use and none computed in place (an attention op also holding its
score map and the softmax of it). The measurement runs the generated PyTorch model
as `torch.export` captures it — an op graph whose Python code drops every value
after its last use, as deployment runtimes do (eager modules keep their input alive
for the whole call) — and counts the elements of every tensor PyTorch's dispatcher
returns while it is alive (views share their storage; a storage is freed when the
last tensor on it is). The network's input, held by the caller, is not counted.
"""

from __future__ import annotations

import weakref

import pytest

from helpers import SPECS, build, random_images
from mbcompile import compiler


def measured_peak(model, images) -> int:
    """Peak elements of tensors alive during one run of the exported model."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    holders: dict[int, int] = {}  # storage -> tensors on it still alive
    state = {"live": 0, "peak": 0}

    def release(key: int, size: int) -> None:
        holders[key] -= 1
        if holders[key] == 0:
            del holders[key]
            state["live"] -= size

    class LiveTensors(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in tree_leaves(out):
                if not isinstance(tensor, torch.Tensor):
                    continue
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                size = storage.nbytes() // tensor.element_size()
                if key not in holders:
                    holders[key] = 0
                    state["live"] += size
                    state["peak"] = max(state["peak"], state["live"])
                holders[key] += 1
                weakref.finalize(tensor, release, key, size)
            return out

    x = torch.from_numpy(images)
    program = torch.export.export(model.eval(), (x,)).module()
    with torch.no_grad(), LiveTensors():
        program(x)
    return state["peak"]


@pytest.mark.parametrize(
    "spec,resolution",
    [
        # convolutions make the peak (at the paper's resolution), and attention's
        # score maps (at 1024: 4 heads x 4096 queries x 1024 keys)
        (SPECS / "timm" / "mobilenetv4_hybrid_medium.yaml", 256),
        (SPECS / "timm" / "mobilenetv4_hybrid_medium.yaml", 1024),
        (SPECS / "v2.yaml", 224),
    ],
    ids=["mobilenetv4_hybrid_medium-256", "mobilenetv4_hybrid_medium-1024", "v2"],
)
def test_reported_peak_is_measured_within_ten_percent(spec, resolution, tmp_path):
    _, graph, model = build(spec, "torch", tmp_path, [f"resolution={resolution}"])
    reported = compiler.cost_report(graph).peak_activation_elements
    measured = measured_peak(model, random_images(graph)[:1])
    print(
        f"figure: peak activations {spec.stem}@{resolution}: reported {reported:,}, "
        f"measured {measured:,} ({reported / measured - 1:+.1%})"
    )
    assert abs(reported - measured) <= 0.1 * measured
