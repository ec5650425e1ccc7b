// Text shared by the pairing views (specialist pager, requester status, coordinator queue). Translations come
// from `<script type="application/json" id="pairing-i18n">` (web/templates/pairing_i18n.html); the English
// below is the fallback. Specialty names come from `#specialty-names`.

import { loadI18n, warn } from "./common.js";

export const ENGLISH = {
  urgency_emergency: "Emergency",
  urgency_urgent: "Urgent",
  urgency_routine: "Routine",
  sex_male: "Male",
  sex_female: "Female",
  sex_other: "Other",
  years: "{age} y",
  enter_room: "Enter room",
  status_accepted: "Accepted",
  status_in_progress: "In progress",
  status_completed: "Completed",
  status_cancelled: "Cancelled",
  status_expired: "Expired",
  // specialist: availability and the ringing card
  presence_available: "Available",
  presence_busy: "Busy",
  presence_away: "Away",
  presence_is_available: "You are available: requests for your specialty ring here.",
  presence_is_busy: "You are busy: no new request will ring.",
  presence_is_away: "You are away: no new request will ring.",
  presence_not_on_call: "You are not on call now: requests ring only during your shifts.",
  presence_in_consultation: "You are in a consultation: new requests wait until it ends.",
  presence_error: "Could not change your availability: {message}",
  ring_title: "Consultation request",
  ring_handed: "Handed to you by {name}",
  ring_left: "{time} left to answer",
  ring_accept: "Accept",
  ring_decline: "Decline",
  ring_decline_reason: "Reason for declining",
  ring_choose_reason: "Choose a reason",
  reason_emergency: "In another emergency",
  reason_expertise: "Outside my expertise",
  reason_connection: "Unable to connect well",
  reason_other: "Other",
  reason_other_text: "Say why",
  ring_decline_send: "Decline the request",
  ring_back: "Back",
  ring_accepting: "Accepting…",
  ring_error: "Not sent: {message}",
  ring_closed_taken: "Taken by another specialist",
  ring_closed_expired: "Not answered in time: offered to the next specialist",
  ring_closed_withdrawn: "Withdrawn: the request was cancelled or handed to another specialist",
  ring_closed_declined: "You declined this request",
  ring_closed_accepted: "Accepted",
  ring_closed_gone: "No longer ringing for you",
  ring_dismiss: "Dismiss",
  notify_title: "Consultation request: {specialty}",
  notify_body: "{urgency} · {facility}",
  sound_enable: "Enable sound & notifications",
  sound_on: "Sound and notifications on",
  sound_on_notifications_blocked: "Sound on; notifications are blocked in this browser",
  // requester: pairing status
  ps_queued: "Queued (position {n})",
  ps_queued_plain: "Queued",
  ps_offered: "Offered to {names}",
  ps_offer: "{name} ({specialty}, {hub})",
  ps_escalated: "Escalated: no specialist available now; the coordinator has been alerted",
  ps_accepted: "Accepted by {name} — joining",
  ps_in_progress: "In consultation with {name}",
  ps_waited: "Waited {time}",
  ps_raise_to: "Raise to {urgency}",
  ps_raise_error: "Could not raise the urgency: {message}",
  // coordinator: hub queue
  q_ringing: "Ringing: {names}",
  q_escalated: "Escalated: nobody available",
  q_accepted: "Accepted by {name}",
  q_choose: "Hand to…",
  q_hand: "Hand over",
  q_handed: "Ringing {name}",
  q_no_one: "No specialist of this specialty at this hub",
  q_alert: "Case #{id} ({specialty}) was escalated: nobody is available for it.",
  st_available: "Available",
  st_not_on_call: "Not on call",
  st_offline: "Offline",
  st_away: "Away",
  st_busy: "Busy",
  st_in_consultation: "In consultation",
  st_ringing: "Ringing",
};

export const URGENCY_ORDER = ["routine", "urgent", "emergency"];

export function loadPairingText() {
  const t = loadI18n("pairing-i18n", ENGLISH);
  let names = {};
  const node = document.getElementById("specialty-names");
  if (node) {
    try {
      names = JSON.parse(node.textContent || "{}") || {};
    } catch (err) {
      warn("could not parse #specialty-names:", err);
    }
  }
  const text = (key, params) => t(key, params);
  text.specialty = (code) => (code && typeof names[code] === "string" ? names[code] : code || "");
  text.urgency = (urgency) => t(`urgency_${urgency}`);
  text.sex = (sex) => (["male", "female"].includes(sex) ? t(`sex_${sex}`) : t("sex_other"));
  return text;
}

/** mm:ss, or h:mm:ss past an hour. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

/** A human label of where a request stands, for requesters and coordinators. */
export function pairingStateText(t, status) {
  const offers = Array.isArray(status.offers) ? status.offers : [];
  switch (status.state) {
    case "queued":
      return status.queue_position ? t("ps_queued", { n: status.queue_position }) : t("ps_queued_plain");
    case "offered":
      return t("ps_offered", {
        names: offers
          .map((o) => t("ps_offer", { name: o.specialist_name, specialty: t.specialty(o.specialty), hub: o.hub_name }))
          .join("; "),
      });
    case "escalated":
      return t("ps_escalated");
    case "accepted":
      return t("ps_accepted", { name: status.specialist_name || "" });
    case "in_progress":
      return t("ps_in_progress", { name: status.specialist_name || "" });
    default:
      return t(`status_${status.state}`);
  }
}

export const WAITING_STATES = new Set(["queued", "offered", "escalated"]);
