// The agenda and the case on screen: the list of cases (the host moves the session through it), and the
// viewed case's record summary: patient, consultation, recent vital signs. Its notes and decision are drawn by
// notes.js and decisions.js. Entry and DOM map: static/js/conference-room.js.

import { ACK_TIMEOUT_MS, el, emitAck, formatDateTime, warn } from "../common.js";
import { forThisSession } from "./shared.js";

// Units as clinicians write them (the server keeps UCUM codes such as mm[Hg] and Cel), as in vitals.js.
const UNIT_TEXT = { hr: "/min", spo2: "%", bp: "mmHg", rr: "/min", temp: "°C" };

/** The agenda and the viewed case. `ctx`: see startConference in conference-room.js. */
export function createAgenda(ctx) {
  const { state, ui, t, socket, specialties } = ctx;

  function caseAt(position) {
    for (const c of state.cases.values()) if (c.position === position) return c;
    return null;
  }

  function viewedCase() {
    return state.cases.get(state.viewedItem) || null;
  }

  function patientLine(c) {
    return t("patient_line", { name: c.patient_name, age: c.patient_age, sex: t(`sex_${c.patient_sex}`) });
  }

  function renderAgenda() {
    if (!ui.agenda) return;
    if (state.order.length === 0) {
      ui.agenda.replaceChildren(el("li", { class: "muted", text: t("no_cases") }));
      return;
    }
    const items = state.order.map((itemId) => {
      const c = state.cases.get(itemId);
      const current = c.position === state.currentPosition;
      const li = el(
        "li",
        {
          class: [current ? "current" : "", itemId === state.viewedItem ? "viewed" : ""].join(" ").trim(),
          dataset: { itemId: String(itemId), position: String(c.position) },
          "aria-current": current ? "step" : null,
        },
        el("strong", { text: t("case_number", { n: c.position }) }),
        current ? el("span", { class: "cr-now", text: t("now_discussing") }) : null,
        el("span", { class: "cr-patient", text: ` ${patientLine(c)}` }),
        el("span", { class: "cr-presenter", text: t("presenter", { name: c.presenter_name }) }),
      );
      const actions = el("div", { class: "cr-agenda-actions" });
      if (itemId !== state.viewedItem) {
        actions.append(el("button", { type: "button", class: "cr-view", text: t("view") }));
      }
      if (state.isHost && !current && state.phase === "inside") {
        actions.append(el("button", { type: "button", class: "cr-discuss primary", text: t("discuss_now") }));
      }
      if (actions.children.length) li.append(actions);
      return li;
    });
    ui.agenda.replaceChildren(...items);
  }

  function onAgendaClick(event) {
    const li = event.target.closest("li[data-item-id]");
    if (!li) return;
    const itemId = Number(li.dataset.itemId);
    if (event.target.closest(".cr-discuss")) {
      discuss(itemId).catch((err) => warn("conference.case:", err));
      return;
    }
    viewCase(itemId);
  }

  function viewCase(itemId) {
    if (!state.cases.has(itemId)) return;
    ctx.decisions.saveDraftFromForm();
    state.viewedItem = itemId;
    renderAgenda();
    renderCase();
  }

  async function discuss(itemId) {
    const c = state.cases.get(itemId);
    if (!c || !state.session) return;
    const payload = { session_id: state.session.id, position: c.position };
    const ack = await emitAck(socket, "conference.case", payload, ACK_TIMEOUT_MS);
    if (ack.ok) onCaseChanged({ session_id: state.session.id, position: c.position });
    else ctx.room.announceError(ack.error);
  }

  function onCaseChanged(msg) {
    if (!forThisSession(state, msg)) return;
    state.currentPosition = msg.position;
    const c = caseAt(msg.position);
    if (c && c.item_id !== state.viewedItem) {
      ctx.decisions.saveDraftFromForm();
      state.viewedItem = c.item_id;
      renderCase();
    }
    renderAgenda();
  }

  function renderCase() {
    const c = viewedCase();
    if (!c) {
      if (ui.caseTitle) ui.caseTitle.textContent = t("no_cases");
      for (const node of [ui.casePatient, ui.caseConsultation, ui.caseSummary]) if (node) node.textContent = "";
      if (ui.vitals) ui.vitals.replaceChildren();
      if (ui.notes) ui.notes.replaceChildren();
      if (ui.decision) ui.decision.replaceChildren();
      if (ui.decisionForm) ui.decisionForm.hidden = true;
      return;
    }
    if (ui.caseTitle) ui.caseTitle.textContent = `${t("case_number", { n: c.position })}: ${c.patient_name}`;
    if (ui.casePatient) ui.casePatient.textContent = patientLine(c);
    if (ui.caseConsultation) {
      const parts = [];
      if (c.specialty) parts.push(specialties[c.specialty] || c.specialty);
      if (c.urgency) parts.push(t(`urgency_${c.urgency}`));
      if (c.consultation_id) parts.push(`#${c.consultation_id}`);
      ui.caseConsultation.textContent = parts.length ? parts.join(" · ") : t("no_consultation");
    }
    if (ui.caseSummary) ui.caseSummary.textContent = c.summary || "";
    renderVitals(c);
    ctx.notes.renderNotes();
    ctx.decisions.renderDecision();
  }

  function renderVitals(c) {
    if (!ui.vitals) return;
    const rows = (c.vitals || []).map((v) =>
      el(
        "tr",
        { dataset: { kind: v.kind } },
        el("td", { text: t(`vital_${v.kind}`) }),
        el("td", { text: vitalValue(v) }),
        el("td", { text: formatDateTime(v.observed_at) }),
      ),
    );
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "3", class: "muted", text: t("vitals_none") })));
    ui.vitals.replaceChildren(...rows);
  }

  function vitalValue(v) {
    const num = (x) => (Number.isInteger(x) ? String(x) : Number(x).toFixed(1));
    const value = v.value2 != null ? `${num(v.value)}/${num(v.value2)}` : num(v.value);
    return `${value} ${UNIT_TEXT[v.kind] || v.unit || ""}`.trim();
  }

  if (ui.agenda) ui.agenda.addEventListener("click", onAgendaClick);

  return { caseAt, viewedCase, renderAgenda, renderCase, onCaseChanged };
}
