"""What a monitor signal is, from its WFDB name: an ECG lead (with its IEEE 11073 MDC code) or another
waveform (PLETH, ABP, RESP, ...). Names vary between databases ("ii", "II", "MLII"), so they are folded."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MDC_SYSTEM = "urn:oid:2.16.840.1.113883.6.24"


class SignalKind(StrEnum):
    ECG = "ecg"
    PLETH = "pleth"
    ABP = "abp"
    RESP = "resp"
    OTHER = "other"


# IEEE 11073-10101 MDC codes of the standard leads (DESIGN.md section 7).
MDC_LEADS: dict[str, int] = {
    "I": 131329,
    "II": 131330,
    "III": 131389,
    "AVR": 131390,
    "AVL": 131391,
    "AVF": 131392,
    "V1": 131331,
    "V2": 131332,
    "V3": 131333,
    "V4": 131334,
    "V5": 131335,
    "V6": 131336,
}
# The standard display name of each lead.
LEAD_LABELS = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}
_ECG_NAMES = set(MDC_LEADS) | {"MLI", "MLII", "MLIII", "ML2", "VX", "VY", "VZ", "X", "Y", "Z", "ECG", "EKG"}
_PREFIXES = {
    SignalKind.PLETH: ("PLETH", "PPG", "SPO2WAVE"),
    SignalKind.ABP: ("ABP", "ART", "AOBP", "PAP", "CVP", "BP"),
    SignalKind.RESP: ("RESP", "IMPEDANCE", "CO2", "FLOW"),
}


@dataclass(frozen=True, slots=True)
class SignalInfo:
    name: str  # as the source named it
    label: str  # as a clinician reads it
    kind: SignalKind
    mdc_code: int | None


def describe(name: str) -> SignalInfo:
    folded = name.strip().upper().replace(" ", "").replace("LEAD", "")
    folded = folded.removeprefix("ECG") if folded.removeprefix("ECG") in MDC_LEADS else folded
    if folded in MDC_LEADS:
        return SignalInfo(name, LEAD_LABELS.get(folded, folded), SignalKind.ECG, MDC_LEADS[folded])
    if folded in _ECG_NAMES:
        return SignalInfo(name, name.strip(), SignalKind.ECG, None)
    for kind, prefixes in _PREFIXES.items():
        if folded.startswith(prefixes):
            return SignalInfo(name, name.strip(), kind, None)
    return SignalInfo(name, name.strip(), SignalKind.OTHER, None)
