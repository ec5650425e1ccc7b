"""The `teleconsult` command: stable interface for admins and scripts; bad input is one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str, stdin: str = "", url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TELECONSULT_DATABASE_URL": url or f"sqlite+aiosqlite:///{tmp_path}/cli.sqlite3"}
    return subprocess.run(
        [sys.executable, "-m", "teleconsult.cli", *args],
        env=env,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("cli")
    assert run(tmp_path, "migrate").returncode == 0
    seeded = run(tmp_path, "seed", "--demo")
    assert seeded.returncode == 0 and "clinician" in seeded.stdout and "demo-password-2026" in seeded.stdout
    again = run(tmp_path, "seed", "--demo")  # idempotent: make run seeds on every start
    assert again.returncode == 0
    return tmp_path


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "alembic" not in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_user_add_reads_the_password_from_stdin(seeded: Path) -> None:
    done = run(
        seeded,
        "user",
        "add",
        "dr.hoa",
        "--role",
        "specialist",
        "--facility",
        "BVTW-BM",
        "--specialty",
        "neurology",
        stdin="a-long-password-1\n",
    )
    assert done.returncode == 0, done.stderr
    assert "dr.hoa" in done.stdout
    assert "taken" in one_line_error(
        run(
            seeded,
            "user",
            "add",
            "dr.hoa",
            "--role",
            "specialist",
            "--facility",
            "BVTW-BM",
            "--specialty",
            "neurology",
            stdin="a-long-password-1\n",
        )
    )


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["user", "add", "x.y", "--role", "clinician", "--facility", "TYT-TV"], "short\n", "at least 10"),
        (
            ["user", "add", "x.y", "--role", "specialist", "--facility", "TYT-TV", "--specialty", "cardiology"],
            "long-enough-pw\n",
            "central hospital",
        ),
        (["user", "add", "x.y", "--role", "clinician", "--facility", "NOWHERE"], "long-enough-pw\n", "NOWHERE"),
        (["user", "add", "x.y", "--role", "clinician", "--facility", "TYT-TV"], "", "standard input"),
        (["patient", "add", "--cccd", "12", "--name", "A", "--dob", "2000-01-01", "--sex", "male"], "", "12 digits"),
        (
            ["patient", "add", "--cccd", "001200001111", "--name", "A", "--dob", "01/01/2000", "--sex", "male"],
            "",
            "YYYY-MM-DD",
        ),
        (["seed"], "", "--demo"),
    ],
)
def test_bad_arguments_get_one_line_and_a_non_zero_exit(
    seeded: Path, args: list[str], stdin: str, expected: str
) -> None:
    assert expected in one_line_error(run(seeded, *args, stdin=stdin))


def test_argument_syntax_errors_exit_2_without_a_traceback(tmp_path: Path) -> None:
    result = run(tmp_path, "user", "add", "x", "--role", "surgeon", "--facility", "TYT-TV")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "invalid choice" in result.stderr


def test_patient_add_registers_once(seeded: Path) -> None:
    args = [
        "patient",
        "add",
        "--cccd",
        "001200002222",
        "--name",
        "Đặng Văn Bình",
        "--dob",
        "2000-01-01",
        "--sex",
        "male",
        "--bhyt",
        "GD4010200001111",
    ]
    assert run(seeded, *args).returncode == 0
    assert "already registered" in one_line_error(run(seeded, *args))


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    assert "Traceback" not in result.stderr and result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("teleconsult:")


def test_ecg_import_stores_a_record_once_and_fhir_export_returns_its_samples(seeded: Path) -> None:
    import json

    import numpy as np
    import wfdb

    record = ROOT / "tests" / "data" / "physionet" / "s0010_re"
    imported = run(seeded, "ecg", "import", str(record), "--patient", "010190001234", "--leads", "i,ii,v1")
    assert imported.returncode == 0, imported.stderr
    assert "3 signals, 38400 samples each" in imported.stdout
    again = run(seeded, "ecg", "import", str(record), "--patient", "010190001234", "--leads", "i,ii,v1")
    assert again.stdout.split(":")[0] == imported.stdout.split(":")[0]  # the same stream, not a second one
    exported = run(seeded, "fhir", "export", "--patient", "010190001234")
    assert exported.returncode == 0, exported.stderr
    bundle = json.loads(exported.stdout)
    ecg = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and "component" in e["resource"]
    ]
    assert ecg, "the imported ECG is in the export"
    lead_ii = [
        int(v)
        for obs in ecg
        for c in obs["component"]
        if c["code"].get("text") == "II" or any(x.get("code") == "131330" for x in c["code"].get("coding", []))
        for v in c["valueSampledData"]["data"].split()
    ]
    expected = wfdb.rdrecord(str(record), physical=False, channel_names=["ii"]).d_signal[:, 0]
    assert np.array_equal(np.array(lead_ii), expected)
    for bad, message in (
        (["ecg", "import", str(record), "--patient", "999999999999"], "patient"),
        (["ecg", "import", str(seeded / "missing"), "--patient", "010190001234"], "no WFDB record"),
    ):
        assert message in one_line_error(run(seeded, *bad))
