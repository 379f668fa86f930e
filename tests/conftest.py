"""Shared test setup. Frameworks are imported lazily by the tests that need them."""

import os
import signal

# Keep TensorFlow quiet and deterministic enough for readable test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Under pytest-xdist two workers share the two cores, and each framework's thread
# pools (as many threads as cores, per worker) spin against each other: the learning
# test's PyTorch training took 351 s there, against 126 s on one thread on a quiet
# machine, and tests/test_keras_applications.py in two workers 90-99 s against
# 77-79 s with one TensorFlow op thread each. One OpenMP thread and one TensorFlow
# intra-op thread per worker.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pytest

_WORST: list[tuple[str, float]] = []
_FIGURES: list[str] = []


@pytest.fixture
def no_hang(request):
    """A command that blocks (on a FIFO, say) fails the test instead of hanging it:
    after 120 seconds, or a module's `pytest.mark.hang_limit(seconds)` (exports and
    int8 calibration legitimately take minutes on 2 busy cores)."""
    marker = request.node.get_closest_marker("hang_limit")
    seconds = marker.args[0] if marker else 120

    def blocked(*_):
        raise TimeoutError(f"the command blocked for {seconds} seconds")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def worst_differences():
    """Collects cross-framework differences; the largest is printed at the end."""
    return _WORST


@pytest.fixture
def figures():
    """Collects measured figures (accuracies of trained models) printed at the end,
    so a CI log shows them without a rerun."""
    return _FIGURES


# Markers of on-demand runs: their tests run only when `-m` names the marker
# (`pytest -m slow`, `pytest -m timm_family`); the default run stays fast.
ON_DEMAND = ("slow", "timm_family")


# The longest files first (by their measured time in the default run): with two
# workers taking whole files in collection order (addopts: --dist loadfile
# --no-loadscope-reorder; xdist would otherwise start the files with the most tests),
# a long file started last would run alone at the end.
FIRST = (
    "test_learning.py",
    "test_export_command.py",
    "test_keras_applications.py",
    "test_keras_backends.py",
    "test_docs.py",
    "test_outputs.py",
    "test_timm.py",
    "test_init.py",
    "test_checkpoints.py",
    "test_cross_backend.py",
    "test_export.py",
)


def pytest_collection_modifyitems(config, items):
    order = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: order.get(item.path.name, len(FIRST)))
    selected = config.option.markexpr or ""
    skipped = [m for m in ON_DEMAND if m not in selected]
    drop = [i for i in items if any(m in i.keywords for m in skipped)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        dropped = set(drop)
        items[:] = [i for i in items if i not in dropped]


def pytest_sessionfinish(session):
    """Under pytest-xdist a worker hands its figures to the controller, which
    prints them all (`pytest_testnodedown`)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["mbcompile_worst"] = list(_WORST)
        workeroutput["mbcompile_figures"] = list(_FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    output = getattr(node, "workeroutput", {})
    _WORST.extend(tuple(item) for item in output.get("mbcompile_worst", []))
    _FIGURES.extend(output.get("mbcompile_figures", []))


def pytest_terminal_summary(terminalreporter):
    for line in _FIGURES:
        terminalreporter.write_line(line)
    if _WORST:
        label, diff = max(_WORST, key=lambda item: item[1])
        terminalreporter.write_line(
            f"cross-framework logits: {len(_WORST)} comparisons, worst max-abs-diff "
            f"{diff:.3g} ({label.strip()})"
        )
