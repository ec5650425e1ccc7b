from __future__ import annotations

from datetime import UTC, datetime, timedelta

from teleconsult.clock import FakeClock, SystemClock


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.now() == clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    clock.advance(90.5)
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=90.5)


def test_clocks_are_timezone_aware_utc() -> None:
    assert FakeClock().now().utcoffset() == timedelta(0)
    assert SystemClock().now().utcoffset() == timedelta(0)
