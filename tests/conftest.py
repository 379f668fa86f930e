"""Shared test setup. Frameworks are imported lazily by the tests that need them."""

import os
import signal

# Keep TensorFlow quiet and deterministic enough for readable test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

_WORST: list[tuple[str, float]] = []
_FIGURES: list[str] = []


@pytest.fixture
def no_hang():
    """A command that blocks (on a FIFO, say) fails the test instead of hanging it."""

    def blocked(*_):
        raise TimeoutError("the command blocked for 120 seconds")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(120)
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


def pytest_terminal_summary(terminalreporter):
    for line in _FIGURES:
        terminalreporter.write_line(line)
    if _WORST:
        label, diff = max(_WORST, key=lambda item: item[1])
        terminalreporter.write_line(
            f"cross-framework logits: {len(_WORST)} comparisons, worst max-abs-diff "
            f"{diff:.3g} ({label.strip()})"
        )
