"""Heart rate from an ECG lead: R-peaks found by wfdb.processing's XQRS detector (a maintained
implementation, not our own), rate from the median R-R interval of the window."""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

MIN_BEATS = 3
# Physiological bounds: outside them the detector has locked onto noise.
MIN_BPM = 20.0
MAX_BPM = 300.0
# XQRS is tuned for the rates of the MIT-BIH recordings; at 1000 Hz (PTB) it finds nothing, so faster
# signals are resampled to this rate first.
DETECTION_RATE = 250.0


def derive_heart_rate(signal_mv: NDArray[np.floating], sample_rate: float) -> float | None:
    """Beats per minute over the window, or None when fewer than three beats are found."""
    from wfdb import processing  # imported lazily: it pulls in scipy and pandas

    if len(signal_mv) < sample_rate * 2 or not np.isfinite(signal_mv).all():
        return None
    # XQRS logs every learning step at INFO; quiet it for the duration of the call.
    logger = logging.getLogger("wfdb")
    previous = logger.level
    logger.setLevel(logging.WARNING)
    signal = np.asarray(signal_mv, dtype=float)
    rate = sample_rate
    try:
        if sample_rate > 400:
            signal, _ = processing.resample_sig(signal, sample_rate, DETECTION_RATE)
            rate = DETECTION_RATE
        peaks = processing.xqrs_detect(sig=signal, fs=rate, verbose=False)
    finally:
        logger.setLevel(previous)
    if len(peaks) < MIN_BEATS:
        return None
    rr = np.diff(peaks) / rate
    bpm = 60.0 / float(np.median(rr))
    return round(bpm, 1) if MIN_BPM <= bpm <= MAX_BPM else None
