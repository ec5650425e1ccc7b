"""docs/signaling.md is the published protocol: it must match signaling/events.py exactly."""

from pathlib import Path

from signaling import events as ev
from signaling.docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "signaling.md"


def test_signaling_doc_is_generated_from_the_event_models() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run: python -m signaling.docs > docs/signaling.md"


def test_every_event_is_documented_with_its_payload() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in [*ev.CLIENT_EVENTS, *ev.SERVER_EVENTS]:
        assert f"### `{name}`" in text


def test_every_client_event_forbids_unknown_fields() -> None:
    for model, ack in ev.CLIENT_EVENTS.values():
        assert model.model_config.get("extra") == "forbid"
        assert ack.model_config.get("extra") == "forbid"
