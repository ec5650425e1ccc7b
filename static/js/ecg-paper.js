// ECG paper: the scale and the look shared by the live monitor (canvas) and the stored-strip review (SVG),
// so that a strip measured on one reads the same on the other and on paper.

/** CSS pixels per millimetre: CSS fixes 96 px to the inch, which is what browsers print at. */
export const CSS_PX_PER_MM = 96 / 25.4;

export const GAINS_MM_PER_MV = [5, 10, 20];
export const SPEEDS_MM_PER_S = [12.5, 25, 50];
export const DEFAULT_GAIN = 10;
export const DEFAULT_SPEED = 25;

export const PAPER = {
  background: "#fffafa",
  minor: "#f4cccc",
  major: "#e39a9a",
};

export const TRACE_COLORS = {
  ecg: "#101418",
  pleth: "#0b5fa5",
  abp: "#b3261e",
  resp: "#1e7d32",
  other: "#5b3d99",
};

// Voltage units a device may report an ECG lead in, and how many millivolts one unit is.
const MILLIVOLTS_PER_UNIT = { mV: 1, uV: 0.001, V: 1000 };

/** Millivolts per physical unit, or null when the units are not a voltage (then no mm/mV scale applies). */
export function millivoltsPerUnit(units) {
  return Object.prototype.hasOwnProperty.call(MILLIVOLTS_PER_UNIT, units) ? MILLIVOLTS_PER_UNIT[units] : null;
}

/** Drawn at mm/mV (an ECG lead in volts) rather than auto-scaled to its row. */
export function isEcgSignal(signal) {
  return Boolean(signal) && signal.kind === "ecg" && millivoltsPerUnit(signal.units) !== null;
}

/**
 * Paint the paper (1 mm minor, 5 mm major lines) on a canvas whose pixels are `pxPerMm` to the mm, lines
 * anchored at the canvas origin so that every partial repaint lines up with the rest.
 */
export function drawPaper(ctx, width, height, pxPerMm, dpr = 1) {
  ctx.fillStyle = PAPER.background;
  ctx.fillRect(0, 0, width, height);
  for (const major of [false, true]) {
    const lineWidth = major ? Math.max(1, Math.round(dpr)) : Math.max(1, Math.round(dpr * 0.5));
    // Odd widths sit on half pixels, or they blur over two.
    const offset = (lineWidth % 2) / 2;
    ctx.beginPath();
    for (let i = 0; i * pxPerMm <= width; i++) {
      if ((i % 5 === 0) !== major) continue;
      const x = Math.round(i * pxPerMm) + offset;
      ctx.moveTo(x, 0);
      ctx.lineTo(x, height);
    }
    for (let i = 0; i * pxPerMm <= height; i++) {
      if ((i % 5 === 0) !== major) continue;
      const y = Math.round(i * pxPerMm) + offset;
      ctx.moveTo(0, y);
      ctx.lineTo(width, y);
    }
    ctx.strokeStyle = major ? PAPER.major : PAPER.minor;
    ctx.lineWidth = lineWidth;
    ctx.stroke();
  }
}

/** 12,5 in Vietnamese, 12.5 in English. */
export function formatNumber(value, maximumFractionDigits = 1) {
  const lang = (document.documentElement && document.documentElement.lang) || "vi";
  try {
    return new Intl.NumberFormat(lang, { maximumFractionDigits, useGrouping: false }).format(value);
  } catch {
    return String(value);
  }
}
