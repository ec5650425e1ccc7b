// The teleconference room: the lobby, the agenda with the current case's record summary, notes and a decision
// per case, the participants, the host's controls (admit, move through the agenda, end), and video through the
// SFU. The browser never talks to the SFU: it sends SDP to our socket.io events and the server brokers it.
//
// This entry holds the page's state, the socket and the way into the room (connecting -> closed | lobby |
// inside -> ended), and hands the parts to modules under conference-room/, which share one context (`ctx`):
//   agenda.js     the agenda, the case under discussion and its record summary
//   notes.js      per-case notes; a localStorage outbox keeps them across a dropped link
//   decisions.js  the decision form; saves carry expected_version, a stale one is a conflict to review
//   people.js     participants, the host's lobby and controls
//   media.js      publishing (simulcast or audio only) and subscriptions; tiles.js draws the videos
//   shared.js     English fallback strings, shared timeouts, forThisSession
//
// Protocol: signaling/events.py (docs/signaling.md, conference.*). DOM: web/templates/conference_room.html; every
// element a module uses is looked up here, in `ui`.

import {
  ACK_TIMEOUT_MS,
  childByData,
  createSocket,
  el,
  emitAck,
  formatDateTime,
  formatTime,
  isUnauthenticated,
  loadI18n,
  logUnhandledRejections,
  parseIso,
  warn,
} from "./common.js";
import { createAgenda } from "./conference-room/agenda.js";
import { createDecisions } from "./conference-room/decisions.js";
import { createMedia, sanitizeIceServers } from "./conference-room/media.js";
import { createNotes } from "./conference-room/notes.js";
import { createPeople, participantKey } from "./conference-room/people.js";
import { ENGLISH, TRANSIENT_MS, forThisSession } from "./conference-room/shared.js";

const REENTER_MS = 3000;
const CLOSED_POLL_MS = 60000;
const MAX_TIMER_MS = 6 * 3600 * 1000;
const TERMINAL = new Set(["refused", "ended", "expired", "left", "not_found"]);

logUnhandledRejections();

const root = document.getElementById("conference-room");
if (root) startConference(root);

function readJson(id, fallback) {
  const node = document.getElementById(id);
  try {
    return node ? JSON.parse(node.textContent || "null") ?? fallback : fallback;
  } catch (err) {
    warn(`could not parse #${id}:`, err);
    return fallback;
  }
}

function startConference(root) {
  const t = loadI18n("conference-i18n", ENGLISH);
  const outcomes = new Map(readJson("conference-outcomes", []));
  const specialties = readJson("specialty-names", {});
  const $ = (id) => document.getElementById(id);
  const ui = {
    title: $("cr-title"),
    when: $("cr-when"),
    status: $("cr-status"),
    gate: $("cr-gate"),
    gateText: $("cr-gate-text"),
    gateDetail: $("cr-gate-detail"),
    gateActions: $("cr-gate-actions"),
    inside: $("cr-inside"),
    mediaNote: $("cr-media-note"),
    videos: $("cr-videos"),
    audioOnly: $("cr-audio-only"),
    mute: $("cr-mute"),
    leave: $("cr-leave"),
    hostControls: $("cr-host-controls"),
    end: $("cr-end"),
    endBox: $("cr-end-confirm-box"),
    endConfirm: $("cr-end-confirm"),
    endCancel: $("cr-end-cancel"),
    caseTitle: $("cr-case-title"),
    casePatient: $("cr-case-patient"),
    caseConsultation: $("cr-case-consultation"),
    caseSummary: $("cr-case-summary"),
    vitals: $("cr-vitals"),
    decision: $("cr-decision"),
    decisionForm: $("cr-decision-form"),
    recommendation: $("cr-recommendation"),
    icd10: $("cr-icd10"),
    outcome: $("cr-outcome"),
    decisionSave: $("cr-decision-save"),
    decisionMessage: $("cr-decision-message"),
    notes: $("cr-notes"),
    noteForm: $("cr-note-form"),
    noteText: $("cr-note-text"),
    noteSend: $("cr-note-send"),
    agenda: $("cr-agenda"),
    lobbyCard: $("cr-lobby-card"),
    lobby: $("cr-lobby"),
    participants: $("cr-participants"),
  };

  const state = {
    conferenceId: Number(root.dataset.conferenceId),
    userId: Number(root.dataset.userId),
    role: root.dataset.role || "",
    attendanceUrl: root.dataset.attendanceUrl || "",
    phase: "connecting",
    everConnected: false,
    enterGeneration: 0,
    enterAttempt: 0,
    entering: false,
    held: [], // room events received while conference.enter was on its way
    enterTimer: null,
    statusTimer: null,
    session: null,
    isHost: false,
    iceServers: [],
    cases: new Map(), // item_id -> case (ConferenceCaseOut), notes and decision kept current
    order: [], // item ids by position
    currentPosition: null,
    viewedItem: null,
    participants: new Map(), // "user:facility" -> participant
    lobby: new Map(), // user_id -> lobby entry (host only)
  };
  const socket = createSocket();

  // One context for all the parts. They call each other through it only when events arrive, never while being
  // created, so the order below does not matter. ctx.room: what the modules need of this file.
  const ctx = { root, t, ui, state, socket, outcomes, specialties };
  ctx.room = { enter, announce, announceError, refused, ended, sessionExpired };
  ctx.agenda = createAgenda(ctx);
  ctx.notes = createNotes(ctx);
  ctx.decisions = createDecisions(ctx);
  ctx.people = createPeople(ctx);
  ctx.media = createMedia(ctx);

  // ==========================================================================================================
  // phases: connecting -> closed | lobby | inside -> ended (or refused, expired, left, not_found, error)
  // ==========================================================================================================

  function isTerminal() {
    return TERMINAL.has(state.phase);
  }

  function setPhase(phase) {
    state.phase = phase;
    root.dataset.state = phase;
    document.body.dataset.conferenceState = phase;
    if (ui.gate) ui.gate.hidden = phase === "inside";
    if (ui.inside) ui.inside.hidden = !(phase === "inside" || (phase === "ended" && state.cases.size > 0));
    ctx.people.renderHostControls();
    renderStatus();
  }

  function showGate(text, { detail = null, actions = [] } = {}) {
    if (ui.gateText) ui.gateText.textContent = text;
    if (ui.gateDetail) {
      ui.gateDetail.textContent = detail || "";
      ui.gateDetail.hidden = !detail;
    }
    if (ui.gateActions) {
      ui.gateActions.replaceChildren(...actions);
      ui.gateActions.hidden = actions.length === 0;
    }
  }

  function renderStatus() {
    if (!ui.status) return;
    clearTimeout(state.statusTimer);
    state.statusTimer = null;
    let key = "connected";
    if (!socket.connected) key = state.everConnected ? "reconnecting" : "connecting";
    else if (state.phase === "connecting") key = "entering";
    ui.status.hidden = isTerminal();
    ui.status.textContent = t(key);
    ui.status.dataset.state = key;
  }

  function announce(key, params) {
    if (!ui.status || isTerminal() || !socket.connected) return;
    clearTimeout(state.statusTimer);
    ui.status.textContent = t(key, params);
    state.statusTimer = setTimeout(renderStatus, TRANSIENT_MS);
  }

  function renderHeader() {
    const s = state.session;
    if (!s) return;
    if (ui.title) ui.title.textContent = s.title;
    document.title = `${s.title} · ${document.title.split(" · ").pop()}`;
    if (ui.when) ui.when.textContent = `${formatDateTime(s.starts_at)}–${formatTime(s.ends_at)}`;
  }

  async function enter() {
    if (isTerminal() || !socket.connected) return;
    clearTimeout(state.enterTimer);
    const generation = ++state.enterGeneration;
    const attempt = ++state.enterAttempt;
    state.entering = true;
    let ack;
    try {
      ack = await emitAck(socket, "conference.enter", { conference_id: state.conferenceId }, ACK_TIMEOUT_MS);
      if (generation !== state.enterGeneration || isTerminal()) return;
      if (!ack.ok) {
        enterFailed(ack.error || {});
        return;
      }
      state.isHost = Boolean(ack.is_host);
      if (ack.session) state.session = ack.session;
      renderHeader();
      if (ack.entry === "enter") inside(ack);
      else if (ack.entry === "lobby") inLobby();
      else closed(ack);
    } finally {
      if (attempt === state.enterAttempt) replayHeldEvents(); // a later attempt replays them itself
    }
  }

  // The server puts us in the room's broadcast before it answers conference.enter: what the room says in
  // between (someone entered, published, wrote) is held and replayed once the answer has set the page up.
  function roomEvent(handler) {
    return (msg) => {
      if (state.entering) state.held.push([handler, msg]);
      else handler(msg);
    };
  }

  function replayHeldEvents() {
    state.entering = false;
    const held = state.held.splice(0);
    for (const [handler, msg] of held) {
      try {
        handler(msg);
      } catch (err) {
        warn("room event:", err);
      }
    }
  }

  function enterLater(ms) {
    clearTimeout(state.enterTimer);
    state.enterTimer = setTimeout(() => enter().catch((err) => warn("enter:", err)), Math.min(ms, MAX_TIMER_MS));
  }

  function enterFailed(error) {
    const code = error.code || "internal";
    warn("conference.enter failed:", code, error.message);
    if (code === "unauthenticated") sessionExpired();
    else if (code === "forbidden") refused();
    else if (code === "not_found") {
      setPhase("not_found");
      showGate(t("not_found"));
    } else {
      if (state.phase !== "inside") {
        setPhase("error");
        showGate(t("enter_failed", { message: error.message || code }));
      }
      enterLater(REENTER_MS);
    }
  }

  function retryButton() {
    const button = el("button", { type: "button", id: "cr-retry", text: t("check_again") });
    button.addEventListener("click", () => enter().catch((err) => warn("enter:", err)));
    return button;
  }

  function closed(ack) {
    if (ack.session && ack.session.status === "closed") {
      ended();
      return;
    }
    setPhase("closed");
    if (ack.opens_at) {
      showGate(t("closed_opens", { time: formatDateTime(ack.opens_at) }), { actions: [retryButton()] });
      const opens = parseIso(ack.opens_at);
      const wait = opens ? opens.getTime() - Date.now() + 1000 : CLOSED_POLL_MS;
      // This computer's clock may disagree with the server's: never wait long without asking again.
      enterLater(wait > 0 ? Math.min(wait, CLOSED_POLL_MS * 10) : CLOSED_POLL_MS);
    } else {
      showGate(t("closed_none"), { actions: [retryButton()] });
    }
  }

  function inLobby() {
    setPhase("lobby");
    showGate(t("lobby"), { detail: t("lobby_detail") });
    // The admission is pushed; asking again now and then also notices a session that ended meanwhile.
    enterLater(CLOSED_POLL_MS);
  }

  function refused() {
    stopEverything();
    setPhase("refused");
    showGate(t("refused"));
  }

  function sessionExpired() {
    if (state.phase === "expired") return;
    stopEverything();
    setPhase("expired");
    showGate(t("expired"), { actions: [el("a", { class: "button primary", href: "/login", text: t("login") })] });
    socket.disconnect();
  }

  function ended() {
    if (state.phase === "ended") return;
    stopEverything();
    setPhase("ended");
    const actions = state.isHost
      ? [el("a", { class: "button primary", id: "cr-attendance-link", href: state.attendanceUrl, text: t("attendance") })]
      : [];
    showGate(t("ended"), { actions });
    ctx.notes.failUnsentNotes();
    renderAll();
  }

  function inside(ack) {
    state.session = ack.session;
    state.iceServers = sanitizeIceServers(ack.ice_servers);
    const cases = (Array.isArray(ack.cases) ? ack.cases : []).slice().sort((a, b) => a.position - b.position);
    state.cases = new Map(cases.map((c) => [c.item_id, c]));
    state.order = cases.map((c) => c.item_id);
    state.currentPosition = ack.session.current_position;
    const current = ctx.agenda.caseAt(state.currentPosition);
    if (!state.cases.has(state.viewedItem)) state.viewedItem = current ? current.item_id : state.order[0] ?? null;
    state.participants = new Map((ack.participants || []).map((p) => [participantKey(p), p]));
    state.lobby = new Map((ack.lobby || []).filter((e) => e.status === "waiting").map((e) => [e.user_id, e]));
    setPhase("inside");
    renderAll();
    ctx.notes.dropStaleOutbox();
    ctx.notes.flushOutbox();
    if (!ack.session.media) {
      ctx.media.showMediaNote(t("video_unavailable"));
      ctx.media.stopMedia();
      return;
    }
    ctx.media.startMedia(Array.isArray(ack.publishers) ? ack.publishers : []);
  }

  function stopEverything() {
    clearTimeout(state.enterTimer);
    state.enterGeneration += 1;
    ctx.media.stopMedia();
  }

  function renderAll() {
    ctx.agenda.renderAgenda();
    ctx.agenda.renderCase();
    ctx.people.renderParticipants();
    ctx.people.renderLobby();
    ctx.people.renderHostControls();
  }

  function announceError(error) {
    const message = (error && (error.message || error.code)) || "error";
    if (error && error.code === "unauthenticated") sessionExpired();
    else if (ui.status) {
      clearTimeout(state.statusTimer);
      ui.status.textContent = message;
      state.statusTimer = setTimeout(renderStatus, TRANSIENT_MS);
    }
  }

  async function leave() {
    const session = state.session;
    stopEverything();
    setPhase("left");
    if (session && socket.connected) await emitAck(socket, "conference.leave", { session_id: session.id }, 2000);
    socket.disconnect();
    window.location.assign("/conferences");
  }

  // ==========================================================================================================
  // wiring
  // ==========================================================================================================

  if (ui.leave) ui.leave.addEventListener("click", () => leave().catch((err) => warn("leave:", err)));

  socket.on("connect", () => {
    state.everConnected = true;
    renderStatus();
    enter().catch((err) => warn("enter:", err));
  });
  socket.on("disconnect", (reason) => {
    // The server lets go of our SFU handles and our place in the room: both are taken again on reconnect.
    state.enterGeneration += 1;
    state.entering = false;
    state.held = [];
    ctx.media.disconnected();
    renderStatus();
    if (reason === "io server disconnect" && !isTerminal()) {
      setTimeout(() => {
        if (!socket.connected && !isTerminal()) socket.connect();
      }, REENTER_MS);
    }
  });
  socket.on("connect_error", (err) => {
    if (isUnauthenticated(err)) {
      sessionExpired();
      return;
    }
    warn("socket connect error:", err && err.message);
    renderStatus();
    if (!socket.active && !isTerminal()) {
      setTimeout(() => {
        if (!socket.connected && !isTerminal()) socket.connect();
      }, REENTER_MS);
    }
  });
  socket.on("session.expired", () => sessionExpired());
  socket.on("conference.entered", roomEvent(ctx.people.onEntered));
  socket.on("conference.left", roomEvent(ctx.people.onLeft));
  socket.on("conference.published", roomEvent(ctx.media.onPublished));
  socket.on("conference.unpublished", roomEvent(ctx.media.onUnpublished));
  socket.on("conference.knock", roomEvent(ctx.people.onKnock));
  socket.on("conference.admission", roomEvent(ctx.people.onAdmission));
  socket.on("conference.case", roomEvent(ctx.agenda.onCaseChanged));
  socket.on("conference.note_added", roomEvent((msg) => ctx.notes.acceptSavedNote(msg && msg.note)));
  socket.on("conference.decided", roomEvent(ctx.decisions.onDecided));
  socket.on("conference.ended", roomEvent((msg) => forThisSession(state, msg) && ended()));

  setPhase("connecting");

  // Test and debugging hooks (read-only views of the live state).
  window.teleconsultConference = {
    get phase() {
      return state.phase;
    },
    get sessionId() {
      return state.session ? state.session.id : null;
    },
    get isHost() {
      return state.isHost;
    },
    get publisherId() {
      return ctx.media.publisherId;
    },
    stats() {
      return ctx.media.stats();
    },
    outbox() {
      return ctx.notes.readOutbox();
    },
    tile(publisherId) {
      return childByData(ui.videos, "publisherId", publisherId);
    },
  };
}
