// The teleconference booking form (web/templates/conference_book.html): recurrence builder, invited sites and
// people, agenda of cases with a presenter each. On submit it asks the server for conflict warnings first
// (/api/v1/conferences/check), shows them with "Book anyway" and "Change", then books (POST) or saves an edit
// (PUT). The server decides everything; this page only composes the request and shows the answers.
// Times are Vietnam wall-clock times, sent as typed (the server stores UTC).

import { TIME_ZONE, el, loadI18n, logUnhandledRejections, warn } from "/static/js/common.js";

const WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]; // index: Monday = 0, as the server counts
const MIN_QUERY = 2;
const SEARCH_DELAY_MS = 300;
const SHOWN_TIMES = 4;
// Server field (the part before the first dot) -> the form control to mark and focus.
const FIELD_CONTROL = {
  title: "title",
  summary: "title",
  purpose: "purpose",
  day: "day",
  start: "start",
  end: "end",
  rrule: "repeat",
  host_facility_id: "host",
  invited_site_ids: "site-filter",
  invited_user_ids: "people-q",
  agenda: "case-q",
};

const $ = (id) => document.getElementById(id);
const t = loadI18n("book-i18n");
const root = $("conference-book");
const form = $("book-form");
const page = {
  conferenceId: null,
  organizer: null,
  people: new Map(), // user id -> person, in the order added
  agenda: [], // {patient_id, consultation_id, presenter_user_id, case}
  pending: null, // the request the shown warnings are about
  csrf: root.dataset.csrf,
  maxHours: Number(root.dataset.maxHours),
  maxSessions: Number(root.dataset.maxSessions),
  specialties: readJson("specialty-names", {}),
};

// --- small helpers -------------------------------------------------------------------------------------------

function readJson(id, fallback) {
  try {
    return JSON.parse($(id).textContent || "null") ?? fallback;
  } catch (err) {
    warn(`could not read #${id}:`, err);
    return fallback;
  }
}

/** Lowercase without Vietnamese diacritics, so "tuan" finds "Tuấn". */
function fold(text) {
  return String(text)
    .replace(/đ/g, "d")
    .replace(/Đ/g, "D")
    .normalize("NFD")
    .replace(/\p{M}/gu, "")
    .toLowerCase();
}

function listText(items) {
  try {
    return new Intl.ListFormat(document.documentElement.lang || "vi", { type: "conjunction" }).format(items);
  } catch {
    return items.join(", ");
  }
}

function weekdayOf(isoDay) {
  const [y, m, d] = isoDay.split("-").map(Number);
  return (new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 6) % 7;
}

/** YYYY-MM-DD in Vietnam of an ISO instant. */
const localDay = (iso) => new Date(iso).toLocaleDateString("en-CA", { timeZone: TIME_ZONE });
const dayText = (isoDay) => `${isoDay.slice(8, 10)}/${isoDay.slice(5, 7)}/${isoDay.slice(0, 4)}`;
const minutesOf = (hhmm) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
const roleText = (role) => t(`role_${role}`);
const specialtyText = (code) => (code ? page.specialties[code] || code : "");

/** "14:00 Tue 08/12" from a local "2026-12-08T14:00". */
function sessionText(local) {
  const day = local.slice(0, 10);
  return `${local.slice(11, 16)} ${t(`wds_${WEEKDAYS[weekdayOf(day)]}`)} ${day.slice(8, 10)}/${day.slice(5, 7)}`;
}

/** A local calendar day (YYYY-MM-DD) from an RRULE UNTIL: a date, or a UTC time shown in Vietnam. */
function untilDay(value) {
  if (/^\d{8}$/.test(value)) return `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6, 8)}`;
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return "";
  const instant = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  return instant.toLocaleDateString("en-CA", { timeZone: TIME_ZONE });
}

async function api(method, url, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = page.csrf;
  try {
    const response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, data };
  } catch (err) {
    warn(`${method} ${url} failed:`, err);
    return { ok: false, status: 0, data: null };
  }
}

/** [[control id, message]] for a failed request, in the user's language when the server gave it. */
function apiErrors(result) {
  if (result.status === 0) return [["", t("err_network")]];
  const error = result.data && result.data.error;
  if (!error) return [["", t("err_unknown")]];
  return [[FIELD_CONTROL[String(error.field || "").split(".")[0]] || "", error.display || error.message]];
}

// --- recurrence ----------------------------------------------------------------------------------------------

function checkedDays() {
  return [...form.querySelectorAll('input[name="byday"]:checked')].map((box) => box.value);
}

function setDays(codes) {
  for (const box of form.querySelectorAll('input[name="byday"]')) box.checked = codes.includes(box.value);
}

/** What the recurrence controls say, or null for a single session. */
function ruleParts() {
  const freq = $("repeat").value;
  if (freq === "none") return null;
  return {
    freq,
    interval: Number($("interval").value),
    days: checkedDays(),
    ends: form.querySelector('input[name="ends"]:checked').value,
    count: Number($("count").value),
    until: $("until").value,
  };
}

/** RFC 5545 RRULE value, e.g. FREQ=WEEKLY;BYDAY=TU;COUNT=8 (INTERVAL only when not 1). */
function composeRrule(rule) {
  if (!rule) return null;
  const parts = [`FREQ=${rule.freq.toUpperCase()}`];
  if (rule.interval !== 1) parts.push(`INTERVAL=${rule.interval}`);
  if (rule.freq === "weekly") parts.push(`BYDAY=${rule.days.join(",")}`);
  parts.push(rule.ends === "count" ? `COUNT=${rule.count}` : `UNTIL=${rule.until.replaceAll("-", "")}`);
  return parts.join(";");
}

function parseRrule(text) {
  const parts = Object.fromEntries(text.split(";").map((chunk) => chunk.split("=")));
  return {
    freq: String(parts.FREQ || "weekly").toLowerCase(),
    interval: Number(parts.INTERVAL || 1),
    days: parts.BYDAY ? parts.BYDAY.split(",") : [],
    ends: parts.UNTIL ? "until" : "count",
    count: Number(parts.COUNT || 8),
    until: parts.UNTIL ? untilDay(parts.UNTIL) : "",
  };
}

function ruleText(rule, day) {
  if (!rule) return t("rr_none");
  const n = rule.interval;
  let text;
  if (rule.freq === "daily") text = n === 1 ? t("rr_daily") : t("rr_daily_n", { n });
  else if (rule.freq === "weekly") {
    const days = listText(rule.days.map((code) => t(`wd_${code}`)));
    text = n === 1 ? t("rr_weekly", { days }) : t("rr_weekly_n", { n, days });
  } else {
    const date = day ? Number(day.slice(8, 10)) : "…";
    text = n === 1 ? t("rr_monthly", { day: date }) : t("rr_monthly_n", { n, day: date });
  }
  const first = day ? dayText(day) : "…";
  if (rule.ends === "count") return t("rr_sessions", { rule: text, n: rule.count, first });
  return t("rr_until", { rule: text, first, last: rule.until ? dayText(rule.until) : "…" });
}

function showRepeat() {
  const rule = ruleParts();
  const day = $("day").value;
  $("repeat-options").hidden = !rule;
  $("weekdays").hidden = !rule || rule.freq !== "weekly";
  $("monthly-note").hidden = !rule || rule.freq !== "monthly" || !day || Number(day.slice(8, 10)) < 29;
  if (rule) $("interval-unit").textContent = t(`unit_${rule.freq}`);
  $("repeat-text").textContent = ruleText(rule, day);
  const start = $("start").value;
  const end = $("end").value;
  $("when-text").textContent =
    day && start && end
      ? t("when_text", { weekday: t(`wd_${WEEKDAYS[weekdayOf(day)]}`), date: dayText(day), start, end })
      : "";
  if (day) $("until").min = day;
}

function onRepeatChange() {
  // A weekly series starts on its first session's weekday unless the coordinator says otherwise.
  if ($("repeat").value === "weekly" && checkedDays().length === 0 && $("day").value) {
    setDays([WEEKDAYS[weekdayOf($("day").value)]]);
  }
  showRepeat();
}

function onDayChange() {
  const day = $("day").value;
  if (day && $("repeat").value === "weekly" && checkedDays().length <= 1) setDays([WEEKDAYS[weekdayOf(day)]]);
  showRepeat();
}

// --- sites ---------------------------------------------------------------------------------------------------

function siteBoxes() {
  return [...form.querySelectorAll('input[name="site"]')];
}

function showSites() {
  const host = $("host").value;
  for (const box of siteBoxes()) {
    // The host's own room always takes part; it is not also an invited site.
    box.disabled = box.value === host;
    if (box.disabled) box.checked = false;
  }
  $("sites-count").textContent = t("sites_count", { n: siteBoxes().filter((b) => b.checked).length });
}

function filterSites() {
  const wanted = fold($("site-filter").value.trim());
  for (const group of form.querySelectorAll(".site-group")) {
    let shown = 0;
    for (const label of group.querySelectorAll("label.site")) {
      label.hidden = Boolean(wanted) && !fold(label.dataset.search).includes(wanted);
      if (!label.hidden) shown += 1;
    }
    group.hidden = shown === 0;
  }
}

// --- people --------------------------------------------------------------------------------------------------

function personText(p) {
  const what = [roleText(p.role), specialtyText(p.specialty), p.facility_name].filter(Boolean).join(" · ");
  return what ? `${p.display_name} · ${what}` : p.display_name;
}

function addPerson(person) {
  if (page.people.has(person.id)) return;
  page.people.set(person.id, person);
  showPeople();
}

function removePerson(id) {
  page.people.delete(id);
  for (const item of page.agenda) if (item.presenter_user_id === id) item.presenter_user_id = null;
  showPeople();
}

function showPeople() {
  hideWarnings(); // the warnings were about the people as they were
  const chips = $("people-chips");
  chips.replaceChildren(
    ...[...page.people.values()].map((p) =>
      el(
        "li",
        { class: "chip", dataset: { userId: p.id } },
        el("span", { text: personText(p) }),
        el("button", {
          type: "button",
          class: "chip-remove",
          "aria-label": t("remove_person", { name: p.display_name }),
          title: t("remove"),
          text: "×",
        }),
      ),
    ),
  );
  $("people-empty").hidden = page.people.size > 0;
  for (const button of $("people-results").querySelectorAll("button[data-user-id]")) {
    markAdded(button, page.people.has(Number(button.dataset.userId)));
  }
  showAgenda();
}

function markAdded(button, added) {
  button.disabled = added;
  button.textContent = added ? t("added") : t("add");
}

function searcher(run) {
  let timer = null;
  let latest = 0;
  return (immediate) => {
    clearTimeout(timer);
    const go = () => {
      latest += 1;
      const mine = latest;
      run((apply) => mine === latest && apply());
    };
    if (immediate) go();
    else timer = setTimeout(go, SEARCH_DELAY_MS);
  };
}

const searchPeople = searcher(async (ifLatest) => {
  const q = $("people-q").value.trim();
  const role = $("people-role").value;
  const specialty = $("people-specialty").value;
  const status = $("people-status");
  if (q.length < MIN_QUERY && !role && !specialty) {
    status.textContent = q ? t("search_short") : "";
    $("people-results").replaceChildren();
    return;
  }
  status.textContent = t("searching");
  const result = await api("GET", `/api/v1/directory/people?${new URLSearchParams({ q, role, specialty })}`);
  ifLatest(() => showPeopleFound(result));
});

function showPeopleFound(result) {
  const status = $("people-status");
  if (!result.ok) {
    status.textContent = apiErrors(result)[0][1];
    return;
  }
  const people = result.data.people;
  status.textContent = people.length ? "" : t("people_none");
  $("people-results").replaceChildren(
    ...people.map((p) => {
      const button = el("button", { type: "button", dataset: { userId: p.id } });
      markAdded(button, page.people.has(p.id));
      button.addEventListener("click", () => addPerson(p));
      return el("li", { dataset: { userId: p.id } }, el("span", { text: personText(p) }), button);
    }),
  );
}

// --- agenda --------------------------------------------------------------------------------------------------

function caseText(item) {
  const c = item.case;
  if (!c) return item.consultation_id ? `#${item.consultation_id}` : `#${item.patient_id}`;
  const patient = t("patient_line", { name: c.patient_name, age: c.age, sex: t(`sex_${c.sex}`) });
  const consultation = c.consultations.find((k) => k.id === item.consultation_id);
  return consultation ? `${patient} — ${consultationText(consultation)}` : patient;
}

function consultationText(k) {
  const date = dayText(localDay(k.created_at));
  return t("consultation_line", { id: k.id, specialty: specialtyText(k.specialty), date });
}

function addCase(c, consultationId) {
  const id = consultationId ?? null;
  if (page.agenda.some((item) => item.patient_id === c.patient_id && item.consultation_id === id)) return;
  page.agenda.push({ patient_id: c.patient_id, consultation_id: id, presenter_user_id: null, case: c });
  showAgenda();
}

function moveCase(index, by) {
  const to = index + by;
  if (to < 0 || to >= page.agenda.length) return;
  [page.agenda[index], page.agenda[to]] = [page.agenda[to], page.agenda[index]];
  showAgenda();
  const moved = $("agenda").children[to];
  const same = moved?.querySelector(by < 0 ? ".case-up" : ".case-down");
  (same && !same.disabled ? same : moved?.querySelector(by < 0 ? ".case-down" : ".case-up"))?.focus();
}

function presenterChoices() {
  const choices = [...page.people.values()].map((p) => [p.id, p.display_name]);
  const o = page.organizer;
  if (o && !page.people.has(o.id)) choices.unshift([o.id, t("organizer", { name: o.display_name })]);
  return choices;
}

function presenterSelect(item, number) {
  const select = el(
    "select",
    { class: "presenter", "aria-label": `${t("case_number", { n: number })}: ${t("presenter")}` },
    el("option", { value: "", text: t("choose_presenter") }),
    ...presenterChoices().map(([id, name]) => el("option", { value: id, text: name })),
  );
  select.value = item.presenter_user_id ? String(item.presenter_user_id) : "";
  select.addEventListener("change", () => choosePresenter(item, Number(select.value) || null));
  return select;
}

function choosePresenter(item, userId) {
  item.presenter_user_id = userId;
  hideWarnings();
  const o = page.organizer;
  // A presenter attends: an organizer chosen to present is invited like anyone else.
  if (o && userId === o.id && !page.people.has(o.id)) addPerson(o);
}

function agendaRow(item, index) {
  const number = index + 1;
  const button = (cls, text, by) => {
    const label = `${text}: ${t("case_number", { n: number })}`;
    const b = el("button", { type: "button", class: cls, text, "aria-label": label });
    b.disabled = (by < 0 && index === 0) || (by > 0 && index === page.agenda.length - 1);
    b.addEventListener("click", () => (by === 0 ? removeCase(index) : moveCase(index, by)));
    return b;
  };
  return el(
    "li",
    { class: "agenda-item", dataset: { patientId: item.patient_id ?? "", consultationId: item.consultation_id ?? "" } },
    el("span", { class: "case-label", text: `${t("case_number", { n: number })}: ${caseText(item)}` }),
    el("label", { class: "presenter-label" }, t("presenter"), presenterSelect(item, number)),
    el(
      "span",
      { class: "case-actions" },
      button("case-up", t("move_up"), -1),
      button("case-down", t("move_down"), 1),
      button("case-remove", t("remove"), 0),
    ),
  );
}

function removeCase(index) {
  page.agenda.splice(index, 1);
  showAgenda();
}

function showAgenda() {
  hideWarnings();
  $("agenda").replaceChildren(...page.agenda.map(agendaRow));
  $("agenda-empty").hidden = page.agenda.length > 0;
}

const searchCases = searcher(async (ifLatest) => {
  const q = $("case-q").value.trim();
  const status = $("case-status");
  if (q.length < MIN_QUERY) {
    status.textContent = q ? t("search_short") : "";
    $("case-results").replaceChildren();
    return;
  }
  status.textContent = t("searching");
  const result = await api("GET", `/api/v1/conferences/agenda/cases?${new URLSearchParams({ q })}`);
  ifLatest(() => showCasesFound(result));
});

function showCasesFound(result) {
  const status = $("case-status");
  if (!result.ok) {
    status.textContent = apiErrors(result)[0][1];
    return;
  }
  const cases = result.data.cases;
  status.textContent = cases.length ? "" : t("cases_none");
  $("case-results").replaceChildren(...cases.map(caseFound));
}

function caseFound(c) {
  const add = (text, consultationId) => {
    const b = el("button", { type: "button", text, dataset: { consultationId: consultationId ?? "" } });
    b.addEventListener("click", () => addCase(c, consultationId));
    return b;
  };
  const line = t("patient_line", { name: c.patient_name, age: c.age, sex: t(`sex_${c.sex}`) });
  const consultations = c.consultations.map((k) =>
    el("li", {}, el("span", { text: consultationText(k) }), add(t("add_consultation", { id: k.id }), k.id)),
  );
  return el(
    "li",
    { class: "case-found", dataset: { patientId: c.patient_id } },
    el("span", { text: line }),
    add(t("add_patient"), null),
    consultations.length ? el("ul", { class: "consultations" }, ...consultations) : null,
  );
}

// --- the request, checks and errors --------------------------------------------------------------------------

function request() {
  const host = $("host").value;
  return {
    title: $("title").value,
    purpose: $("purpose").value,
    day: $("day").value,
    start: $("start").value,
    end: $("end").value,
    host_facility_id: Number(host) || null,
    invited_site_ids: siteBoxes()
      .filter((b) => b.checked && b.value !== host)
      .map((b) => Number(b.value)),
    invited_user_ids: [...page.people.keys()],
    agenda: page.agenda.map((item) => ({
      presenter_user_id: item.presenter_user_id,
      patient_id: item.patient_id,
      consultation_id: item.consultation_id,
    })),
    rrule: composeRrule(ruleParts()),
  };
}

function timeErrors(body) {
  const errors = [];
  if (!body.day) errors.push(["day", t("err_day")]);
  if (!body.start) errors.push(["start", t("err_start")]);
  if (!body.end) errors.push(["end", t("err_end")]);
  else if (body.start && body.end <= body.start) errors.push(["end", t("err_end_after")]);
  else if (body.start && minutesOf(body.end) - minutesOf(body.start) > page.maxHours * 60) {
    errors.push(["end", t("err_duration", { hours: page.maxHours })]);
  }
  return errors;
}

function ruleErrors(rule, day) {
  if (!rule) return [];
  const errors = [];
  if (!Number.isInteger(rule.interval) || rule.interval < 1 || rule.interval > 99) {
    errors.push(["interval", t("err_interval")]);
  }
  if (rule.freq === "weekly" && rule.days.length === 0) errors.push(["weekdays", t("err_weekdays")]);
  else if (rule.freq === "weekly" && day && !rule.days.includes(WEEKDAYS[weekdayOf(day)])) {
    errors.push(["weekdays", t("err_first_day", { day: dayText(day) })]);
  }
  if (rule.ends === "count" && !(Number.isInteger(rule.count) && rule.count >= 1 && rule.count <= page.maxSessions)) {
    errors.push(["count", t("err_count", { max: page.maxSessions })]);
  }
  if (rule.ends === "until" && (!rule.until || (day && rule.until < day))) errors.push(["until", t("err_until")]);
  return errors;
}

function validate(body) {
  const errors = [];
  if (!body.title.trim()) errors.push(["title", t("err_title")]);
  errors.push(...timeErrors(body), ...ruleErrors(ruleParts(), body.day));
  if (!body.host_facility_id) errors.push(["host", t("err_host")]);
  if (!body.invited_site_ids.length && !body.invited_user_ids.length) errors.push(["site-filter", t("err_invite")]);
  body.agenda.forEach((item, index) => {
    if (!item.presenter_user_id) errors.push(["case-q", t("err_presenter", { n: index + 1 })]);
  });
  return errors;
}

function clearErrors() {
  $("form-errors").hidden = true;
  $("form-errors").replaceChildren();
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showErrors(errors) {
  clearErrors();
  const box = $("form-errors");
  box.replaceChildren(el("ul", {}, ...errors.map(([, message]) => el("li", { text: message }))));
  box.hidden = false;
  for (const [id] of errors) $(id)?.setAttribute("aria-invalid", "true");
  box.focus();
}

function setBusy(text) {
  $("book-status").textContent = text || "";
  for (const id of ["book-submit", "book-anyway"]) $(id).disabled = Boolean(text);
}

// --- warnings ------------------------------------------------------------------------------------------------

function groupWarnings(warnings) {
  const groups = new Map();
  for (const w of warnings) {
    const key = [w.kind, w.user_id, w.site_id, w.other_conference_id].join("/");
    if (!groups.has(key)) groups.set(key, { ...w, times: [] });
    groups.get(key).times.push(w.local_start);
  }
  return [...groups.values()];
}

function timesText(times) {
  const shown = listText(times.slice(0, SHOWN_TIMES).map(sessionText));
  return times.length > SHOWN_TIMES ? t("warn_more", { times: shown, n: times.length - SHOWN_TIMES }) : shown;
}

function warningText(w) {
  const times = timesText(w.times);
  const name = w.person_name || t("someone");
  const title = w.other_title || t("another");
  if (w.kind === "person_on_call") return t("warn_on_call", { name, times });
  if (w.kind === "person_double_booked") return t("warn_double", { name, title, times });
  return t("warn_site", { site: w.site_name || t("someone"), title, times });
}

function showWarnings(warnings) {
  $("warning-list").replaceChildren(
    ...groupWarnings(warnings).map((w) =>
      el("li", { class: "warning", dataset: { kind: w.kind }, text: warningText(w) }),
    ),
  );
  $("warnings").hidden = false;
  $("warnings").focus();
}

function hideWarnings() {
  page.pending = null;
  $("warnings").hidden = true;
}

// --- submit --------------------------------------------------------------------------------------------------

async function submit(event) {
  event.preventDefault();
  hideWarnings();
  const body = request();
  const errors = validate(body);
  if (errors.length) return showErrors(errors);
  clearErrors();
  setBusy(t("checking"));
  const id = page.conferenceId;
  const result = await api("POST", id ? `/api/v1/conferences/${id}/check` : "/api/v1/conferences/check", body);
  setBusy("");
  if (!result.ok) return showErrors(apiErrors(result));
  if (result.data.warnings.length) {
    page.pending = body;
    return showWarnings(result.data.warnings);
  }
  return save(body);
}

async function save(body) {
  setBusy(t("saving"));
  const id = page.conferenceId;
  const result = id
    ? await api("PUT", `/api/v1/conferences/${id}`, body)
    : await api("POST", "/api/v1/conferences", body);
  if (!result.ok) {
    setBusy("");
    hideWarnings();
    return showErrors(apiErrors(result));
  }
  window.location.assign(`/conferences?notice=${id ? "saved" : "booked"}`);
}

/** Book what the warnings were about; if anything changed since, check again first. */
function bookAnyway(event) {
  const body = request();
  if (page.pending && JSON.stringify(body) === JSON.stringify(page.pending)) return save(body);
  return submit(event);
}

// --- start ---------------------------------------------------------------------------------------------------

function prefill(state) {
  page.conferenceId = state.conference_id;
  page.organizer = state.organizer;
  if (!state.conference_id) return;
  for (const name of ["title", "purpose", "day", "start", "end"]) $(name).value = state[name] ?? "";
  $("host").value = String(state.host_facility_id);
  const invited = new Set(state.invited_site_ids.map(String));
  for (const box of siteBoxes()) box.checked = invited.has(box.value);
  if (state.rrule) {
    const rule = parseRrule(state.rrule);
    $("repeat").value = rule.freq;
    $("interval").value = String(rule.interval);
    setDays(rule.days);
    form.querySelector(`input[name="ends"][value="${rule.ends}"]`).checked = true;
    $("count").value = String(rule.count);
    $("until").value = rule.until;
  }
  for (const person of state.people) page.people.set(person.id, person);
  page.agenda = state.agenda.map((item) => ({ ...item }));
}

function wire() {
  form.addEventListener("submit", submit);
  form.addEventListener("input", hideWarnings);
  form.addEventListener("change", hideWarnings);
  $("book-anyway").addEventListener("click", bookAnyway);
  $("change").addEventListener("click", () => {
    hideWarnings();
    $("title").focus();
  });
  for (const id of ["repeat", "interval", "count", "until", "start", "end"]) {
    $(id).addEventListener("input", showRepeat);
  }
  $("repeat").addEventListener("change", onRepeatChange);
  $("day").addEventListener("change", onDayChange);
  form.addEventListener("change", (e) => (e.target.name === "byday" || e.target.name === "ends") && showRepeat());
  $("host").addEventListener("change", showSites);
  $("sites").addEventListener("change", showSites);
  $("site-filter").addEventListener("input", filterSites);
  $("people-q").addEventListener("input", () => searchPeople(false));
  for (const id of ["people-role", "people-specialty"]) $(id).addEventListener("change", () => searchPeople(true));
  $("people-search").addEventListener("click", () => searchPeople(true));
  $("people-chips").addEventListener("click", (e) => {
    const chip = e.target.closest(".chip-remove") && e.target.closest("li");
    if (chip) removePerson(Number(chip.dataset.userId));
  });
  $("case-q").addEventListener("input", () => searchCases(false));
  $("case-search").addEventListener("click", () => searchCases(true));
  for (const id of ["people-q", "case-q"]) {
    // Enter in a search box searches; it must not submit the booking.
    $(id).addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      e.preventDefault();
      (id === "people-q" ? searchPeople : searchCases)(true);
    });
  }
}

function start() {
  logUnhandledRejections();
  prefill(readJson("book-state", {}));
  wire();
  showRepeat();
  showSites();
  showPeople();
  document.body.dataset.bookReady = "1";
}

start();
