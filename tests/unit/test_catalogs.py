"""Every user-facing string in the code and templates has a Vietnamese translation, with its placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)s")


def _source_messages() -> set[str]:
    method_map = [("web/**.py", "python"), ("web/templates/**.html", "jinja2")]
    options = {"web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options, keywords={"_": None, "gettext": None}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _catalog(locale: str) -> dict[str, str]:
    with open(ROOT / "web" / "translations" / locale / "LC_MESSAGES" / "messages.po", "rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id}


def test_every_string_is_translated_into_vietnamese() -> None:
    messages = _source_messages()
    assert len(messages) > 100
    vi = _catalog("vi")
    missing = sorted(m for m in messages if not vi.get(m))
    assert missing == [], "add these to web/translations/vi (make messages)"


def test_english_catalog_covers_every_string() -> None:
    en = _catalog("en")
    assert sorted(m for m in _source_messages() if m not in en) == []


def test_translations_keep_their_placeholders() -> None:
    for msgid, msgstr in _catalog("vi").items():
        assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(msgstr)), msgid
