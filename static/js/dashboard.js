// Live dashboards: consultation.updated pushes keep the specialist's open requests, the clinician's
// consultations and the coordinator's table current without reloading. Pairing has its own modules on the
// same socket: the specialist's pager (pager.js), the requester's status (pairing-status.js) and the
// coordinator's hub queue (hub-queue.js). DOM contract: web/templates/dashboard_*.html.

import {
  childByData,
  createSocket,
  formatDateTime,
  formatTime,
  isUnauthenticated,
  loadI18n,
  logUnhandledRejections,
  parseIso,
  warn,
} from "./common.js";
import { attachHubQueue } from "./hub-queue.js";
import { attachPager } from "./pager.js";
import { attachPairingStatus } from "./pairing-status.js";

const ENGLISH = {
  status_requested: "Waiting for a specialist",
  status_offered: "Offered to a specialist",
  status_accepted: "Accepted",
  status_in_progress: "In progress",
  status_completed: "Completed",
  status_cancelled: "Cancelled",
  status_expired: "Expired",
  urgency_emergency: "Emergency",
  urgency_urgent: "Urgent",
  urgency_routine: "Routine",
  taken_by: "Taken by {name}",
  taken: "Taken",
  accept: "Accept",
  live: "Live",
  offline: "Offline — reconnecting",
  years: "{age} y",
  sex_male: "Male",
  sex_female: "Female",
  sex_other: "Other",
  enter_room: "Enter room",
};

const OPEN_STATUSES = new Set(["requested", "offered"]);
const CLOSED_FOR_OTHERS = new Set(["accepted", "in_progress", "cancelled", "expired", "completed"]);
const URGENCY_RANK = { emergency: 0, urgent: 1, routine: 2 };
const TAKEN_REMOVE_MS = 10000;

logUnhandledRejections();

const root = document.getElementById("dashboard");
if (root) {
  startDashboard(root);
}

function startDashboard(root) {
  const t = loadI18n("dashboard-i18n", ENGLISH);
  const role = root.dataset.role || "";
  const specialty = root.dataset.specialty || "";
  const openList = document.getElementById("open-requests");
  const noRequests = document.getElementById("no-requests");
  const template = document.getElementById("request-template");
  const live = document.getElementById("live-indicator");
  const removalTimers = new Map(); // consultation id -> timeout

  const statusLabel = (status) => {
    const label = t(`status_${status}`);
    return label === `status_${status}` ? status : label;
  };
  const urgencyLabel = (urgency) => t(`urgency_${urgency}`);
  const sexLabel = (sex) => (["male", "female"].includes(sex) ? t(`sex_${sex}`) : t("sex_other"));

  // ---- live indicator ---------------------------------------------------------------------------------------

  function setLive(isLive) {
    if (!live) return;
    live.textContent = isLive ? t("live") : t("offline");
    live.classList.toggle("is-live", isLive);
    live.dataset.state = isLive ? "live" : "offline";
  }

  // ---- specialist: open requests ----------------------------------------------------------------------------

  function requestItems() {
    return openList ? [...openList.children].filter((li) => li.classList.contains("request")) : [];
  }

  function updateEmptyState() {
    if (noRequests) noRequests.hidden = requestItems().length > 0;
  }

  function createdAtOf(li) {
    if (li.dataset.createdAt) return parseIso(li.dataset.createdAt);
    const time = li.querySelector(".req-time");
    return time ? parseIso(time.getAttribute("datetime")) : null;
  }

  /** Emergency before urgent before routine; within one urgency, the longest waiting first. */
  function comesBefore(a, b) {
    const ra = URGENCY_RANK[a.dataset.urgency] ?? 3;
    const rb = URGENCY_RANK[b.dataset.urgency] ?? 3;
    if (ra !== rb) return ra < rb;
    const ta = createdAtOf(a);
    const tb = createdAtOf(b);
    if (!ta || !tb) return false; // unknown age: keep the server's order, newcomers last
    if (ta.getTime() !== tb.getTime()) return ta < tb;
    return Number(a.dataset.consultationId) < Number(b.dataset.consultationId);
  }

  function placeRequest(li) {
    const others = requestItems().filter((other) => other !== li);
    const next = others.find((other) => comesBefore(li, other));
    if (next) openList.insertBefore(li, next);
    else if (li.parentNode !== openList || li !== openList.lastElementChild) openList.append(li);
  }

  function fillRequest(li, c) {
    li.dataset.consultationId = String(c.id);
    li.dataset.urgency = c.urgency;
    li.dataset.status = c.status;
    if (c.created_at) li.dataset.createdAt = c.created_at;
    for (const cls of [...li.classList]) if (cls.startsWith("urgency-")) li.classList.remove(cls);
    li.classList.add(`urgency-${c.urgency}`);
    const set = (selector, text) => {
      const node = li.querySelector(selector);
      if (node) node.textContent = text;
      return node;
    };
    const urgency = set(".req-urgency", urgencyLabel(c.urgency));
    if (urgency) urgency.dataset.urgency = c.urgency;
    set(".req-patient", [c.patient_name, t("years", { age: c.patient_age }), sexLabel(c.patient_sex)].join(" · "));
    set(".req-facility", [c.facility_name, c.requested_by_name].filter(Boolean).join(" · "));
    set(".req-summary", c.summary || "");
    const time = set(".req-time", formatDateTime(c.created_at));
    if (time && c.created_at) time.setAttribute("datetime", c.created_at);
    set(".req-status", statusLabel(c.status));
    const form = li.querySelector("form.req-accept");
    if (form) form.setAttribute("action", `/consultations/${encodeURIComponent(c.id)}/accept`);
    const button = li.querySelector(".btn-accept");
    if (button) {
      if (!button.textContent.trim()) button.textContent = t("accept");
      button.disabled = false;
    }
  }

  function newRequestItem() {
    if (template && template.content) {
      const li = template.content.querySelector("li");
      if (li) return document.importNode(li, true);
    }
    const li = document.createElement("li");
    li.className = "request";
    return li;
  }

  function upsertRequest(c) {
    if (!openList) return;
    let li = childByData(openList, "consultationId", c.id);
    const isNew = !li;
    if (li) {
      // Back to open (e.g. the specialist who took it declined): undo "taken".
      clearTimeout(removalTimers.get(c.id));
      removalTimers.delete(c.id);
      li.classList.remove("taken");
    } else {
      li = newRequestItem();
      li.classList.add("request");
    }
    fillRequest(li, c);
    placeRequest(li);
    if (isNew) {
      li.classList.add("is-new");
      setTimeout(() => li.classList.remove("is-new"), 1500);
    }
    updateEmptyState();
  }

  function markTaken(c) {
    if (!openList) return;
    const li = childByData(openList, "consultationId", c.id);
    if (!li) return;
    li.classList.add("taken");
    li.dataset.status = c.status;
    const status = li.querySelector(".req-status");
    if (status) {
      const byName = c.specialist_name && ["accepted", "in_progress", "completed"].includes(c.status);
      status.textContent = byName ? t("taken_by", { name: c.specialist_name }) : statusLabel(c.status);
    }
    const button = li.querySelector(".btn-accept");
    if (button) button.disabled = true;
    clearTimeout(removalTimers.get(c.id));
    removalTimers.set(
      c.id,
      setTimeout(() => {
        removalTimers.delete(c.id);
        if (li.classList.contains("taken")) li.remove();
        updateEmptyState();
      }, TAKEN_REMOVE_MS),
    );
  }

  // One click is enough: a double click must not post the accept twice.
  if (openList) {
    openList.addEventListener("submit", (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.classList.contains("req-accept")) return;
      const li = form.closest("li");
      if (form.dataset.submitting === "1" || (li && li.classList.contains("taken"))) {
        event.preventDefault();
        return;
      }
      form.dataset.submitting = "1";
      form.setAttribute("aria-busy", "true");
    });
  }

  // ---- clinician / specialist "mine" list and coordinator table --------------------------------------------

  function updateRow(container, c) {
    if (!container) return;
    const row = childByData(container, "consultationId", c.id);
    if (!row) return;
    const changed = row.dataset.status !== c.status;
    row.dataset.status = c.status;
    const status = row.querySelector(".req-status");
    if (status) status.textContent = statusLabel(c.status);
    const specialist = row.querySelector(".req-specialist");
    if (specialist && c.specialist_name) specialist.textContent = c.specialist_name;
    if (changed) {
      row.classList.remove("status-changed");
      void row.offsetWidth; // restart the highlight animation
      row.classList.add("status-changed");
    }
  }

  // ---- events -----------------------------------------------------------------------------------------------

  function onConsultationUpdated(msg) {
    const c = msg && msg.consultation;
    if (!c || c.id == null || !c.status) return;
    if (role === "specialist" && openList && (!specialty || c.specialty === specialty)) {
      if (OPEN_STATUSES.has(c.status)) upsertRequest(c);
      else if (CLOSED_FOR_OTHERS.has(c.status)) markTaken(c);
    }
    updateRow(document.getElementById("my-consultations"), c);
    updateRow(document.getElementById("active-consultations"), c);
  }

  // Times rendered by the server use its locale; show every request time the same way once we run.
  for (const li of requestItems()) {
    const time = li.querySelector(".req-time[datetime]");
    if (time && !time.textContent.trim()) time.textContent = formatTime(time.getAttribute("datetime"));
  }
  updateEmptyState();
  setLive(false);

  const socket = createSocket();
  socket.on("connect", () => {
    setLive(true);
    document.body.dataset.dashboardReady = "1";
  });
  socket.on("disconnect", (reason) => {
    setLive(false);
    if (reason === "io server disconnect") {
      setTimeout(() => {
        if (!socket.connected) socket.connect();
      }, 3000);
    }
  });
  socket.on("connect_error", (err) => {
    setLive(false);
    if (isUnauthenticated(err)) {
      sessionExpired();
      return;
    }
    if (!socket.active) {
      setTimeout(() => {
        if (!socket.connected) socket.connect();
      }, 5000);
    }
  });
  socket.on("consultation.updated", onConsultationUpdated);
  socket.on("session.expired", sessionExpired);
  if (role === "specialist") attachPager({ socket, root });
  if (role === "clinician") {
    attachPairingStatus({ socket, container: document.getElementById("my-consultations"), addNew: true });
  }
  if (role === "coordinator") attachHubQueue({ socket });

  // A specialist on call must not sit in front of a dashboard that silently stopped updating.
  function sessionExpired() {
    warn("dashboard: session expired");
    setLive(false);
    socket.disconnect();
    window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
  }
}
