// The specialist's pager: the availability toggle, and the ringing card when a request is offered to them
// (countdown to the deadline, ring sound, desktop notification, accept, decline with a reason).
// Protocol: signaling/events.py (pairing.offer, pairing.offer_closed, pairing.offers, pairing.accept,
// pairing.decline, presence.set, presence.updated). DOM contract: web/templates/dashboard_specialist.html.

import { el, emitAck, parseIso, warn } from "./common.js";
import { formatDuration, loadPairingText } from "./pairing-text.js";
import { createSound, unlockOnFirstGesture, wireSoundButton } from "./sound.js";

const CLOSED_CARD_MS = 20000;
const RESYNC_AFTER_DEADLINE_MS = 5000;
const REASONS = ["emergency", "expertise", "connection", "other"];
const CLOSED_REASONS = new Set(["taken", "expired", "withdrawn", "declined", "accepted"]);

export function attachPager({ socket, root }) {
  const t = loadPairingText();
  const userId = Number(root.dataset.userId);
  const list = document.getElementById("pager");
  const presenceBox = document.getElementById("presence");
  const sound = createSound();
  const cards = new Map(); // offer id -> {offer, consultation, node, notification, closed}
  let presence = readInitialPresence();

  unlockOnFirstGesture(sound);
  wireSoundButton(document.getElementById("sound-enable"), sound, t);
  sound.onChange(() => {
    if (list) list.dataset.sound = sound.ringing ? "ringing" : "idle";
  });

  // ---- availability ----------------------------------------------------------------------------------------

  function readInitialPresence() {
    if (!presenceBox) return null;
    const d = presenceBox.dataset;
    return {
      availability: d.availability || "available",
      on_call: d.onCall === "1",
      in_consultation: d.inConsultation === "1",
    };
  }

  function renderPresence(error) {
    if (!presenceBox || !presence) return;
    presenceBox.dataset.availability = presence.availability;
    for (const button of presenceBox.querySelectorAll("button[data-availability]")) {
      button.setAttribute("aria-pressed", button.dataset.availability === presence.availability ? "true" : "false");
    }
    const note = document.getElementById("presence-state");
    if (note) {
      let text = t(`presence_is_${presence.availability}`);
      if (presence.in_consultation) text = t("presence_in_consultation");
      else if (!presence.on_call && presence.availability === "available") text = t("presence_not_on_call");
      note.textContent = text;
    }
    const err = document.getElementById("presence-error");
    if (err) {
      err.textContent = error || "";
      err.hidden = !error;
    }
  }

  async function setAvailability(availability) {
    const ack = await emitAck(socket, "presence.set", { availability });
    if (ack.ok && ack.presence) {
      presence = ack.presence;
      renderPresence();
    } else {
      renderPresence(t("presence_error", { message: (ack.error && ack.error.message) || "" }));
    }
  }

  if (presenceBox) {
    presenceBox.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-availability]");
      if (button) setAvailability(button.dataset.availability);
    });
  }

  socket.on("presence.updated", (msg) => {
    const p = msg && msg.presence;
    if (!p || Number(p.user_id) !== userId) return;
    presence = p;
    renderPresence();
  });

  // ---- the ringing card ------------------------------------------------------------------------------------

  function remainingSeconds(entry) {
    const deadline = parseIso(entry.offer.deadline_at);
    const offered = parseIso(entry.offer.offered_at);
    if (!deadline) return 0;
    let left = (deadline.getTime() - Date.now()) / 1000;
    // A browser clock running behind the server's must not show more time than the offer ever had.
    if (offered) left = Math.min(left, (deadline.getTime() - offered.getTime()) / 1000);
    return Math.max(0, left);
  }

  function buildCard(offer, c) {
    const reasonSelect = el(
      "select",
      { class: "ring-reason", required: true, "aria-label": t("ring_decline_reason") },
      el("option", { value: "", text: t("ring_choose_reason") }),
      ...REASONS.map((r) => el("option", { value: r, text: t(`reason_${r}`) })),
    );
    const otherText = el("input", {
      class: "ring-reason-other",
      type: "text",
      maxlength: "400",
      placeholder: t("reason_other_text"),
      "aria-label": t("reason_other_text"),
      hidden: true,
    });
    const declineForm = el(
      "form",
      { class: "ring-decline", hidden: true },
      el("label", { text: t("ring_decline_reason") }, reasonSelect),
      otherText,
      el(
        "div",
        { class: "ring-actions" },
        el("button", { type: "submit", class: "danger ring-decline-send", text: t("ring_decline_send") }),
        el("button", { type: "button", class: "ring-back", text: t("ring_back") }),
      ),
    );
    const age = [t("years", { age: c.patient_age }), t.sex(c.patient_sex)].join(" · ");
    const card = el(
      "article",
      {
        class: `ring-card urgency-${c.urgency}`,
        role: "alertdialog",
        "aria-label": t("ring_title"),
        "aria-live": "assertive",
        dataset: { offerId: String(offer.id), consultationId: String(c.id), urgency: c.urgency, state: "ringing" },
      },
      el(
        "header",
        { class: "ring-head" },
        el("span", { class: `badge urgency-${c.urgency}`, text: t.urgency(c.urgency) }),
        el("strong", { class: "ring-specialty", text: t.specialty(c.specialty) }),
        el("span", { class: "ring-countdown", role: "timer" }),
      ),
      el("p", { class: "ring-patient", text: age }),
      el("p", { class: "ring-facility", text: [c.facility_name, c.requested_by_name].filter(Boolean).join(" · ") }),
      el("p", { class: "ring-summary", text: c.summary || "" }),
      offer.handed_by_name
        ? el("p", { class: "ring-handed", text: t("ring_handed", { name: offer.handed_by_name }) })
        : null,
      el(
        "div",
        { class: "ring-actions ring-main" },
        el("button", { type: "button", class: "primary ring-accept", text: t("ring_accept") }),
        el("button", { type: "button", class: "ring-decline-open", text: t("ring_decline") }),
      ),
      declineForm,
      el("p", { class: "ring-message", role: "status" }),
      el("button", { type: "button", class: "ring-dismiss", text: t("ring_dismiss"), hidden: true }),
    );
    reasonSelect.addEventListener("change", () => {
      otherText.hidden = reasonSelect.value !== "other";
      otherText.required = reasonSelect.value === "other";
    });
    return card;
  }

  function show(offer, consultation) {
    if (!list || !offer || !consultation) return;
    const known = cards.get(offer.id);
    if (known && !known.closed) {
      known.offer = offer; // a raised urgency shortens the deadline
      tick();
      return;
    }
    if (known) known.node.remove();
    const node = buildCard(offer, consultation);
    const entry = { offer, consultation, node, notification: null, closed: null };
    cards.set(offer.id, entry);
    list.prepend(node);
    list.hidden = false;
    notify(entry);
    refreshRinging();
    tick();
  }

  function notify(entry) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const c = entry.consultation;
    try {
      // No patient identity: a notification shows on a lock screen.
      entry.notification = new Notification(t("notify_title", { specialty: t.specialty(c.specialty) }), {
        body: t("notify_body", { urgency: t.urgency(c.urgency), facility: c.facility_name }),
        tag: `offer-${entry.offer.id}`,
        requireInteraction: true,
      });
      entry.notification.onclick = () => {
        window.focus();
        entry.node.scrollIntoView({ block: "center" });
      };
    } catch (err) {
      warn("notification:", err);
    }
  }

  function setMessage(entry, text, isError = false) {
    const message = entry.node.querySelector(".ring-message");
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  function close(entry, reason) {
    if (entry.closed) return;
    entry.closed = reason;
    entry.node.dataset.state = "closed";
    entry.node.dataset.closed = reason;
    entry.node.setAttribute("role", "status");
    for (const button of entry.node.querySelectorAll(".ring-main button, .ring-decline button")) button.disabled = true;
    entry.node.querySelector(".ring-decline").hidden = true;
    entry.node.querySelector(".ring-countdown").textContent = "";
    setMessage(entry, t(`ring_closed_${CLOSED_REASONS.has(reason) ? reason : "gone"}`));
    entry.node.querySelector(".ring-dismiss").hidden = false;
    if (entry.notification) entry.notification.close();
    refreshRinging();
    setTimeout(() => forget(entry), CLOSED_CARD_MS);
  }

  function forget(entry) {
    entry.node.remove();
    if (cards.get(entry.offer.id) === entry) cards.delete(entry.offer.id);
    if (list) list.hidden = cards.size === 0;
  }

  function refreshRinging() {
    const ringing = [...cards.values()].some((e) => !e.closed);
    if (ringing) sound.startRinging();
    else sound.stopRinging();
    if (list) list.dataset.ringing = String([...cards.values()].filter((e) => !e.closed).length);
  }

  async function accept(entry) {
    const button = entry.node.querySelector(".ring-accept");
    if (button.disabled) return;
    button.disabled = true;
    entry.node.dataset.state = "accepting";
    setMessage(entry, t("ring_accepting"));
    const ack = await emitAck(socket, "pairing.accept", { consultation_id: entry.consultation.id });
    if (ack.ok) {
      sound.stopRinging();
      entry.closed = "accepted";
      if (entry.notification) entry.notification.close();
      window.location.assign(`/consultations/${encodeURIComponent(entry.consultation.id)}/room`);
      return;
    }
    if (ack.error && ack.error.code === "conflict") {
      close(entry, "taken");
      return;
    }
    entry.node.dataset.state = "ringing";
    button.disabled = false;
    setMessage(entry, t("ring_error", { message: (ack.error && ack.error.message) || "" }), true);
  }

  async function decline(entry) {
    const form = entry.node.querySelector(".ring-decline");
    const choice = form.querySelector(".ring-reason").value;
    const other = form.querySelector(".ring-reason-other").value.trim();
    const reason = choice === "other" ? other : choice ? t(`reason_${choice}`) : "";
    if (!reason) {
      (choice === "other" ? form.querySelector(".ring-reason-other") : form.querySelector(".ring-reason")).focus();
      return;
    }
    const send = form.querySelector(".ring-decline-send");
    send.disabled = true;
    const ack = await emitAck(socket, "pairing.decline", { offer_id: entry.offer.id, reason });
    if (ack.ok) {
      close(entry, "declined");
    } else if (ack.error && ack.error.code === "conflict") {
      close(entry, "gone");
    } else {
      send.disabled = false;
      setMessage(entry, t("ring_error", { message: (ack.error && ack.error.message) || "" }), true);
    }
  }

  function entryOf(node) {
    const card = node.closest(".ring-card");
    return card ? cards.get(Number(card.dataset.offerId)) : null;
  }

  if (list) {
    list.addEventListener("click", (event) => {
      const entry = entryOf(event.target);
      if (!entry) return;
      const target = event.target.closest("button");
      if (!target) return;
      if (target.classList.contains("ring-accept")) accept(entry);
      else if (target.classList.contains("ring-decline-open")) {
        entry.node.querySelector(".ring-decline").hidden = false;
        entry.node.querySelector(".ring-reason").focus();
      } else if (target.classList.contains("ring-back")) entry.node.querySelector(".ring-decline").hidden = true;
      else if (target.classList.contains("ring-dismiss")) forget(entry);
    });
    list.addEventListener("submit", (event) => {
      event.preventDefault();
      const entry = entryOf(event.target);
      if (entry && !entry.closed) decline(entry);
    });
  }

  // ---- countdown and resync --------------------------------------------------------------------------------

  let resyncAt = 0;

  function tick() {
    let overdue = false;
    for (const entry of cards.values()) {
      if (entry.closed) continue;
      const left = remainingSeconds(entry);
      const countdown = entry.node.querySelector(".ring-countdown");
      countdown.textContent = t("ring_left", { time: formatDuration(Math.ceil(left)) });
      entry.node.classList.toggle("ring-soon", left <= 10);
      if (left <= 0) overdue = true;
    }
    // The server closes an offer at its deadline; if that push was lost, ask again.
    if (overdue && Date.now() > resyncAt) {
      resyncAt = Date.now() + RESYNC_AFTER_DEADLINE_MS;
      setTimeout(() => sync(), RESYNC_AFTER_DEADLINE_MS);
    }
  }
  setInterval(tick, 1000);

  /** What rings for me now, after every (re)connect: nothing is missed after a reload or a dropped link. */
  async function sync() {
    const ack = await emitAck(socket, "pairing.offers", {});
    if (!ack.ok) {
      warn("pairing.offers:", ack.error);
      return;
    }
    const ringing = new Set();
    for (const ring of ack.offers || []) {
      ringing.add(ring.offer.id);
      show(ring.offer, ring.consultation);
    }
    for (const entry of cards.values()) {
      if (!entry.closed && !ringing.has(entry.offer.id)) close(entry, "gone");
    }
    document.body.dataset.pagerReady = "1";
  }

  socket.on("connect", () => {
    sync().catch((err) => warn("pager sync:", err));
  });
  socket.on("pairing.offer", (msg) => {
    if (msg && msg.offer && Number(msg.offer.specialist_user_id) === userId) show(msg.offer, msg.consultation);
  });
  socket.on("pairing.offer_closed", (msg) => {
    const entry = msg && msg.offer ? cards.get(msg.offer.id) : null;
    if (entry) close(entry, msg.offer.status);
  });

  renderPresence();
  window.teleconsultPager = {
    get ringing() {
      return [...cards.values()].filter((e) => !e.closed).map((e) => e.offer.id);
    },
    get soundRinging() {
      return sound.ringing;
    },
    get soundEnabled() {
      return sound.enabled;
    },
  };
}
