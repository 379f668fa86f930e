"""Measuring latency: a spec's model with random weights, exported as for
deployment, run in its runtime and timed, each runtime in a child process of its
own (`mbcompile bench`, `bench --calibrate`, `sweep --measure`).

The parent side (`run.py`, `machine.py`, `timing.py`) imports no framework; the
child (`child.py`, `runtimes.py`) imports only its runtime's: torch is never timed
in a process that has imported tensorflow (their thread pools fight).
"""
