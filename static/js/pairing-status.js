// The requester's view of pairing: for each waiting request of their facility, where it stands (queued,
// offered to whom, escalated, accepted), how long it has waited, and "raise urgency". Used by the clinician's
// dashboard (a list of requests, new ones added live) and by the consultation room (one panel).
// Protocol: signaling/events.py (pairing.status push and request, pairing.raise, consultation.updated).
// DOM contract: web/templates/dashboard_clinician.html and room.html (`.pairing` blocks).

import { childByData, el, emitAck, formatDateTime, parseIso, warn } from "./common.js";
import { URGENCY_ORDER, WAITING_STATES, formatDuration, loadPairingText, pairingStateText } from "./pairing-text.js";

const OPEN_STATUSES = new Set(["requested", "offered"]);
const FOLLOWED_STATUSES = new Set(["requested", "offered", "accepted"]);
const ACTIVE_STATUSES = new Set(["requested", "offered", "accepted", "in_progress"]);

/**
 * Follow the pairing of every `[data-consultation-id]` child of `container`. With `addNew`, requests of the
 * facility made elsewhere (another clinician, the API) are added as they appear, from `#consultation-row-template`.
 */
export function attachPairingStatus({ socket, container, addNew = false }) {
  if (!container) return null;
  const t = loadPairingText();
  const clocks = new Map(); // consultation id -> {waited, at, ticking}

  const items = () => [...container.children].filter((node) => node.dataset && node.dataset.consultationId);
  const itemOf = (id) => childByData(container, "consultationId", id);

  function updateEmptyState() {
    const empty = document.getElementById("no-consultations");
    if (empty) empty.hidden = items().length > 0;
    if (addNew) container.hidden = items().length === 0;
  }

  function newItem(id) {
    const template = document.getElementById("consultation-row-template");
    const source = template && template.content && template.content.firstElementChild;
    if (!source) return null;
    const item = document.importNode(source, true);
    item.dataset.consultationId = String(id);
    const room = item.querySelector(".pairing-room");
    if (room) room.setAttribute("href", `/consultations/${encodeURIComponent(id)}/room`);
    const cancel = item.querySelector("form.pairing-cancel");
    if (cancel) cancel.setAttribute("action", `/consultations/${encodeURIComponent(id)}/cancel`);
    container.prepend(item);
    updateEmptyState();
    return item;
  }

  function setUrgency(item, urgency) {
    if (!urgency) return;
    item.dataset.urgency = urgency;
    for (const cls of [...item.classList]) if (cls.startsWith("urgency-")) item.classList.remove(cls);
    item.classList.add(`urgency-${urgency}`);
    const badge = item.querySelector(".req-urgency");
    if (badge) badge.textContent = t.urgency(urgency);
  }

  function fillBasics(item, info) {
    setUrgency(item, info.urgency);
    const set = (selector, text) => {
      const node = item.querySelector(selector);
      if (node && text) node.textContent = text;
    };
    set(".req-patient", info.patient_name);
    set(".req-specialty", t.specialty(info.specialty));
    if (info.created_at) {
      item.dataset.createdAt = info.created_at;
      set(".req-time", formatDateTime(info.created_at));
    }
  }

  function renderRaise(item, status) {
    const box = item.querySelector(".pairing-raise");
    if (!box) return;
    const current = URGENCY_ORDER.indexOf(status.urgency);
    const higher = WAITING_STATES.has(status.state) ? URGENCY_ORDER.filter((_, i) => i > current) : [];
    const wanted = higher.join(",");
    if (box.dataset.levels === wanted) return;
    box.dataset.levels = wanted;
    box.replaceChildren(
      ...higher.map((urgency) =>
        el("button", {
          type: "button",
          class: `pairing-raise-btn raise-${urgency}`,
          dataset: { urgency },
          text: t("ps_raise_to", { urgency: t.urgency(urgency) }),
        }),
      ),
    );
  }

  function render(item, status) {
    item.dataset.pairing = status.state;
    setUrgency(item, status.urgency);
    const block = item.querySelector(".pairing");
    if (block) block.dataset.state = status.state;
    const text = item.querySelector(".pairing-state");
    if (text) text.textContent = pairingStateText(t, status);
    const waiting = WAITING_STATES.has(status.state);
    const id = Number(status.consultation_id);
    if (status.waited_s == null) clocks.delete(id);
    else clocks.set(id, { waited: Number(status.waited_s), at: Date.now(), ticking: waiting });
    renderRaise(item, status);
    const cancel = item.querySelector(".pairing-cancel");
    if (cancel) cancel.hidden = !waiting;
    const room = item.querySelector(".pairing-room");
    if (room) room.classList.toggle("primary", status.state === "accepted" || status.state === "in_progress");
    if (!ACTIVE_STATUSES.has(status.state) && !WAITING_STATES.has(status.state)) {
      item.classList.add("taken"); // greyed: cancelled, expired or completed
    }
    tickOne(item);
  }

  function tickOne(item) {
    const node = item.querySelector(".pairing-waited");
    if (!node) return;
    const clock = clocks.get(Number(item.dataset.consultationId));
    let seconds;
    if (clock) seconds = clock.waited + (clock.ticking ? (Date.now() - clock.at) / 1000 : 0);
    else {
      const created = parseIso(item.dataset.createdAt);
      if (!created || !OPEN_STATUSES.has(item.dataset.status)) {
        node.textContent = "";
        return;
      }
      seconds = (Date.now() - created.getTime()) / 1000;
    }
    node.textContent = t("ps_waited", { time: formatDuration(seconds) });
  }

  function showError(item, message) {
    const node = item.querySelector(".pairing-error");
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  async function raise(item, urgency, button) {
    button.disabled = true;
    const consultationId = Number(item.dataset.consultationId);
    const ack = await emitAck(socket, "pairing.raise", { consultation_id: consultationId, urgency });
    button.disabled = false;
    if (ack.ok && ack.status) {
      showError(item, "");
      render(item, ack.status);
    } else {
      showError(item, t("ps_raise_error", { message: (ack.error && ack.error.message) || "" }));
    }
  }

  async function ask(item) {
    const ack = await emitAck(socket, "pairing.status", { consultation_id: Number(item.dataset.consultationId) });
    if (ack.ok && ack.status) render(item, ack.status);
    else if (ack.error && ack.error.code !== "disconnected") warn("pairing.status:", ack.error);
  }

  container.addEventListener("click", (event) => {
    const button = event.target.closest("button.pairing-raise-btn");
    const item = button && button.closest("[data-consultation-id]");
    if (item) raise(item, button.dataset.urgency, button);
  });

  socket.on("connect", () => {
    const asks = items()
      .filter((item) => FOLLOWED_STATUSES.has(item.dataset.status) || WAITING_STATES.has(item.dataset.pairing))
      .map((item) => ask(item));
    Promise.all(asks).then(() => {
      document.body.dataset.pairingReady = "1";
    });
  });
  socket.on("pairing.status", (msg) => {
    const status = msg && msg.status;
    if (!status || status.consultation_id == null) return;
    let item = itemOf(status.consultation_id);
    if (!item && addNew && WAITING_STATES.has(status.state)) {
      item = newItem(status.consultation_id);
      if (item) fillBasics(item, status);
    }
    if (item) render(item, status);
  });
  socket.on("consultation.updated", (msg) => {
    const c = msg && msg.consultation;
    if (!c || c.id == null) return;
    let item = itemOf(c.id);
    if (!item && addNew && OPEN_STATUSES.has(c.status)) item = newItem(c.id);
    if (!item) return;
    item.dataset.status = c.status;
    fillBasics(item, c);
    if (!FOLLOWED_STATUSES.has(c.status)) {
      // In progress, completed, cancelled or expired: no pairing push follows, the consultation says it all.
      const clock = clocks.get(Number(c.id));
      const waited = clock ? clock.waited + (clock.ticking ? (Date.now() - clock.at) / 1000 : 0) : null;
      const state = { consultation_id: c.id, state: c.status, urgency: c.urgency, offers: [], waited_s: waited };
      render(item, { ...state, specialist_name: c.specialist_name });
    }
  });

  setInterval(() => items().forEach(tickOne), 1000);
  items().forEach(tickOne);
  updateEmptyState();
  return { ask };
}

/** The consultation room: the requesting clinician sees the pairing of the request they are waiting in. */
export function attachRoomPairing(socket) {
  const panel = document.getElementById("pairing-panel");
  if (!panel) return null;
  return attachPairingStatus({ socket, container: panel });
}
