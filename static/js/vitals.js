// Vital-sign tiles (latest value per kind, alarm limits per viewer) and the manual entry form.
// Limits are a viewer's own display preference (localStorage), not clinical orders: they colour and label a
// tile, they never block or change a reading.

import { el, formatDateTime, formatTime, parseIso, TIME_ZONE, warn } from "./common.js";
import { formatNumber } from "./ecg-paper.js";

export const DEFAULT_LIMITS = Object.freeze({
  hr: [50, 120],
  spo2: [90, 100],
  sys: [90, 160],
  dia: [50, 100],
  rr: [8, 30],
  temp: [35.5, 38.5],
});

// What a person may type; the server checks again.
const ENTRY_RULES = {
  hr: { min: 20, max: 300, decimals: 0 },
  spo2: { min: 50, max: 100, decimals: 0 },
  sys: { min: 40, max: 300, decimals: 0 },
  dia: { min: 20, max: 200, decimals: 0 },
  rr: { min: 2, max: 80, decimals: 0 },
  temp: { min: 30, max: 45, decimals: 1 },
};

const KINDS = ["hr", "spo2", "bp", "rr", "temp"];
const TILES = ["hr", "hr_ecg", "spo2", "bp", "rr", "temp"];
const UNIT_TEXT = { hr: "/min", hr_ecg: "/min", spo2: "%", bp: "mmHg", rr: "/min", temp: "°C" };
const LIMIT_KEYS = ["hr", "spo2", "sys", "dia", "rr", "temp"];

function sameDayInVietnam(a, b) {
  const day = (d) => d.toLocaleDateString("en-GB", { timeZone: TIME_ZONE });
  return day(a) === day(b);
}

function parseNumber(text) {
  const clean = String(text || "").trim().replace(",", ".");
  if (!/^-?\d+(\.\d+)?$/.test(clean)) return null;
  return { value: Number(clean), decimals: clean.includes(".") ? clean.split(".")[1].length : 0 };
}

export class VitalsPanel {
  constructor(container, { t, onSubmit, storageKey = "tc-vital-limits" } = {}) {
    this.container = container;
    this.t = t || ((key) => key);
    this.onSubmit = onSubmit || (() => Promise.resolve({ ok: false, error: { message: "no handler" } }));
    this.storageKey = storageKey;
    this.byId = new Map();
    this.latest = new Map(); // kind -> vital
    this.derived = null; // {bpm, at}
    this.limits = this._loadLimits();
    this.tiles = new Map();
    container.classList.add("vitals");
    const grid = el("div", { class: "vital-tiles" });
    for (const kind of TILES) {
      const tile = this._buildTile(kind);
      this.tiles.set(kind, tile);
      grid.append(tile.root);
    }
    this.pendingList = el("ul", { class: "vitals-pending" });
    container.append(grid, this._buildEntryForm(), this.pendingList, this._buildLimitsForm());
    this._renderAll();
  }

  // --- public API ---------------------------------------------------------------------------------------

  setVitals(list) {
    this.byId.clear();
    this.latest.clear();
    for (const vital of Array.isArray(list) ? list : []) this._remember(vital);
    this._renderAll();
  }

  addVital(vital) {
    if (!vital || vital.id == null || this.byId.has(vital.id)) return;
    if (this._remember(vital)) this._render(vital.kind);
  }

  /** The heart rate the server derived from the ECG; null when it found no beats in its window. */
  setDerivedHeartRate(bpm) {
    const value = bpm == null || !Number.isFinite(Number(bpm)) ? null : Number(bpm);
    this.derived = { bpm: value, at: new Date() };
    this._render("hr_ecg");
  }

  /** Readings typed here but not yet accepted by the server: [{client_id, kind, value, value2}]. */
  setPending(items) {
    const t = this.t;
    this.pendingList.replaceChildren(
      ...(items || []).map((item) =>
        el(
          "li",
          { class: "vital-pending", dataset: { clientId: item.client_id, kind: item.kind } },
          `${t(`vital_${item.kind}`)} ${this._valueText(item.kind, item.value, item.value2)} ${UNIT_TEXT[item.kind] || ""} — `,
          el("span", { class: "vital-pending-state", text: t("vital_pending") }),
        ),
      ),
    );
  }

  /** The room is closed: readings can no longer be added. */
  disableEntry() {
    for (const control of this.form.elements) control.disabled = true;
    this.form.classList.add("disabled");
  }

  // --- tiles --------------------------------------------------------------------------------------------

  _remember(vital) {
    if (!vital || vital.id == null || !KINDS.includes(vital.kind)) return false;
    this.byId.set(vital.id, vital);
    const current = this.latest.get(vital.kind);
    if (!current || this._newer(vital, current)) {
      this.latest.set(vital.kind, vital);
      return true;
    }
    return false;
  }

  _newer(a, b) {
    const ta = (parseIso(a.observed_at) || new Date(0)).getTime();
    const tb = (parseIso(b.observed_at) || new Date(0)).getTime();
    return ta !== tb ? ta > tb : Number(a.id) > Number(b.id);
  }

  _buildTile(kind) {
    const t = this.t;
    const value = el("span", { class: "vital-value", text: "—" });
    const unit = el("span", { class: "vital-unit", text: UNIT_TEXT[kind] });
    const alarm = el("p", { class: "vital-alarm", role: "status", "aria-live": "polite" });
    const meta = el("p", { class: "vital-meta" });
    const limits = el("p", { class: "vital-limits" });
    const root = el(
      "div",
      { class: "vital-tile", role: "group", "aria-label": t(`vital_${kind}`), dataset: { kind, state: "empty" } },
      el("p", { class: "vital-label", text: t(`vital_${kind}`) }),
      el("p", { class: "vital-reading" }, value, " ", unit),
      alarm,
      meta,
      limits,
    );
    return { root, value, alarm, meta, limits };
  }

  _renderAll() {
    for (const kind of TILES) this._render(kind);
  }

  _render(kind) {
    const tile = this.tiles.get(kind);
    if (!tile) return;
    const t = this.t;
    let reading = null; // {value, value2, at, source}
    if (kind === "hr_ecg") {
      if (this.derived && this.derived.bpm == null) {
        // The detector found no beat in its window: say so rather than show a stale or made-up rate.
        tile.value.textContent = "—";
        tile.meta.textContent = t("vital_no_beats");
        tile.limits.textContent = this._limitsText(kind);
        this._setAlarm(tile, kind, []);
        return;
      }
      if (this.derived) reading = { value: this.derived.bpm, at: this.derived.at, source: "ecg" };
    } else {
      const v = this.latest.get(kind);
      if (v) reading = { value: v.value, value2: v.value2, at: parseIso(v.observed_at), source: v.source, by: v.recorded_by_name };
    }
    tile.limits.textContent = this._limitsText(kind);
    if (!reading) {
      tile.value.textContent = "—";
      tile.meta.textContent = kind === "hr_ecg" ? t("vital_no_ecg") : t("vital_none");
      this._setAlarm(tile, kind, []);
      return;
    }
    tile.value.textContent = this._valueText(kind, reading.value, reading.value2);
    tile.root.dataset.value = String(reading.value);
    if (reading.value2 != null) tile.root.dataset.value2 = String(reading.value2);
    const when = reading.at ? (sameDayInVietnam(reading.at, new Date()) ? formatTime(reading.at) : formatDateTime(reading.at)) : "";
    const source = t(`vital_source_${reading.source}`);
    tile.meta.replaceChildren(
      el("time", { datetime: reading.at ? reading.at.toISOString() : null, text: when }),
      ` · ${source}${reading.by && reading.source === "manual" ? ` (${reading.by})` : ""}`,
    );
    tile.root.dataset.source = reading.source;
    this._setAlarm(tile, kind, this._breaches(kind, reading));
  }

  _valueText(kind, value, value2) {
    const digits = kind === "temp" ? 1 : 0;
    const text = formatNumber(Number(value), digits);
    return kind === "bp" && value2 != null ? `${text}/${formatNumber(Number(value2), 0)}` : text;
  }

  /** [{key, dir: "high"|"low", limit}] for every limit the reading is outside of. */
  _breaches(kind, reading) {
    const checks = kind === "bp" ? [["sys", reading.value], ["dia", reading.value2]] : [[kind === "hr_ecg" ? "hr" : kind, reading.value]];
    const out = [];
    for (const [key, value] of checks) {
      const limits = this.limits[key];
      if (value == null || !limits) continue;
      if (Number(value) < limits[0]) out.push({ key, dir: "low", limit: limits[0] });
      else if (Number(value) > limits[1]) out.push({ key, dir: "high", limit: limits[1] });
    }
    return out;
  }

  _setAlarm(tile, kind, breaches) {
    const t = this.t;
    const alarmed = breaches.length > 0;
    tile.root.classList.toggle("alarm", alarmed);
    tile.root.dataset.state = alarmed ? "alarm" : tile.value.textContent === "—" ? "empty" : "normal";
    // In words as well as in colour: the alarm must survive a monochrome screen and a screen reader.
    tile.alarm.textContent = breaches
      .map((b) =>
        t(b.dir === "high" ? "vital_alarm_high" : "vital_alarm_low", {
          what: kind === "bp" ? t(`vital_${b.key}`) : t(`vital_${kind}`),
          limit: formatNumber(b.limit),
        }),
      )
      .join(" · ");
    tile.alarm.hidden = !alarmed;
  }

  _limitsText(kind) {
    const fmt = (key) => `${formatNumber(this.limits[key][0])}–${formatNumber(this.limits[key][1])}`;
    if (kind === "bp") return `${this.t("vital_limits")}: ${fmt("sys")} / ${fmt("dia")}`;
    return `${this.t("vital_limits")}: ${fmt(kind === "hr_ecg" ? "hr" : kind)}`;
  }

  // --- manual entry -------------------------------------------------------------------------------------

  _buildEntryForm() {
    const t = this.t;
    this.kindSelect = el("select", { name: "kind", class: "vitals-kind" }, ...KINDS.map((k) => el("option", { value: k, text: t(`vital_${k}`) })));
    this.valueInput = el("input", { name: "value", class: "vitals-value", inputmode: "decimal", autocomplete: "off", required: true });
    this.value2Input = el("input", { name: "value2", class: "vitals-value2", inputmode: "decimal", autocomplete: "off" });
    this.valueLabel = el("span", { text: t("vital_value") });
    this.unitLabel = el("span", { class: "vitals-unit", text: UNIT_TEXT.hr });
    this.value2Field = el(
      "label",
      { class: "vitals-value2-field", hidden: true },
      el("span", { text: t("vital_dia") }),
      el("span", { class: "vitals-input-unit" }, this.value2Input, el("span", { class: "vitals-unit", text: "mmHg" })),
    );
    this.formError = el("p", { class: "error vitals-form-error", role: "alert", hidden: true });
    this.formStatus = el("p", { class: "vitals-form-status", role: "status" });
    this.submitButton = el("button", { type: "submit", class: "primary vitals-submit", text: t("vital_save") });
    this.form = el(
      "form",
      { class: "inline-form vitals-form", novalidate: true },
      el("label", {}, el("span", { text: t("vital_kind") }), this.kindSelect),
      el("label", {}, this.valueLabel, el("span", { class: "vitals-input-unit" }, this.valueInput, this.unitLabel)),
      this.value2Field,
      this.submitButton,
      this.formError,
      this.formStatus,
    );
    this.kindSelect.addEventListener("change", () => this._kindChanged());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this._submit().catch((err) => warn("vital entry:", err));
    });
    return this.form;
  }

  _kindChanged() {
    const kind = this.kindSelect.value;
    this.valueLabel.textContent = kind === "bp" ? this.t("vital_sys") : this.t("vital_value");
    this.unitLabel.textContent = UNIT_TEXT[kind];
    this.value2Field.hidden = kind !== "bp";
    this.value2Input.required = kind === "bp";
    this._showError("");
  }

  _showError(message) {
    this.formError.textContent = message;
    this.formError.hidden = !message;
  }

  /** The reading as numbers, or a message saying what is wrong with it. */
  validate(kind, valueText, value2Text) {
    const t = this.t;
    const check = (key, text) => {
      const rule = ENTRY_RULES[key];
      const label = t(`vital_${key}`);
      const parsed = parseNumber(text);
      if (!parsed) return { error: t("vital_err_number", { label }) };
      if (parsed.value < rule.min || parsed.value > rule.max) {
        return {
          error: t("vital_err_range", { label, min: formatNumber(rule.min), max: formatNumber(rule.max), unit: UNIT_TEXT[key === "sys" || key === "dia" ? "bp" : key] }),
        };
      }
      if (parsed.decimals > rule.decimals) {
        return { error: rule.decimals ? t("vital_err_decimal", { label }) : t("vital_err_whole", { label }) };
      }
      return { value: parsed.value };
    };
    if (!KINDS.includes(kind)) return { error: t("vital_err_kind") };
    if (kind !== "bp") {
      const one = check(kind, valueText);
      return one.error ? one : { kind, value: one.value, value2: null };
    }
    const sys = check("sys", valueText);
    if (sys.error) return sys;
    const dia = check("dia", value2Text);
    if (dia.error) return dia;
    if (dia.value >= sys.value) return { error: t("vital_err_bp_order") };
    return { kind, value: sys.value, value2: dia.value };
  }

  async _submit() {
    const t = this.t;
    const reading = this.validate(this.kindSelect.value, this.valueInput.value, this.value2Input.value);
    this.formStatus.textContent = "";
    if (reading.error) {
      this._showError(reading.error);
      return;
    }
    this._showError("");
    this.submitButton.disabled = true;
    let result;
    try {
      result = await this.onSubmit({ kind: reading.kind, value: reading.value, value2: reading.value2 });
    } catch (err) {
      result = { ok: false, error: { message: (err && err.message) || String(err) } };
    } finally {
      this.submitButton.disabled = this.form.classList.contains("disabled");
    }
    if (!result || !result.ok) {
      const error = (result && result.error) || {};
      this._showError(error.message || error.code || t("vital_err_refused"));
      return;
    }
    if (result.vital) this.addVital(result.vital);
    this.valueInput.value = "";
    this.value2Input.value = "";
    this.formStatus.textContent = result.queued ? t("vital_queued") : t("vital_saved");
    this.valueInput.focus();
  }

  // --- alarm limits -------------------------------------------------------------------------------------

  _loadLimits() {
    const limits = {};
    let saved = {};
    try {
      saved = JSON.parse(window.localStorage.getItem(this.storageKey) || "{}") || {};
    } catch {
      saved = {};
    }
    for (const key of LIMIT_KEYS) {
      const pair = saved[key];
      const ok = Array.isArray(pair) && pair.length === 2 && pair.every(Number.isFinite) && pair[0] < pair[1];
      limits[key] = ok ? [pair[0], pair[1]] : DEFAULT_LIMITS[key].slice();
    }
    return limits;
  }

  _saveLimits() {
    try {
      window.localStorage.setItem(this.storageKey, JSON.stringify(this.limits));
    } catch (err) {
      warn("alarm limits not saved:", err && err.message);
    }
  }

  _buildLimitsForm() {
    const t = this.t;
    this.limitInputs = {};
    const rows = LIMIT_KEYS.map((key) => {
      const lo = el("input", { name: `${key}-low`, class: "limit-low", inputmode: "decimal", size: 5, "aria-label": `${t(`vital_${key}`)} ${t("vital_limit_low")}` });
      const hi = el("input", { name: `${key}-high`, class: "limit-high", inputmode: "decimal", size: 5, "aria-label": `${t(`vital_${key}`)} ${t("vital_limit_high")}` });
      this.limitInputs[key] = [lo, hi];
      return el("tr", { dataset: { limit: key } }, el("th", { scope: "row", text: t(`vital_${key}`) }), el("td", {}, lo), el("td", {}, hi));
    });
    this.limitsError = el("p", { class: "error limits-error", role: "alert", hidden: true });
    const save = el("button", { type: "submit", class: "primary", text: t("vital_limits_save") });
    const reset = el("button", { type: "button", class: "limits-reset", text: t("vital_limits_reset") });
    const form = el(
      "form",
      { class: "vitals-limits-form", novalidate: true },
      el(
        "table",
        { class: "table" },
        el("thead", {}, el("tr", {}, el("th", {}), el("th", { text: t("vital_limit_low") }), el("th", { text: t("vital_limit_high") }))),
        el("tbody", {}, ...rows),
      ),
      this.limitsError,
      save,
      " ",
      reset,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this._applyLimitsForm();
    });
    reset.addEventListener("click", () => {
      for (const key of LIMIT_KEYS) this.limits[key] = DEFAULT_LIMITS[key].slice();
      this._saveLimits();
      this._fillLimitsForm();
      this._renderAll();
    });
    this._fillLimitsForm();
    return el("details", { class: "vitals-limits" }, el("summary", { text: t("vital_limits_title") }), form);
  }

  _fillLimitsForm() {
    for (const key of LIMIT_KEYS) {
      const [lo, hi] = this.limitInputs[key];
      lo.value = formatNumber(this.limits[key][0]);
      hi.value = formatNumber(this.limits[key][1]);
    }
    this.limitsError.hidden = true;
  }

  _applyLimitsForm() {
    const next = {};
    for (const key of LIMIT_KEYS) {
      const [lo, hi] = this.limitInputs[key].map((input) => parseNumber(input.value));
      if (!lo || !hi || lo.value >= hi.value) {
        this.limitsError.textContent = this.t("vital_limits_error", { label: this.t(`vital_${key}`) });
        this.limitsError.hidden = false;
        return;
      }
      next[key] = [lo.value, hi.value];
    }
    this.limits = next;
    this._saveLimits();
    this._fillLimitsForm();
    this._renderAll();
  }
}
