"""Patient identity rules: CCCD, BHYT, names, search folding."""

from __future__ import annotations

from datetime import date

import pytest

from teleconsult.domain.errors import ValidationFailed
from teleconsult.domain.patients import (
    MAX_NAME,
    Patient,
    PatientDraft,
    Sex,
    fold_for_search,
    normalize_bhyt,
    normalize_cccd,
    normalize_name,
    validate_patient,
)

TODAY = date(2026, 11, 22)


@pytest.mark.parametrize(("raw", "expected"), [("001090012345", "001090012345"), (" 0010 9001 2345 ", "001090012345")])
def test_cccd_keeps_12_digits_and_drops_spaces(raw: str, expected: str) -> None:
    assert normalize_cccd(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "00109001234",
        "0010900123456",
        "00109001234A",
        "001-090-012345",
        "０01090012345",
        "٠٠١٠٩٠٠١٢٣٤٥",
        "001090012345\n1",
    ],
)
def test_cccd_must_be_exactly_12_ascii_digits(raw: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        normalize_cccd(raw)
    assert raised.value.field == "cccd"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("DN4010123456789", "DN4010123456789"), (" dn4 01 0123456789 ", "DN4010123456789"), (None, None), ("  ", None)],
)
def test_bhyt_is_uppercased_or_absent(raw: str | None, expected: str | None) -> None:
    assert normalize_bhyt(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "D4010123456789",
        "DN401012345678",
        "DN40101234567890",
        "4N4010123456789",
        "DN4O10123456789",
        "DN４010123456789",
        "ĐN4010123456789",
    ],
)
def test_malformed_bhyt_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        normalize_bhyt(raw)
    assert raised.value.field == "bhyt"


def test_name_is_nfc_and_single_spaced() -> None:
    decomposed = "Nguye\u0302\u0303n  Va\u0306n   \u0110u\u031b\u0301c "  # NFD input, as some keyboards send it
    assert normalize_name(decomposed) == "Nguyễn Văn Đức"
    assert len(normalize_name(decomposed)) == len("Nguyễn Văn Đức")


@pytest.mark.parametrize("raw", ["", "   ", "x" * (MAX_NAME + 1)])
def test_bad_names_are_rejected(raw: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        normalize_name(raw)
    assert raised.value.field == "full_name"


@pytest.mark.parametrize(
    ("name", "folded"),
    [
        ("Nguyễn Văn Đức", "nguyen van duc"),
        ("ĐẶNG THỊ HƯƠNG", "dang thi huong"),
        ("Trần  Thị Hồng Nhung", "tran thi hong nhung"),
        ("Lò Văn Sáng", "lo van sang"),
        ("Nguye\u0302\u0303n Va\u0306n \u0110u\u031b\u0301c", "nguyen van duc"),
        ("Phạm Quỳnh Anh", "pham quynh anh"),
    ],
)
def test_fold_for_search_strips_vietnamese_diacritics(name: str, folded: str) -> None:
    assert fold_for_search(name) == folded


def _draft(**changes: object) -> PatientDraft:
    values: dict[str, object] = dict(
        cccd="001 090 012345",
        full_name=" Nguyễn  Văn Đức ",
        date_of_birth=date(1990, 1, 2),
        sex="male",
        bhyt="dn4010123456789",
        address="  Số 5,  ngõ 12  ",
        province=" Hà  Nội ",
    )
    values.update(changes)
    return PatientDraft(**values)  # type: ignore[arg-type]


def test_validate_patient_cleans_every_field() -> None:
    clean = validate_patient(_draft(), TODAY)
    assert clean == PatientDraft(
        cccd="001090012345",
        full_name="Nguyễn Văn Đức",
        date_of_birth=date(1990, 1, 2),
        sex=Sex.MALE,
        bhyt="DN4010123456789",
        address="Số 5, ngõ 12",
        province="Hà Nội",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"date_of_birth": date(2026, 11, 23)}, "date_of_birth"),
        ({"date_of_birth": date(1890, 1, 1)}, "date_of_birth"),
        ({"address": "a" * 301}, "address"),
        ({"province": "p" * 121}, "province"),
        ({"cccd": "12345"}, "cccd"),
        ({"bhyt": "XX"}, "bhyt"),
        ({"full_name": " "}, "full_name"),
    ],
)
def test_validate_patient_rejects(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_patient(_draft(**changes), TODAY)
    assert raised.value.field == field


def test_born_today_is_fine() -> None:
    assert validate_patient(_draft(date_of_birth=TODAY), TODAY).date_of_birth == TODAY


def test_unknown_sex_is_rejected() -> None:
    with pytest.raises(ValueError):
        validate_patient(_draft(sex="unknown"), TODAY)


def test_age_counts_whole_years() -> None:
    patient = Patient(1, "001090012345", "Nguyễn Văn Đức", date(1990, 11, 22), Sex.MALE, None, "", "", 1)
    assert patient.age_on(date(2026, 11, 21)) == 35
    assert patient.age_on(date(2026, 11, 22)) == 36
