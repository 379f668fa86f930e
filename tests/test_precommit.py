"""The pre-commit hooks of `.pre-commit-hooks.yaml`, end to end: a user's git
repository (a temporary one) whose `.pre-commit-config.yaml` names this repository
at its HEAD commit, as a user sets it up; pre-commit installs mbcompile from it
into its own environment; a stale generated file blocks the commit and a fresh
one passes.

pre-commit builds that environment with pip (from the package registry, as for
any hook), once for the module: every test names the same repository and commit,
so they share it (`pre-commit try-repo` would build one per call).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, SPECS


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pre_commit_home")


def run(args, cwd: Path, home: Path, check: bool = False):
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def git(repo: Path, home: Path, *args: str):
    return run(["git", "-c", "commit.gpgsign=false", *args], repo, home)


def pre_commit(repo: Path, home: Path, *args: str):
    return run([sys.executable, "-m", "pre_commit", *args], repo, home)


def mbcompile(repo: Path, home: Path, *args: str):
    return run([sys.executable, "-m", "mbcompile", *args], repo, home, check=True)


@pytest.fixture
def user_repo(tmp_path, pre_commit_home) -> Path:
    """A git repository with a spec, its config, the committed generated files and
    a `.pre-commit-config.yaml` naming both hooks of this repository at HEAD."""
    repo = tmp_path / "app"
    (repo / "specs").mkdir(parents=True)
    shutil.copy(SPECS / "v1.yaml", repo / "specs" / "net.yaml")
    (repo / "pyproject.toml").write_text(
        '[tool.mbcompile]\n[[tool.mbcompile.targets]]\nspec = "specs/*.yaml"\n'
    )
    home = pre_commit_home
    rev = run(["git", "rev-parse", "HEAD"], ROOT, home, check=True).stdout.strip()
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {ROOT}\n    rev: {rev}\n    hooks:\n"
        "      - id: mbcompile-check\n      - id: mbcompile-generate\n"
        "        stages: [manual]\n"
    )
    for args in (
        ["init", "-q"],
        ["config", "user.email", "dev@example.com"],
        ["config", "user.name", "dev"],
    ):
        assert git(repo, home, *args).returncode == 0
    mbcompile(repo, home, "generate")
    git(repo, home, "add", "-A")
    assert git(repo, home, "commit", "-q", "-m", "initial").returncode == 0
    return repo


def make_stale(repo: Path, home: Path) -> None:
    spec = repo / "specs" / "net.yaml"
    spec.write_text(spec.read_text().replace("num_classes: 1000", "num_classes: 10"))
    git(repo, home, "add", "-A")


def test_check_hook_fails_on_stale_and_passes_on_fresh(user_repo, pre_commit_home):
    home = pre_commit_home
    make_stale(user_repo, home)
    stale = pre_commit(user_repo, home, "run", "mbcompile-check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "generated/torch/net.py: stale: its spec changed" in stale.stdout
    assert "Failed" in stale.stdout
    mbcompile(user_repo, home, "generate")
    git(user_repo, home, "add", "-A")
    fresh = pre_commit(user_repo, home, "run", "mbcompile-check")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "Passed" in fresh.stdout


def test_generate_hook_rewrites_and_fails_until_added(user_repo, pre_commit_home):
    home = pre_commit_home
    make_stale(user_repo, home)
    first = pre_commit(
        user_repo, home, "run", "--hook-stage", "manual", "mbcompile-generate"
    )
    assert first.returncode == 1  # pre-commit: files were modified by this hook
    assert "files were modified by this hook" in first.stdout
    assert "num_classes: int = 10" in (user_repo / "generated/torch/net.py").read_text()
    git(user_repo, home, "add", "-A")
    second = pre_commit(
        user_repo, home, "run", "--hook-stage", "manual", "mbcompile-generate"
    )
    assert second.returncode == 0, second.stdout + second.stderr


def test_installed_hook_blocks_a_stale_commit(user_repo, pre_commit_home):
    """`pre-commit install`, then `git commit` as the user types it."""
    home = pre_commit_home
    assert pre_commit(user_repo, home, "install").returncode == 0
    head = git(user_repo, home, "rev-parse", "HEAD").stdout
    make_stale(user_repo, home)
    blocked = git(user_repo, home, "commit", "-m", "fewer classes")
    assert blocked.returncode != 0
    assert "generated/keras/net.py: stale" in blocked.stdout + blocked.stderr
    assert git(user_repo, home, "rev-parse", "HEAD").stdout == head
    mbcompile(user_repo, home, "generate")
    git(user_repo, home, "add", "-A")
    passed = git(user_repo, home, "commit", "-m", "fewer classes")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert git(user_repo, home, "rev-parse", "HEAD").stdout != head
