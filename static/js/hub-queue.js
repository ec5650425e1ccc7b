// The coordinator's live queue of their hub: waiting cases (urgency, specialty, facility, time waited, who is
// ringing), the hub's specialists and why each could or could not take a case now, and "hand to" a named
// specialist. An escalation (nobody left to ring) is highlighted and chimes.
// Protocol: signaling/events.py (pairing.queue, pairing.hand; pushes pairing.status, pairing.escalated,
// presence.updated). DOM contract: web/templates/dashboard_coordinator.html.

import { childByData, el, emitAck, warn } from "./common.js";
import { formatDuration, loadPairingText, pairingStateText } from "./pairing-text.js";
import { createSound, unlockOnFirstGesture, wireSoundButton } from "./sound.js";

const REFRESH_DEBOUNCE_MS = 250;
const HIGHLIGHT_MS = 60000;

export function attachHubQueue({ socket }) {
  const box = document.getElementById("hub-queue");
  const casesBody = document.getElementById("queue-cases");
  const staffBody = document.getElementById("queue-staff");
  if (!box || !casesBody || !staffBody) return null;
  const t = loadPairingText();
  const sound = createSound();
  const hubId = Number(box.dataset.hubId) || null;
  const escalatedAt = new Map(); // consultation id -> when we were alerted (highlight)
  let staff = [];
  let fetchedAt = Date.now();
  let refreshTimer = null;
  let generation = 0;

  unlockOnFirstGesture(sound);
  wireSoundButton(document.getElementById("sound-enable"), sound, t);

  function showError(message) {
    const node = document.getElementById("queue-error");
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  // ---- cases -----------------------------------------------------------------------------------------------

  function stateText(status) {
    const offers = status.offers || [];
    if (status.state === "offered") return t("q_ringing", { names: offers.map((o) => o.specialist_name).join(", ") });
    if (status.state === "escalated") return t("q_escalated");
    if (status.state === "accepted") return t("q_accepted", { name: status.specialist_name || "" });
    return pairingStateText(t, status);
  }

  function caseRow(id) {
    let row = childByData(casesBody, "consultationId", id);
    if (row) return row;
    const select = el("select", { class: "hand-to", "aria-label": t("q_choose") });
    row = el(
      "tr",
      { dataset: { consultationId: String(id) } },
      el("td", { class: "q-id", text: `#${id}` }),
      el("td", {}, el("span", { class: "badge q-urgency" })),
      el("td", { class: "q-specialty" }),
      el("td", { class: "q-facility" }),
      el("td", { class: "q-waited" }),
      el("td", { class: "q-state" }),
      el(
        "td",
        { class: "q-hand" },
        el(
          "form",
          { class: "hand-form" },
          select,
          el("button", { type: "submit", class: "primary", text: t("q_hand") }),
        ),
        el("p", { class: "hand-result", role: "status", hidden: true }),
      ),
    );
    return row;
  }

  function fillHandOptions(select, status) {
    const choices = staff.filter((s) => s.presence.specialty === status.specialty);
    const keep = select.value;
    const options = [el("option", { value: "", text: choices.length ? t("q_choose") : t("q_no_one") })];
    for (const s of choices) {
      const label = `${s.presence.display_name} — ${t(`st_${s.state}`)}`;
      options.push(el("option", { value: String(s.presence.user_id), text: label }));
    }
    select.replaceChildren(...options);
    if (choices.some((s) => String(s.presence.user_id) === keep)) select.value = keep;
    select.disabled = choices.length === 0;
  }

  function fillCase(row, status) {
    row.dataset.state = status.state;
    row.dataset.urgency = status.urgency;
    row.dataset.waited = String(status.waited_s || 0);
    row.className = `urgency-${status.urgency} state-${status.state}`;
    if (escalatedAt.has(status.consultation_id)) row.classList.add("q-alert");
    const badge = row.querySelector(".q-urgency");
    badge.className = `badge q-urgency urgency-${status.urgency}`;
    badge.textContent = t.urgency(status.urgency);
    row.querySelector(".q-specialty").textContent = t.specialty(status.specialty);
    row.querySelector(".q-facility").textContent = status.facility_name;
    row.querySelector(".q-state").textContent = stateText(status);
    fillHandOptions(row.querySelector("select.hand-to"), status);
  }

  function renderCases(cases) {
    const seen = new Set();
    let previous = null;
    for (const status of cases) {
      const row = caseRow(status.consultation_id);
      fillCase(row, status);
      seen.add(row);
      // Keep the server's order (most urgent, longest waiting first) without rebuilding rows in use.
      const wanted = previous ? previous.nextSibling : casesBody.firstChild;
      if (row !== wanted) casesBody.insertBefore(row, wanted);
      previous = row;
    }
    for (const row of [...casesBody.children]) if (!seen.has(row)) row.remove();
    const empty = document.getElementById("queue-empty");
    if (empty) empty.hidden = cases.length > 0;
    tickWaited();
  }

  function tickWaited() {
    const elapsed = (Date.now() - fetchedAt) / 1000;
    for (const row of casesBody.children) {
      const waiting = ["queued", "offered", "escalated"].includes(row.dataset.state);
      const seconds = Number(row.dataset.waited || 0) + (waiting ? elapsed : 0);
      row.querySelector(".q-waited").textContent = formatDuration(seconds);
    }
  }

  // ---- staff -----------------------------------------------------------------------------------------------

  function renderStaff(list) {
    staffBody.replaceChildren(
      ...list.map((s) =>
        el(
          "tr",
          { dataset: { userId: String(s.presence.user_id), state: s.state }, class: `staff-${s.state}` },
          el("td", { class: "s-name", text: s.presence.display_name }),
          el("td", { class: "s-specialty", text: t.specialty(s.presence.specialty) }),
          el("td", {}, el("span", { class: `staff-state state-${s.state}`, text: t(`st_${s.state}`) })),
        ),
      ),
    );
    const empty = document.getElementById("staff-empty");
    if (empty) empty.hidden = list.length > 0;
  }

  // ---- loading ---------------------------------------------------------------------------------------------

  async function load() {
    const mine = ++generation;
    const ack = await emitAck(socket, "pairing.queue", hubId ? { hub_id: hubId } : {});
    if (mine !== generation) return; // a newer answer is on its way
    if (!ack.ok) {
      if (ack.error && ack.error.code !== "disconnected") showError(ack.error.message);
      return;
    }
    showError("");
    fetchedAt = Date.now();
    staff = ack.staff || [];
    renderStaff(staff);
    renderCases(ack.cases || []);
    document.body.dataset.queueReady = "1";
    box.dataset.loads = String(Number(box.dataset.loads || 0) + 1);
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => load().catch((err) => warn("queue:", err)), REFRESH_DEBOUNCE_MS);
  }

  function alertEscalated(status) {
    const id = status.consultation_id;
    escalatedAt.set(id, Date.now());
    setTimeout(() => {
      escalatedAt.delete(id);
      const row = childByData(casesBody, "consultationId", id);
      if (row) row.classList.remove("q-alert");
    }, HIGHLIGHT_MS);
    const text = t("q_alert", { id, specialty: t.specialty(status.specialty) });
    const banner = document.getElementById("queue-alert");
    if (banner) {
      banner.textContent = text;
      banner.hidden = false;
    }
    sound.chime();
    if ("Notification" in window && Notification.permission === "granted") {
      try {
        // The queue carries no patient identity: safe on a lock screen.
        new Notification(text, { body: status.facility_name, tag: `escalated-${id}` });
      } catch (err) {
        warn("notification:", err);
      }
    }
  }

  // ---- hand to -----------------------------------------------------------------------------------------------

  casesBody.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const row = form.closest("tr");
    const select = form.querySelector("select.hand-to");
    const result = row.querySelector(".hand-result");
    if (!select.value) {
      select.focus();
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    const ack = await emitAck(socket, "pairing.hand", {
      consultation_id: Number(row.dataset.consultationId),
      specialist_user_id: Number(select.value),
    });
    button.disabled = false;
    result.hidden = false;
    result.classList.toggle("error", !ack.ok);
    const error = (ack.error && ack.error.message) || "";
    result.textContent = ack.ok ? t("q_handed", { name: ack.offer.specialist_name }) : error;
    refreshSoon();
  });

  socket.on("connect", () => load().catch((err) => warn("queue:", err)));
  socket.on("pairing.status", refreshSoon);
  socket.on("presence.updated", refreshSoon);
  socket.on("pairing.escalated", (msg) => {
    if (msg && msg.status) alertEscalated(msg.status);
    refreshSoon();
  });
  setInterval(tickWaited, 1000);
  return { load };
}
