"""Start a Janus of the test's own on loopback (teleconsult.janus_local: our config, VideoRoom + HTTP only, no
STUN, random api secret and admin key). A missing or broken Janus fails the test loudly rather than skipping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from teleconsult.janus_local import JanusNotAvailable, LocalJanus, start

Janus = LocalJanus


@contextmanager
def run_janus(tmp: Path) -> Iterator[Janus]:
    try:
        janus = start(tmp)
    except JanusNotAvailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield janus
    finally:
        janus.stop()
