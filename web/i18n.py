"""Gettext catalogs (Babel) for Vietnamese and English; the request's language lives in a contextvar."""

from __future__ import annotations

import contextvars
from pathlib import Path

from babel.support import NullTranslations, Translations

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
LOCALES = ("vi", "en")

_current: contextvars.ContextVar[str] = contextvars.ContextVar("locale", default="vi")
_catalogs: dict[str, NullTranslations] = {}


def load_catalogs() -> None:
    for locale in LOCALES:
        mo = TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.mo"
        if not mo.exists():
            raise RuntimeError(f"missing compiled catalog {mo}; run `make setup` (pybabel compile)")
        _catalogs[locale] = Translations.load(str(TRANSLATIONS_DIR), [locale], "messages")


def set_locale(locale: str) -> None:
    _current.set(locale if locale in LOCALES else "vi")


def current_locale() -> str:
    return _current.get()


def _catalog() -> NullTranslations:
    return _catalogs.get(_current.get()) or NullTranslations()


def gettext(message: str, **variables: object) -> str:
    text = _catalog().ugettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    text = _catalog().ungettext(singular, plural, n)
    variables.setdefault("num", n)
    return text % variables


_ = gettext


def negotiate(accept_language: str, default: str) -> str:
    """Pick vi or en from an Accept-Language header, honouring q-values; else the default."""
    best: tuple[float, str] | None = None
    for part in accept_language.split(","):
        piece = part.strip()
        if not piece:
            continue
        lang, _sep, params = piece.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        code = lang.strip().lower().split("-")[0]
        if code in LOCALES and quality > 0 and (best is None or quality > best[0]):
            best = (quality, code)
    return best[1] if best else default
