"""The main job, smaller: a real `hass` process and a real influxd, one migration end to end."""

from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parent.parent


def test_demo_completes_a_migration_with_full_integrity() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "demo.py"),
            "--events",
            "5000",
            "--live-events",
            "200",
            "--days",
            "3",
            "--timeout",
            "600",
            "--poll",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "RESULT: migration complete with full integrity" in output
    assert "phase                 complete" in output
    assert "Generated 5,000 history events" in output
