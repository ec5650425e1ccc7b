// The teleconference room: the lobby, the agenda with the current case's record summary, notes and a decision
// per case, the participants, the host's controls (admit, move through the agenda, end), and video through the
// SFU. The browser never talks to the SFU: it sends SDP to our socket.io events and the server brokers it.
//
// Media: one upload per site (VP8 with three simulcast layers, or audio only on a weak link) and one download
// connection per subscription (the others who publish). No trickle ICE: candidates are gathered completely
// before an SDP leaves the browser. Notes survive a dropped link (localStorage outbox, resent after every
// re-entry); decisions carry the version they were based on and a stale one is refused (`conflict`).
//
// Protocol: signaling/events.py (docs/signaling.md, conference.*). DOM: web/templates/conference_room.html.

import {
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
  withTimeout,
} from "./common.js";

const ENGLISH = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Connection lost — reconnecting…",
  entering: "Entering the room…",
  closed_opens: "The room opens at {time} (Vietnam time).",
  closed_none: "No session of this teleconference is coming up.",
  check_again: "Check again",
  mute: "Mute",
  unmute: "Unmute",
  lobby: "Waiting for the host to admit you…",
  lobby_detail: "The host has been told that you are waiting; you enter as soon as you are admitted.",
  refused: "The host did not admit you to this session.",
  not_found: "This teleconference was not found.",
  ended: "The session has ended.",
  attendance: "Attendance and decisions",
  expired: "Your session has expired; please log in again.",
  login: "Log in",
  enter_failed: "Could not enter the room: {message}",
  you: "you",
  audio_only: "Audio only",
  video_unavailable: "Video is not available for this session; the agenda, notes and decisions still work.",
  media_denied: "Camera or microphone unavailable — you can still see, hear and write notes.",
  video_failed: "Your camera could not be sent to the others: {message}",
  sound_blocked: "Click anywhere on the page to turn the sound on.",
  joined: "{name} joined",
  left: "{name} left",
  knocked: "{name} is waiting in the lobby",
  lobby_empty: "Nobody is waiting.",
  lobby_since: "waiting since {time}",
  admit: "Admit",
  refuse: "Refuse",
  no_cases: "No cases on the agenda.",
  case_number: "Case {n}",
  patient_line: "{name}, {age} y, {sex}",
  presenter: "Presenter: {name}",
  now_discussing: "Now discussing",
  discuss_now: "Discuss now",
  view: "View",
  sex_male: "male",
  sex_female: "female",
  sex_other: "other",
  no_consultation: "Not linked to a consultation.",
  vitals_none: "No vital signs recorded.",
  notes_none: "No notes on this case yet.",
  note_pending: "Not yet saved — will be sent when the connection returns",
  note_saved: "Saved",
  note_failed: "Not saved",
  decision_none: "No decision yet.",
  decision_by: "Decided by {name}, {time}",
  decision_saved: "Saved",
  decision_saving: "Saving…",
  decision_conflict: "{name} changed this decision meanwhile (shown above). Review it, then save again.",
  decision_changed: "{name} has just changed this decision (shown above); review it before saving yours.",
  decision_failed: "Not saved: {message}",
  icd10_invalid: "Enter an ICD-10 code, for example I21.4.",
  recommendation_empty: "Write the recommendation.",
  decision_not_allowed: "Decisions are recorded by the host or a specialist in the room.",
};

const ACK_MS = 10000;
const MEDIA_ACK_MS = 30000; // the server waits on the SFU for these
const MEDIA_PROMPT_MS = 20000; // a person may be reading the camera permission prompt
const ICE_GATHER_MS = 5000;
const REENTER_MS = 3000;
const RETRY_NOTE_MS = 5000;
const RESUBSCRIBE_MS = 2000;
const MAX_SUBSCRIBE_TRIES = 3;
const TRANSIENT_MS = 4000;
const CLOSED_POLL_MS = 60000;
const MAX_TIMER_MS = 6 * 3600 * 1000;
// 960x540 is the smallest picture for which browsers send all three simulcast layers (below it, two).
const VIDEO = { width: { ideal: 960 }, height: { ideal: 540 }, frameRate: { ideal: 15, max: 15 } };
// Three VP8 layers (full, half, quarter size) with caps; a weak site asks the SFU for layer 0, the quarter.
// Listed high to low: Janus reads the SDP's rids in that order unless told otherwise (its JSEP "rid_order").
const SIMULCAST = [
  { rid: "h", maxBitrate: 900000 },
  { rid: "m", scaleResolutionDownBy: 2, maxBitrate: 300000 },
  { rid: "l", scaleResolutionDownBy: 4, maxBitrate: 100000 },
];
// A note refused for one of these reasons will never be accepted as it is: tell the writer, stop retrying.
const PERMANENT_NOTE_ERRORS = new Set(["invalid", "forbidden", "too_large", "not_found", "conflict"]);
const TERMINAL = new Set(["refused", "ended", "expired", "left", "not_found"]);
const CLIENT_ID_RE = /^[A-Za-z0-9_-]{8,64}$/;
const AUDIO_ONLY_KEY = "tc-conference-audio-only";
// Units as clinicians write them (the server keeps UCUM codes such as mm[Hg] and Cel), as in vitals.js.
const UNIT_TEXT = { hr: "/min", spo2: "%", bp: "mmHg", rr: "/min", temp: "°C" };

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
    drafts: new Map(), // item_id -> {recommendation, icd10, outcome, baseVersion}
    decisionNotice: new Map(), // item_id -> {kind, text}
    failedNotes: new Map(), // client_id -> {item, message}
    savedNotes: new Set(), // client ids confirmed a moment ago ("Saved")
    inflightNotes: new Set(),
    memoryOutbox: null,
    audioOnly: loadAudioOnly(),
    muted: false,
  };
  const media = {
    generation: 0,
    chain: Promise.resolve(),
    local: null, // MediaStream from the camera/microphone, kept across re-entries
    audioRefused: false,
    videoRefused: false,
    upload: null,
    publisherId: null,
    subscriptions: new Map(), // subscription id -> {id, pc, mids: Map(mid -> stream), publishers: Set}
    subscribed: new Set(), // publisher ids subscribed to (or being subscribed to)
    tries: new Map(), // publisher id -> failed subscription attempts
    publishers: new Map(), // publisher id -> ConferencePublisherOut
    tiles: new Map(), // publisher id -> {figure, video, stream}
    selfTile: null,
    unavailable: false,
  };
  const outboxKey = `tc-conference-outbox-${state.conferenceId}`;
  const socket = createSocket();

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
    renderHostControls();
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
      ack = await emitAck(socket, "conference.enter", { conference_id: state.conferenceId }, ACK_MS);
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
    failUnsentNotes();
    renderAll();
  }

  function inside(ack) {
    state.session = ack.session;
    state.iceServers = sanitizeIceServers(ack.ice_servers);
    const cases = (Array.isArray(ack.cases) ? ack.cases : []).slice().sort((a, b) => a.position - b.position);
    state.cases = new Map(cases.map((c) => [c.item_id, c]));
    state.order = cases.map((c) => c.item_id);
    state.currentPosition = ack.session.current_position;
    const current = caseAt(state.currentPosition);
    if (!state.cases.has(state.viewedItem)) state.viewedItem = current ? current.item_id : state.order[0] ?? null;
    state.participants = new Map((ack.participants || []).map((p) => [participantKey(p), p]));
    state.lobby = new Map((ack.lobby || []).filter((e) => e.status === "waiting").map((e) => [e.user_id, e]));
    setPhase("inside");
    renderAll();
    dropStaleOutbox();
    flushOutbox();
    if (!ack.session.media) {
      showMediaNote(t("video_unavailable"));
      stopMedia();
      return;
    }
    startMedia(Array.isArray(ack.publishers) ? ack.publishers : []);
  }

  function stopEverything() {
    clearTimeout(state.enterTimer);
    state.enterGeneration += 1;
    stopMedia();
  }

  // ==========================================================================================================
  // agenda and the case under discussion
  // ==========================================================================================================

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

  function renderAll() {
    renderAgenda();
    renderCase();
    renderParticipants();
    renderLobby();
    renderHostControls();
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
    saveDraftFromForm();
    state.viewedItem = itemId;
    renderAgenda();
    renderCase();
  }

  async function discuss(itemId) {
    const c = state.cases.get(itemId);
    if (!c || !state.session) return;
    const ack = await emitAck(socket, "conference.case", { session_id: state.session.id, position: c.position }, ACK_MS);
    if (ack.ok) onCaseChanged({ session_id: state.session.id, position: c.position });
    else announceError(ack.error);
  }

  function onCaseChanged(msg) {
    if (!forThisSession(msg)) return;
    state.currentPosition = msg.position;
    const c = caseAt(msg.position);
    if (c && c.item_id !== state.viewedItem) {
      saveDraftFromForm();
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
    renderNotes();
    renderDecision();
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

  // ==========================================================================================================
  // notes: rendered at once, kept in a localStorage outbox until the server confirms them
  // ==========================================================================================================

  // One key per conference; each item carries its writer and session, so on a shared clinic PC one user's unsent
  // notes are never sent under another user's name, nor into another session.
  function readAllOutbox() {
    if (state.memoryOutbox) return state.memoryOutbox.slice();
    try {
      const parsed = JSON.parse(window.localStorage.getItem(outboxKey) || "[]");
      return Array.isArray(parsed)
        ? parsed.filter((i) => i && typeof i.text === "string" && CLIENT_ID_RE.test(i.client_id || ""))
        : [];
    } catch (err) {
      warn("outbox unreadable:", err && err.message);
      return [];
    }
  }

  function readOutbox() {
    return readAllOutbox().filter((i) => i.user_id === state.userId);
  }

  function writeOutbox(items) {
    if (state.memoryOutbox) {
      state.memoryOutbox = items.slice();
      return;
    }
    try {
      if (items.length) window.localStorage.setItem(outboxKey, JSON.stringify(items));
      else window.localStorage.removeItem(outboxKey);
    } catch (err) {
      warn("localStorage unavailable; keeping unsent notes in memory:", err && err.message);
      state.memoryOutbox = items.slice();
    }
  }

  function outboxAdd(item) {
    writeOutbox([...readAllOutbox().filter((i) => i.client_id !== item.client_id), item]);
  }

  function outboxRemove(clientId) {
    const items = readAllOutbox();
    const kept = items.filter((i) => i.client_id !== clientId);
    if (kept.length !== items.length) writeOutbox(kept);
  }

  function newClientId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID().replace(/-/g, "");
    }
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function noteLi({ clientId, noteId, author, createdAt, text, stateText, cls }) {
    return el(
      "li",
      { class: `note ${cls || ""}`.trim(), dataset: { clientId: clientId || "", noteId: noteId ?? "" } },
      el("span", { class: "note-author", text: author }),
      " ",
      el("time", { class: "note-time", datetime: createdAt || "", text: formatTime(createdAt) }),
      stateText ? el("span", { class: "note-state", text: stateText }) : null,
      el("p", { class: "note-text", text }),
    );
  }

  function renderNotes() {
    if (!ui.notes) return;
    const c = viewedCase();
    if (!c) return;
    const saved = (c.notes || []).map((n) =>
      noteLi({
        clientId: n.client_id,
        noteId: String(n.id),
        author: n.author_name,
        createdAt: n.created_at,
        text: n.text,
        stateText: n.author_user_id === state.userId && state.savedNotes.has(n.client_id) ? t("note_saved") : "",
      }),
    );
    const sessionId = state.session ? state.session.id : null;
    const pending = readOutbox()
      .filter((i) => i.agenda_item_id === c.item_id && i.session_id === sessionId)
      .map((i) =>
        noteLi({ clientId: i.client_id, author: t("you"), createdAt: i.created_at, text: i.text, cls: "note-pending", stateText: t("note_pending") }),
      );
    const failed = [...state.failedNotes.values()]
      .filter((f) => f.item.agenda_item_id === c.item_id)
      .map((f) =>
        noteLi({
          clientId: f.item.client_id,
          author: t("you"),
          createdAt: f.item.created_at,
          text: f.item.text,
          cls: "note-failed",
          stateText: f.message ? `${t("note_failed")}: ${f.message}` : t("note_failed"),
        }),
      );
    const items = [...saved, ...pending, ...failed];
    if (!items.length) items.push(el("li", { class: "muted", text: t("notes_none") }));
    ui.notes.replaceChildren(...items);
    ui.notes.scrollTop = ui.notes.scrollHeight;
  }

  function acceptSavedNote(note) {
    if (!note || !forThisSession(note)) return;
    const c = state.cases.get(note.agenda_item_id);
    if (!c) return;
    c.notes = c.notes || [];
    if (!c.notes.some((n) => n.id === note.id)) c.notes.push(note);
    if (note.author_user_id === state.userId) {
      outboxRemove(note.client_id);
      if (!state.savedNotes.has(note.client_id)) {
        state.savedNotes.add(note.client_id);
        setTimeout(() => {
          state.savedNotes.delete(note.client_id);
          if (state.viewedItem === note.agenda_item_id) renderNotes();
        }, TRANSIENT_MS);
      }
    }
    if (state.viewedItem === note.agenda_item_id) renderNotes();
  }

  async function sendNote(item) {
    if (!socket.connected || state.phase !== "inside" || state.inflightNotes.has(item.client_id)) return;
    state.inflightNotes.add(item.client_id);
    let ack;
    try {
      const payload = {
        session_id: item.session_id,
        agenda_item_id: item.agenda_item_id,
        client_id: item.client_id,
        text: item.text,
      };
      ack = await emitAck(socket, "conference.note", payload, ACK_MS);
    } finally {
      state.inflightNotes.delete(item.client_id);
    }
    if (ack.ok) {
      if (ack.note) acceptSavedNote(ack.note);
      else outboxRemove(item.client_id);
      return;
    }
    const code = (ack.error && ack.error.code) || "internal";
    if (code === "unauthenticated") {
      sessionExpired();
      return;
    }
    if (PERMANENT_NOTE_ERRORS.has(code)) {
      outboxRemove(item.client_id);
      state.failedNotes.set(item.client_id, { item, message: ack.error && ack.error.message });
      if (state.viewedItem === item.agenda_item_id) renderNotes();
      return;
    }
    // timeout, disconnected, rate_limited, internal: stays in the outbox; again soon, and after every re-entry.
    setTimeout(() => {
      if (readOutbox().some((i) => i.client_id === item.client_id)) sendNote(item);
    }, RETRY_NOTE_MS);
  }

  function flushOutbox() {
    const sessionId = state.session ? state.session.id : null;
    for (const item of readOutbox()) if (item.session_id === sessionId) sendNote(item);
  }

  function dropStaleOutbox() {
    // Notes written in an earlier session that never reached the server cannot be saved into it any more.
    const sessionId = state.session ? state.session.id : null;
    for (const item of readOutbox()) {
      if (item.session_id !== sessionId) {
        warn("dropping a note of an earlier session that was never sent:", item.client_id);
        outboxRemove(item.client_id);
      }
    }
  }

  function failUnsentNotes() {
    // The session is over: whatever is still unsent stays on screen, marked, so its writer can copy it.
    for (const item of readOutbox()) {
      outboxRemove(item.client_id);
      state.failedNotes.set(item.client_id, { item, message: t("ended") });
    }
  }

  function onNoteSubmit(event) {
    event.preventDefault();
    const c = viewedCase();
    if (!c || !state.session || state.phase !== "inside" || !ui.noteText) return;
    const text = ui.noteText.value.trim();
    if (!text) return;
    const item = {
      client_id: newClientId(),
      session_id: state.session.id,
      agenda_item_id: c.item_id,
      text,
      created_at: new Date().toISOString(),
      user_id: state.userId,
    };
    outboxAdd(item);
    ui.noteText.value = "";
    ui.noteText.focus();
    renderNotes();
    sendNote(item);
  }

  // ==========================================================================================================
  // decisions: saved with the version they were based on; a newer one in between is a conflict to review
  // ==========================================================================================================

  function mayDecide() {
    return state.phase === "inside" && (state.isHost || state.role === "specialist");
  }

  function outcomeLabel(value) {
    return outcomes.get(value) || value;
  }

  function draftOf(c) {
    let draft = state.drafts.get(c.item_id);
    if (!draft) {
      const d = c.decision;
      draft = {
        recommendation: d ? d.recommendation : "",
        icd10: d ? d.icd10 : "",
        outcome: d ? d.outcome : "",
        baseVersion: d ? d.version : 0,
        dirty: false,
      };
      state.drafts.set(c.item_id, draft);
    }
    return draft;
  }

  function saveDraftFromForm() {
    const itemId = ui.decisionForm ? Number(ui.decisionForm.dataset.itemId) : NaN;
    const draft = state.drafts.get(itemId);
    if (!draft || !draft.dirty) return;
    draft.recommendation = ui.recommendation.value;
    draft.icd10 = ui.icd10.value;
    draft.outcome = ui.outcome.value;
  }

  function renderDecision() {
    const c = viewedCase();
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
    const notice = state.decisionNotice.get(c.item_id);
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
    state.decisionNotice.set(itemId, { kind, text });
    setTimeout(() => {
      const notice = state.decisionNotice.get(itemId);
      if (notice && notice.text === text) {
        state.decisionNotice.delete(itemId);
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
      ack = await emitAck(socket, "conference.decide", payload, ACK_MS);
    } finally {
      ui.decisionSave.disabled = false;
    }
    if (ack.ok && ack.decision) {
      keepNewest(c, ack.decision);
      state.drafts.delete(c.item_id);
      transientDecisionNotice(c.item_id, "saved", t("decision_saved"));
    } else if (ack.error && ack.error.code === "conflict") {
      // Someone saved in between: show theirs (above the form) and let the next save be based on it.
      const newest = c.decision;
      if (newest && newest.version > draft.baseVersion) draft.baseVersion = newest.version;
      const name = newest ? newest.decided_by_name : "";
      state.decisionNotice.set(c.item_id, { kind: "conflict", text: t("decision_conflict", { name }) });
    } else {
      state.decisionNotice.set(c.item_id, { kind: "error", text: decisionError(ack.error || {}) });
    }
    if (state.viewedItem === c.item_id) renderDecision();
  }

  function decisionError(error) {
    const message = error.message || error.code || "";
    if (error.code === "unauthenticated") sessionExpired();
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
    if (!decision || !forThisSession(decision)) return;
    const c = state.cases.get(decision.agenda_item_id);
    if (!c) return;
    keepNewest(c, decision);
    const draft = state.drafts.get(c.item_id);
    if (draft) {
      const mine = decision.decided_by_user_id === state.userId && decision.version === draft.baseVersion + 1;
      if (!draft.dirty || mine) state.drafts.delete(c.item_id);
      else if (decision.version > draft.baseVersion) {
        state.decisionNotice.set(c.item_id, {
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

  // ==========================================================================================================
  // participants, the lobby and the host's controls
  // ==========================================================================================================

  function participantKey(p) {
    return `${p.user_id}:${p.facility_id}`;
  }

  function forThisSession(msg) {
    return Boolean(msg && state.session && Number(msg.session_id) === state.session.id);
  }

  function selfName() {
    for (const p of state.participants.values()) if (p.user_id === state.userId) return p.display_name;
    const whoami = document.getElementById("whoami");
    return whoami ? (whoami.textContent || "").split("·")[0].trim() : "";
  }

  function selfSite() {
    for (const p of state.participants.values()) if (p.user_id === state.userId) return p.facility_name;
    return "";
  }

  function renderParticipants() {
    if (!ui.participants) return;
    const people = [...state.participants.values()].sort((a, b) =>
      a.user_id === state.userId ? -1 : b.user_id === state.userId ? 1 : a.display_name.localeCompare(b.display_name),
    );
    ui.participants.replaceChildren(
      ...people.map((p) =>
        el(
          "li",
          { class: p.user_id === state.userId ? "self" : "", dataset: { userId: String(p.user_id) } },
          el("span", { class: "name", text: p.user_id === state.userId ? `${p.display_name} (${t("you")})` : p.display_name }),
          el("span", { class: "site", text: p.facility_name }),
        ),
      ),
    );
  }

  function onEntered(msg) {
    if (!forThisSession(msg) || state.phase !== "inside" || !msg.participant) return;
    const key = participantKey(msg.participant);
    const known = state.participants.has(key);
    state.participants.set(key, msg.participant);
    renderParticipants();
    if (!known) announce("joined", { name: msg.participant.display_name });
  }

  function onLeft(msg) {
    if (!forThisSession(msg) || state.phase !== "inside") return;
    if (Number(msg.user_id) === state.userId) return; // our own earlier connection, replaced by this one
    const key = participantKey(msg);
    const who = state.participants.get(key);
    state.participants.delete(key);
    renderParticipants();
    for (const [publisherId, p] of [...media.publishers]) {
      if (p.user_id === Number(msg.user_id)) removePublisher(publisherId);
    }
    if (who) announce("left", { name: who.display_name });
  }

  function renderLobby() {
    if (!ui.lobbyCard || !ui.lobby) return;
    ui.lobbyCard.hidden = !(state.isHost && state.phase === "inside");
    if (ui.lobbyCard.hidden) return;
    const waiting = [...state.lobby.values()].filter((e) => e.status === "waiting");
    if (!waiting.length) {
      ui.lobby.replaceChildren(el("li", { class: "muted", text: t("lobby_empty") }));
      return;
    }
    ui.lobby.replaceChildren(
      ...waiting.map((e) =>
        el(
          "li",
          { dataset: { userId: String(e.user_id) } },
          el("strong", { text: e.display_name }),
          ` · ${t(`role_${e.role}`)} · ${e.facility_name} · ${t("lobby_since", { time: formatTime(e.asked_at) })}`,
          el(
            "div",
            { class: "cr-lobby-actions" },
            el("button", { type: "button", class: "primary cr-admit", text: t("admit") }),
            el("button", { type: "button", class: "danger cr-refuse", text: t("refuse") }),
          ),
        ),
      ),
    );
  }

  async function onLobbyClick(event) {
    const button = event.target.closest("button.cr-admit, button.cr-refuse");
    const li = event.target.closest("li[data-user-id]");
    if (!button || !li || !state.session) return;
    button.disabled = true;
    const admit = button.classList.contains("cr-admit");
    const payload = { session_id: state.session.id, user_id: Number(li.dataset.userId), admit };
    const ack = await emitAck(socket, "conference.admit", payload, ACK_MS);
    if (ack.ok && ack.admission) onAdmission({ entry: ack.admission });
    else {
      button.disabled = false;
      announceError(ack.error);
    }
  }

  function onKnock(msg) {
    const entry = msg && msg.entry;
    if (!entry || !forThisSession(entry) || !state.isHost) return;
    const known = state.lobby.has(entry.user_id);
    state.lobby.set(entry.user_id, entry);
    renderLobby();
    if (!known) announce("knocked", { name: entry.display_name });
  }

  function onAdmission(msg) {
    const entry = msg && msg.entry;
    if (!entry) return;
    if (entry.user_id === state.userId && state.phase === "lobby") {
      if (entry.status === "admitted") enter().catch((err) => warn("enter:", err));
      else if (entry.status === "refused") refused();
      return;
    }
    if (state.isHost && forThisSession(entry)) {
      if (entry.status === "waiting") state.lobby.set(entry.user_id, entry);
      else state.lobby.delete(entry.user_id);
      renderLobby();
    }
  }

  function renderHostControls() {
    if (ui.hostControls) ui.hostControls.hidden = !(state.isHost && state.phase === "inside");
    if (ui.endBox) ui.endBox.hidden = true;
    if (ui.end) ui.end.hidden = false;
  }

  async function endSession() {
    if (!state.session) return;
    if (ui.endConfirm) ui.endConfirm.disabled = true;
    const ack = await emitAck(socket, "conference.end", { session_id: state.session.id }, MEDIA_ACK_MS);
    if (ui.endConfirm) ui.endConfirm.disabled = false;
    if (ack.ok || (ack.error && ack.error.code === "conflict")) ended();
    else announceError(ack.error);
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
  // media through the SFU
  // ==========================================================================================================

  function loadAudioOnly() {
    try {
      return window.localStorage.getItem(AUDIO_ONLY_KEY) === "1";
    } catch {
      return false;
    }
  }

  function saveAudioOnly(value) {
    try {
      if (value) window.localStorage.setItem(AUDIO_ONLY_KEY, "1");
      else window.localStorage.removeItem(AUDIO_ONLY_KEY);
    } catch {
      /* remembered for this page only */
    }
  }

  function showMediaNote(text) {
    if (!ui.mediaNote) return;
    ui.mediaNote.textContent = text;
    ui.mediaNote.hidden = !text;
  }

  function sanitizeIceServers(list) {
    if (!Array.isArray(list)) return [];
    return list
      .filter((s) => s && s.urls && (typeof s.urls === "string" || Array.isArray(s.urls)))
      .map((s) => {
        const server = { urls: s.urls };
        if (s.username != null) server.username = s.username;
        if (s.credential != null) server.credential = s.credential;
        return server;
      });
  }

  /** Run media steps one after another: the server joins us to the SFU once, then publishes, then subscribes. */
  function queue(step) {
    media.chain = media.chain.then(step).catch((err) => warn("media:", err && err.name, err && err.message));
    return media.chain;
  }

  function startMedia(publishers) {
    const generation = ++media.generation;
    closePeers();
    media.unavailable = false;
    media.publishers = new Map(publishers.map((p) => [p.publisher_id, p]));
    media.tries.clear();
    queue(async () => {
      if (generation !== media.generation) return;
      await acquireLocal();
      renderSelfTile();
      if (generation === media.generation) await publish(generation);
    });
    queue(() => subscribeKnown(generation));
  }

  function restartMedia() {
    if (state.phase !== "inside" || !state.session || !state.session.media || media.unavailable) {
      renderSelfTile();
      return;
    }
    const known = [...media.publishers.values()];
    const sessionId = state.session.id;
    // The server lets go of our SFU handles (upload and downloads); we then publish and subscribe anew.
    queue(() => emitAck(socket, "conference.unpublish", { session_id: sessionId }, MEDIA_ACK_MS));
    startMedia(known);
  }

  function getMedia(constraints) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return Promise.reject(new Error("getUserMedia is not available (insecure origin?)"));
    }
    return withTimeout(navigator.mediaDevices.getUserMedia(constraints), MEDIA_PROMPT_MS, "getUserMedia");
  }

  async function acquireLocal() {
    if (!media.local) media.local = new MediaStream();
    const local = media.local;
    if (state.audioOnly) {
      for (const track of local.getVideoTracks()) {
        track.stop();
        local.removeTrack(track);
      }
    }
    const needAudio = local.getAudioTracks().length === 0 && !media.audioRefused;
    const needVideo = !state.audioOnly && local.getVideoTracks().length === 0 && !media.videoRefused;
    if (!needAudio && !needVideo) return;
    try {
      const stream = await getMedia({ audio: needAudio, video: needVideo ? VIDEO : false });
      for (const track of stream.getTracks()) local.addTrack(track);
    } catch (err) {
      warn("camera/microphone:", err && err.name, err && err.message);
      if (needVideo) media.videoRefused = true;
      if (needAudio && needVideo) {
        try {
          const stream = await getMedia({ audio: true });
          for (const track of stream.getTracks()) local.addTrack(track);
        } catch (err2) {
          warn("microphone:", err2 && err2.name);
          media.audioRefused = true;
        }
      } else if (needAudio) media.audioRefused = true;
      showMediaNote(t("media_denied"));
    }
    for (const track of local.getAudioTracks()) track.enabled = !state.muted;
  }

  function stopLocal() {
    if (!media.local) return;
    for (const track of media.local.getTracks()) track.stop();
    media.local = null;
  }

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    const done = new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
    });
    // Past the deadline, send what was found: host candidates come first and usually suffice.
    return withTimeout(done, ICE_GATHER_MS, "ICE gathering").catch(() => warn("ICE gathering incomplete; sending"));
  }

  function preferVp8(transceiver) {
    if (typeof transceiver.setCodecPreferences !== "function" || !window.RTCRtpSender.getCapabilities) return;
    const caps = window.RTCRtpSender.getCapabilities("video");
    if (!caps) return;
    const vp8 = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "video/vp8");
    const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== "video/vp8");
    try {
      if (vp8.length) transceiver.setCodecPreferences([...vp8, ...rest]);
    } catch (err) {
      warn("setCodecPreferences:", err && err.message);
    }
  }

  async function publish(generation) {
    const local = media.local;
    const audio = local ? local.getAudioTracks()[0] : null;
    const video = local && !state.audioOnly ? local.getVideoTracks()[0] : null;
    if (!audio && !video) return; // nothing to send: receive only
    const pc = new RTCPeerConnection({ iceServers: state.iceServers });
    media.upload = pc;
    if (audio) pc.addTransceiver(audio, { direction: "sendonly", streams: [local] });
    if (video) {
      video.contentHint = "detail"; // on a busy CPU drop frames rather than sharpness (ECG paper, films)
      let transceiver;
      try {
        transceiver = pc.addTransceiver(video, { direction: "sendonly", streams: [local], sendEncodings: SIMULCAST });
      } catch (err) {
        warn("simulcast refused, one layer:", err && err.message);
        transceiver = pc.addTransceiver(video, { direction: "sendonly", streams: [local] });
      }
      preferVp8(transceiver);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (generation !== media.generation) return;
    const ack = await emitAck(
      socket,
      "conference.publish",
      {
        session_id: state.session.id,
        description: { type: "offer", sdp: pc.localDescription.sdp },
        audio_only: !video,
      },
      MEDIA_ACK_MS,
    );
    if (generation !== media.generation) return;
    if (!ack.ok) {
      closeUpload();
      const code = ack.error && ack.error.code;
      if (code === "unavailable") videoUnavailable();
      else showMediaNote(t("video_failed", { message: (ack.error && ack.error.message) || code }));
      return;
    }
    media.publisherId = ack.publisher_id;
    await pc.setRemoteDescription(ack.description);
  }

  function subscribeKnown(generation) {
    if (generation !== media.generation || media.unavailable || state.phase !== "inside") return undefined;
    const ids = [...media.publishers.values()]
      .filter((p) => p.user_id !== state.userId && p.publisher_id !== media.publisherId)
      .map((p) => p.publisher_id)
      .filter((id) => !media.subscribed.has(id) && (media.tries.get(id) || 0) < MAX_SUBSCRIBE_TRIES);
    return ids.length ? subscribe(ids, generation) : undefined;
  }

  async function subscribe(ids, generation) {
    for (const id of ids) media.subscribed.add(id);
    const sessionId = state.session.id;
    const ack = await emitAck(socket, "conference.subscribe", { session_id: sessionId, publisher_ids: ids }, MEDIA_ACK_MS);
    if (generation !== media.generation) return;
    if (!ack.ok) {
      for (const id of ids) media.subscribed.delete(id);
      subscribeFailed(ids, ack.error || {}, generation);
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: state.iceServers });
    const sub = { id: ack.subscription_id, pc, mids: new Map(), publishers: new Set(), started: false };
    for (const s of ack.streams || []) {
      if (s.publisher_id == null) continue;
      sub.mids.set(String(s.mid), s);
      sub.publishers.add(s.publisher_id);
    }
    media.subscriptions.set(sub.id, sub);
    pc.ontrack = (event) => onRemoteTrack(sub, event);
    pc.onconnectionstatechange = () => {
      for (const id of sub.publishers) {
        const tile = media.tiles.get(id);
        if (tile) tile.figure.dataset.connectionState = pc.connectionState;
      }
      if (pc.connectionState === "connected") {
        sub.connected = true;
        maybeLowestLayers(sub, sessionId, generation);
      }
    };
    try {
      await pc.setRemoteDescription(ack.description);
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
    } catch (err) {
      warn("subscription answer:", err && err.name, err && err.message);
      closeSubscription(sub);
      for (const id of ids) media.subscribed.delete(id);
      if (generation === media.generation) subscribeFailed(ids, { code: "internal", message: String(err) }, generation);
      return;
    }
    if (generation !== media.generation) return;
    const started = await emitAck(
      socket,
      "conference.start",
      { session_id: sessionId, subscription_id: sub.id, description: { type: "answer", sdp: pc.localDescription.sdp } },
      MEDIA_ACK_MS,
    );
    if (generation !== media.generation) return;
    if (!started.ok) {
      closeSubscription(sub);
      for (const id of ids) media.subscribed.delete(id);
      subscribeFailed(ids, started.error || {}, generation);
      return;
    }
    sub.started = true;
    maybeLowestLayers(sub, sessionId, generation);
  }

  /** On a weak link, ask for the lightest layers once the SFU has started the subscription and media flows. */
  function maybeLowestLayers(sub, sessionId, generation) {
    if (!state.audioOnly || !sub.started || !sub.connected || sub.layered || generation !== media.generation) return;
    sub.layered = true;
    lowestLayers(sub, sessionId).catch((err) => warn("conference.layer:", err));
  }

  function subscribeFailed(ids, error, generation) {
    warn("subscription refused:", error.code, error.message);
    if (error.code === "unavailable") {
      videoUnavailable();
      return;
    }
    if (error.code === "unauthenticated") {
      sessionExpired();
      return;
    }
    for (const id of ids) media.tries.set(id, (media.tries.get(id) || 0) + 1);
    // One gone publisher spoils a subscription to several: try them one at a time, a moment later.
    setTimeout(() => {
      if (generation !== media.generation) return;
      if (ids.length > 1) for (const id of ids) queue(() => subscribeOne(id, generation));
      else queue(() => subscribeKnown(generation));
    }, RESUBSCRIBE_MS);
  }

  function subscribeOne(id, generation) {
    if (generation !== media.generation || media.subscribed.has(id) || !media.publishers.has(id)) return undefined;
    return subscribe([id], generation);
  }

  async function lowestLayers(sub, sessionId) {
    for (const [mid, s] of sub.mids) {
      if (s.type !== "video") continue;
      const payload = { session_id: sessionId, subscription_id: sub.id, mid, substream: 0, temporal: 0 };
      const ack = await emitAck(socket, "conference.layer", payload, MEDIA_ACK_MS);
      if (!ack.ok) warn("conference.layer:", ack.error && ack.error.message);
    }
  }

  function videoUnavailable() {
    media.unavailable = true;
    media.generation += 1;
    closePeers();
    showMediaNote(t("video_unavailable"));
  }

  function closeUpload() {
    if (media.upload) {
      try {
        media.upload.close();
      } catch (err) {
        warn("close:", err);
      }
    }
    media.upload = null;
    media.publisherId = null;
  }

  function closeSubscription(sub) {
    media.subscriptions.delete(sub.id);
    sub.pc.ontrack = sub.pc.onconnectionstatechange = null;
    try {
      sub.pc.close();
    } catch (err) {
      warn("close:", err);
    }
  }

  function closePeers() {
    closeUpload();
    for (const sub of [...media.subscriptions.values()]) closeSubscription(sub);
    media.subscribed.clear();
    for (const id of [...media.tiles.keys()]) removeTile(id);
  }

  function stopMedia() {
    media.generation += 1;
    closePeers();
    stopLocal();
    renderSelfTile();
  }

  // -- tiles ---------------------------------------------------------------------------------------------------

  function countTiles() {
    if (ui.videos) ui.videos.dataset.count = String(ui.videos.children.length);
  }

  function renderSelfTile() {
    const local = media.local;
    const videoTracks = local ? local.getVideoTracks() : [];
    if (!local || state.phase !== "inside") {
      if (media.selfTile) media.selfTile.figure.remove();
      media.selfTile = null;
      countTiles();
      return;
    }
    if (!media.selfTile) {
      const video = el("video", { autoplay: true, playsinline: true });
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      const figure = el("figure", { class: "cr-tile self", dataset: { userId: String(state.userId) } }, video);
      figure.append(el("figcaption"));
      if (ui.videos) ui.videos.prepend(figure);
      media.selfTile = { figure, video };
    }
    const { figure, video } = media.selfTile;
    figure.querySelector("figcaption").textContent = `${selfName()} (${t("you")}) · ${selfSite()}`;
    figure.classList.toggle("no-video", videoTracks.length === 0);
    setBadge(figure, state.audioOnly || videoTracks.length === 0 ? t("audio_only") : "");
    const wanted = videoTracks.length ? videoTracks[0] : null;
    const shown = video.srcObject ? video.srcObject.getVideoTracks()[0] : null;
    if (wanted !== shown) {
      video.srcObject = wanted ? new MediaStream([wanted]) : null;
      if (wanted) video.play().catch((err) => err && err.name !== "AbortError" && warn("preview:", err.name));
    }
    countTiles();
  }

  function setBadge(figure, text) {
    let badge = figure.querySelector(".cr-badge");
    if (!text) {
      if (badge) badge.remove();
      return;
    }
    if (!badge) {
      badge = el("span", { class: "cr-badge" });
      figure.append(badge);
    }
    badge.textContent = text;
  }

  function ensureTile(publisherId) {
    let tile = media.tiles.get(publisherId);
    if (tile) return tile;
    const info = media.publishers.get(publisherId) || { user_id: 0, display_name: "", facility_name: "" };
    const video = el("video", { autoplay: true, playsinline: true });
    video.autoplay = true;
    video.playsInline = true;
    const caption = [info.display_name, info.facility_name].filter(Boolean).join(" · ");
    const figure = el(
      "figure",
      { class: "cr-tile remote no-video", dataset: { publisherId: String(publisherId), userId: String(info.user_id) } },
      video,
      el("figcaption", { text: caption }),
    );
    if (info.audio_only) setBadge(figure, t("audio_only"));
    if (ui.videos) ui.videos.append(figure);
    tile = { figure, video, stream: new MediaStream() };
    media.tiles.set(publisherId, tile);
    countTiles();
    return tile;
  }

  function removeTile(publisherId) {
    const tile = media.tiles.get(publisherId);
    if (!tile) return;
    media.tiles.delete(publisherId);
    tile.video.srcObject = null;
    tile.figure.remove();
    countTiles();
  }

  function onRemoteTrack(sub, event) {
    const mid = event.transceiver ? event.transceiver.mid : null;
    const info = sub.mids.get(String(mid));
    if (!info) return;
    const tile = ensureTile(info.publisher_id);
    const track = event.track;
    tile.stream.addTrack(track);
    if (track.kind === "video") {
      const show = () => tile.figure.classList.toggle("no-video", track.muted || track.readyState !== "live");
      track.addEventListener("mute", show);
      track.addEventListener("unmute", show);
      track.addEventListener("ended", show);
      show();
    }
    if (tile.video.srcObject !== tile.stream) tile.video.srcObject = tile.stream;
    playRemote(tile.video);
  }

  function playRemote(video) {
    const attempt = video.play();
    if (!attempt || typeof attempt.catch !== "function") return;
    attempt.catch((err) => {
      if (err && err.name === "NotAllowedError" && !video.muted) {
        // Sound needs a click first in this browser: play muted now, turn the sound on at the first gesture.
        video.muted = true;
        video.play().catch((err2) => warn("remote video:", err2 && err2.name));
        showMediaNote(t("sound_blocked"));
        const unmute = () => {
          for (const tile of media.tiles.values()) {
            tile.video.muted = false;
            tile.video.play().catch(() => {});
          }
          if (ui.mediaNote && ui.mediaNote.textContent === t("sound_blocked")) showMediaNote("");
        };
        document.addEventListener("pointerdown", unmute, { once: true });
        document.addEventListener("keydown", unmute, { once: true });
      } else if (err && err.name !== "AbortError") {
        warn("remote video:", err && err.name);
      }
    });
  }

  function removePublisher(publisherId) {
    media.publishers.delete(publisherId);
    media.subscribed.delete(publisherId);
    removeTile(publisherId);
    for (const sub of [...media.subscriptions.values()]) {
      if (sub.publishers.delete(publisherId) && sub.publishers.size === 0) closeSubscription(sub);
    }
  }

  function onPublished(msg) {
    const p = msg && msg.publisher;
    if (!p || !forThisSession(msg) || p.user_id === state.userId) return;
    media.publishers.set(p.publisher_id, p);
    media.tries.delete(p.publisher_id);
    if (state.phase !== "inside" || !state.session.media || media.unavailable) return;
    const generation = media.generation;
    queue(() => subscribeKnown(generation));
  }

  function onUnpublished(msg) {
    if (!forThisSession(msg)) return;
    removePublisher(Number(msg.publisher_id));
  }

  function toggleMute() {
    state.muted = !state.muted;
    if (media.local) for (const track of media.local.getAudioTracks()) track.enabled = !state.muted;
    if (ui.mute) {
      ui.mute.setAttribute("aria-pressed", state.muted ? "true" : "false");
      ui.mute.textContent = state.muted ? t("unmute") : t("mute");
    }
  }

  // ==========================================================================================================
  // wiring
  // ==========================================================================================================

  if (ui.audioOnly) {
    ui.audioOnly.checked = state.audioOnly;
    ui.audioOnly.addEventListener("change", () => {
      state.audioOnly = ui.audioOnly.checked;
      saveAudioOnly(state.audioOnly);
      media.videoRefused = false; // an explicit choice: ask for the camera again
      restartMedia();
    });
  }
  if (ui.mute) ui.mute.addEventListener("click", toggleMute);
  if (ui.leave) ui.leave.addEventListener("click", () => leave().catch((err) => warn("leave:", err)));
  if (ui.end) {
    ui.end.addEventListener("click", () => {
      ui.end.hidden = true;
      if (ui.endBox) ui.endBox.hidden = false;
    });
  }
  if (ui.endCancel) ui.endCancel.addEventListener("click", () => renderHostControls());
  if (ui.endConfirm) ui.endConfirm.addEventListener("click", () => endSession().catch((err) => warn("end:", err)));
  if (ui.agenda) ui.agenda.addEventListener("click", onAgendaClick);
  if (ui.lobby) ui.lobby.addEventListener("click", (event) => onLobbyClick(event).catch((err) => warn("admit:", err)));
  if (ui.noteForm) ui.noteForm.addEventListener("submit", onNoteSubmit);
  if (ui.noteText) {
    ui.noteText.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        ui.noteForm.requestSubmit();
      }
    });
  }
  if (ui.decisionForm) {
    ui.decisionForm.addEventListener("submit", (event) => onDecisionSubmit(event).catch((err) => warn("decide:", err)));
    ui.decisionForm.addEventListener("input", onDecisionInput);
    ui.decisionForm.addEventListener("change", onDecisionInput);
  }

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
    media.generation += 1;
    closePeers();
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
  socket.on("conference.entered", roomEvent(onEntered));
  socket.on("conference.left", roomEvent(onLeft));
  socket.on("conference.published", roomEvent(onPublished));
  socket.on("conference.unpublished", roomEvent(onUnpublished));
  socket.on("conference.knock", roomEvent(onKnock));
  socket.on("conference.admission", roomEvent(onAdmission));
  socket.on("conference.case", roomEvent(onCaseChanged));
  socket.on("conference.note_added", roomEvent((msg) => acceptSavedNote(msg && msg.note)));
  socket.on("conference.decided", roomEvent(onDecided));
  socket.on("conference.ended", roomEvent((msg) => forThisSession(msg) && ended()));

  window.addEventListener("pagehide", () => {
    if (media.local) for (const track of media.local.getTracks()) track.stop();
  });

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
      return media.publisherId;
    },
    stats() {
      return {
        upload: media.upload ? media.upload.connectionState : null,
        subscriptions: [...media.subscriptions.values()].map((s) => ({
          id: s.id,
          connectionState: s.pc.connectionState,
          publishers: [...s.publishers],
        })),
        tiles: [...media.tiles.keys()],
        publishers: [...media.publishers.keys()],
      };
    },
    outbox() {
      return readOutbox();
    },
    tile(publisherId) {
      return childByData(ui.videos, "publisherId", publisherId);
    },
  };
}
