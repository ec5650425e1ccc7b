"""Checks on the repository itself: the compose file is valid Compose, and the lint gates hold.

Each tool runs from the same virtual environment as pytest, so nothing here depends on PATH.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    # The Compose specification schema ships inside check-jsonschema: no network needed.
    return run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)


def test_compose_file_follows_the_compose_specification() -> None:
    result = check_compose(ROOT / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text('services:\n  app:\n    image: 5\n    ports: "x"\n')
    result = check_compose(broken)
    assert result.returncode != 0
    assert "services.app" in result.stdout + result.stderr


def test_import_layering_contracts_hold() -> None:
    result = run(BIN / "lint-imports")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing() -> None:
    result = run(BIN / "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
