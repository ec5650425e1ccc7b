// The viewed case's decision (recommendation, ICD-10 code, outcome), recorded by the host or a specialist. A save
// carries the version it was based on (expected_version); if someone saved in between, the server refuses it
// (`conflict`) and the newer decision is shown for review before saving again. Unsaved edits are kept per case
// as drafts. Entry and DOM map: static/js/conference-room.js.

import { ACK_TIMEOUT_MS, el, emitAck, formatDateTime, warn } from "../common.js";
import { TRANSIENT_MS, forThisSession } from "./shared.js";

/** The decision and its form. `ctx`: see startConference in conference-room.js. */
export function createDecisions(ctx) {
  const { state, ui, t, socket, outcomes } = ctx;
  const drafts = new Map(); // item_id -> {recommendation, icd10, outcome, baseVersion, dirty}
  const decisionNotice = new Map(); // item_id -> {kind, text}

  function mayDecide() {
    return state.phase === "inside" && (state.isHost || state.role === "specialist");
  }

  function outcomeLabel(value) {
    return outcomes.get(value) || value;
  }

  function draftOf(c) {
    let draft = drafts.get(c.item_id);
    if (!draft) {
      const d = c.decision;
      draft = {
        recommendation: d ? d.recommendation : "",
        icd10: d ? d.icd10 : "",
        outcome: d ? d.outcome : "",
        baseVersion: d ? d.version : 0,
        dirty: false,
      };
      drafts.set(c.item_id, draft);
    }
    return draft;
  }

  function saveDraftFromForm() {
    const itemId = ui.decisionForm ? Number(ui.decisionForm.dataset.itemId) : NaN;
    const draft = drafts.get(itemId);
    if (!draft || !draft.dirty) return;
    draft.recommendation = ui.recommendation.value;
    draft.icd10 = ui.icd10.value;
    draft.outcome = ui.outcome.value;
  }

  function renderDecision() {
    const c = ctx.agenda.viewedCase();
    if (!c) return;
    const d = c.decision;
    if (ui.decision) {
      if (!d) ui.decision.replaceChildren(el("p", { class: "muted", id: "cr-decision-none", text: t("decision_none") }));
      else {
        ui.decision.replaceChildren(
          el(
            "p",
            {},
            el("span", { class: "outcome-value", dataset: { outcome: d.outcome }, text: outcomeLabel(d.outcome) }),
            " · ICD-10: ",
            el("span", { class: "icd10", text: d.icd10 }),
          ),
          el("p", { class: "recommendation", text: d.recommendation }),
          el("p", {
            class: "muted decided-by",
            dataset: { version: String(d.version) },
            text: t("decision_by", { name: d.decided_by_name, time: formatDateTime(d.decided_at) }),
          }),
        );
      }
    }
    if (!ui.decisionForm) return;
    ui.decisionForm.hidden = !mayDecide();
    if (ui.decisionForm.hidden) return;
    const draft = draftOf(c);
    ui.decisionForm.dataset.itemId = String(c.item_id);
    ui.decisionForm.dataset.baseVersion = String(draft.baseVersion);
    ui.recommendation.value = draft.recommendation;
    ui.icd10.value = draft.icd10;
    ui.outcome.value = draft.outcome || "";
    const notice = decisionNotice.get(c.item_id);
    setDecisionMessage(notice ? notice.kind : null, notice ? notice.text : "");
  }

  function setDecisionMessage(kind, text) {
    if (!ui.decisionMessage) return;
    ui.decisionMessage.textContent = text || "";
    ui.decisionMessage.hidden = !text;
    if (kind) ui.decisionMessage.dataset.kind = kind;
    else delete ui.decisionMessage.dataset.kind;
  }

  function onDecisionInput() {
    const c = state.cases.get(Number(ui.decisionForm.dataset.itemId));
    if (!c) return;
    const draft = draftOf(c);
    draft.dirty = true;
    saveDraftFromForm();
  }

  function transientDecisionNotice(itemId, kind, text) {
    decisionNotice.set(itemId, { kind, text });
    setTimeout(() => {
      const notice = decisionNotice.get(itemId);
      if (notice && notice.text === text) {
        decisionNotice.delete(itemId);
        if (state.viewedItem === itemId) setDecisionMessage(null, "");
      }
    }, TRANSIENT_MS);
  }

  async function onDecisionSubmit(event) {
    event.preventDefault();
    const c = state.cases.get(Number(ui.decisionForm.dataset.itemId));
    if (!c || !mayDecide()) return;
    const draft = draftOf(c);
    draft.dirty = true;
    saveDraftFromForm();
    const payload = {
      session_id: state.session.id,
      agenda_item_id: c.item_id,
      recommendation: draft.recommendation.trim(),
      icd10: draft.icd10.trim(),
      outcome: draft.outcome,
      expected_version: draft.baseVersion,
    };
    ui.decisionSave.disabled = true;
    setDecisionMessage(null, t("decision_saving"));
    let ack;
    try {
      ack = await emitAck(socket, "conference.decide", payload, ACK_TIMEOUT_MS);
    } finally {
      ui.decisionSave.disabled = false;
    }
    if (ack.ok && ack.decision) {
      keepNewest(c, ack.decision);
      drafts.delete(c.item_id);
      transientDecisionNotice(c.item_id, "saved", t("decision_saved"));
    } else if (ack.error && ack.error.code === "conflict") {
      // Someone saved in between: show theirs (above the form) and let the next save be based on it.
      const newest = c.decision;
      if (newest && newest.version > draft.baseVersion) draft.baseVersion = newest.version;
      const name = newest ? newest.decided_by_name : "";
      decisionNotice.set(c.item_id, { kind: "conflict", text: t("decision_conflict", { name }) });
    } else {
      decisionNotice.set(c.item_id, { kind: "error", text: decisionError(ack.error || {}) });
    }
    if (state.viewedItem === c.item_id) renderDecision();
  }

  function decisionError(error) {
    const message = error.message || error.code || "";
    if (error.code === "unauthenticated") ctx.room.sessionExpired();
    if (error.code === "forbidden") return t("decision_not_allowed");
    if (/ICD-10/i.test(message)) return t("icd10_invalid");
    if (/recommendation is empty/.test(message)) return t("recommendation_empty");
    return t("decision_failed", { message });
  }

  function keepNewest(c, decision) {
    if (!c.decision || decision.version >= c.decision.version) c.decision = decision;
  }

  function onDecided(msg) {
    const decision = msg && msg.decision;
    if (!decision || !forThisSession(state, decision)) return;
    const c = state.cases.get(decision.agenda_item_id);
    if (!c) return;
    keepNewest(c, decision);
    const draft = drafts.get(c.item_id);
    if (draft) {
      const mine = decision.decided_by_user_id === state.userId && decision.version === draft.baseVersion + 1;
      if (!draft.dirty || mine) drafts.delete(c.item_id);
      else if (decision.version > draft.baseVersion) {
        decisionNotice.set(c.item_id, {
          kind: "conflict",
          text: t("decision_changed", { name: decision.decided_by_name }),
        });
      }
    }
    if (state.viewedItem === c.item_id) {
      saveDraftFromForm();
      renderDecision();
    }
  }

  if (ui.decisionForm) {
    ui.decisionForm.addEventListener("submit", (event) => onDecisionSubmit(event).catch((err) => warn("decide:", err)));
    ui.decisionForm.addEventListener("input", onDecisionInput);
    ui.decisionForm.addEventListener("change", onDecisionInput);
  }

  return { saveDraftFromForm, renderDecision, onDecided };
}
