// The consultation room: WebRTC mesh (perfect negotiation, trickle ICE) over socket.io signaling, and case
// notes that survive a dropped link (localStorage outbox, resent after every reconnect).
// The live monitor and vitals are in room-monitor.js; this file only calls its hooks.
//
// Protocol: signaling/events.py (docs/signaling.md). DOM contract: web/templates/room.html.

import {
  childByData,
  createSocket,
  el,
  emitAck,
  formatTime,
  isUnauthenticated,
  loadI18n,
  logUnhandledRejections,
  warn,
  withTimeout,
} from "./common.js";
import { attachMonitor } from "./room-monitor.js";
import { attachRoomPairing } from "./pairing-status.js";

const ENGLISH = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Connection lost — reconnecting…",
  waiting_for_others: "Waiting for the other participants to join…",
  peer_joined: "{name} joined",
  peer_left: "{name} left",
  mute: "Mute",
  unmute: "Unmute",
  camera_off: "Camera off",
  camera_on: "Camera on",
  audio_only_on: "Audio only",
  audio_only_off: "Video back on",
  note_pending: "Not yet saved — will be sent when the connection returns",
  note_saved: "Saved",
  note_failed: "Not saved",
  room_closed: "The consultation has been closed.",
  room_replaced: "You opened this room in another window or device; this one is disconnected.",
  session_expired: "Your session has expired; please log in again.",
  media_denied: "Camera or microphone unavailable — you can still see, hear and write notes.",
  you: "you",
  leave: "Leave",
  record: "Open the patient record",
  login: "Log in",
};

const VIDEO_CONSTRAINTS = { width: 640, height: 360 };
const ACK_MS = 10000;
const SDP_MS = 10000;
const MEDIA_MS = 20000; // a person may be reading the permission prompt
const RETRY_NOTE_MS = 5000;
const REJOIN_MS = 3000;
const ICE_DISCONNECTED_GRACE_MS = 10000;
const ICE_RESTART_MIN_INTERVAL_MS = 5000;
const GLARE_WATCHDOG_MS = 8000;
const TRANSIENT_STATUS_MS = 4000;
const VIDEO_WATCH_MS = 2000;
const TERMINAL_STATUSES = new Set(["completed", "cancelled", "expired"]);
// A note refused for one of these reasons will never be accepted as it is: tell the writer, stop retrying.
const PERMANENT_NOTE_ERRORS = new Set(["invalid", "forbidden", "too_large", "not_found", "conflict"]);
const CLIENT_ID_RE = /^[A-Za-z0-9_-]{8,64}$/;

logUnhandledRejections();

const root = document.getElementById("room");
if (root) {
  startRoom(root);
}

function startRoom(root) {
  const t = loadI18n("room-i18n", ENGLISH);
  const $ = (id) => document.getElementById(id);
  const ui = {
    localVideo: $("local-video"),
    remoteVideos: $("remote-videos"),
    participants: $("participants"),
    status: $("connection-status"),
    btnMute: $("btn-mute"),
    btnCamera: $("btn-camera"),
    btnAudioOnly: $("btn-audio-only"),
    btnLeave: $("btn-leave"),
    notesList: $("notes-list"),
    noteForm: $("note-form"),
    noteText: $("note-text"),
    noteSend: $("note-send"),
    banner: $("room-banner"),
  };

  const state = {
    cid: Number(root.dataset.consultationId),
    userId: Number(root.dataset.userId),
    role: root.dataset.role || "",
    recordUrl: root.dataset.recordUrl || "",
    myPeerId: null,
    joined: false,
    joinGeneration: 0,
    terminal: null, // "closed" | "replaced" | "expired" | "refused" | "left"
    iceServers: [],
    participants: new Map(), // peer_id -> {peer_id, user_id, display_name, role}
    peers: new Map(), // peer_id -> Peer (see createPeer)
    local: new MediaStream(),
    hasMedia: false,
    muted: false,
    cameraOff: false,
    audioOnly: false,
    switching: false,
    inflightNotes: new Set(),
    memoryOutbox: null, // used when localStorage is unavailable
    statusTimer: null,
    mediaReady: null,
    everConnected: false,
  };
  const outboxKey = `tc-outbox-${state.cid}`;
  // Created first so every function below can refer to it; it connects asynchronously, and all its
  // handlers are registered further down in this same task, before any event can arrive.
  const socket = createSocket();
  const live = attachMonitor({ socket, cid: state.cid, userId: state.userId, onSessionExpired: () => sessionExpired() });
  attachRoomPairing(socket); // the requester waits here for a specialist: where the pairing stands

  // ==========================================================================================================
  // status, banner, participants
  // ==========================================================================================================

  function steadyStatusKey() {
    if (!socket.connected) return state.everConnected ? "reconnecting" : "connecting";
    if (!state.joined) return "connecting";
    return state.participants.size === 0 ? "waiting_for_others" : "connected";
  }

  function renderStatus() {
    if (!ui.status || state.terminal) return;
    clearTimeout(state.statusTimer);
    state.statusTimer = null;
    const key = steadyStatusKey();
    ui.status.textContent = t(key);
    ui.status.dataset.state = key;
  }

  function announce(key, params) {
    if (!ui.status || state.terminal) return;
    clearTimeout(state.statusTimer);
    ui.status.textContent = t(key, params);
    ui.status.dataset.state = key;
    state.statusTimer = setTimeout(renderStatus, TRANSIENT_STATUS_MS);
  }

  function showBanner(text, link) {
    if (!ui.banner) return;
    ui.banner.replaceChildren(el("p", { text }));
    if (link) ui.banner.append(el("p", {}, el("a", { href: link.href, class: "button", text: link.text })));
    ui.banner.hidden = false;
  }

  function selfName() {
    const whoami = document.getElementById("whoami");
    const name = whoami ? (whoami.textContent || "").split("·")[0].trim() : "";
    return name ? `${name} (${t("you")})` : t("you");
  }

  function peerName(peerId) {
    const p = state.participants.get(peerId);
    return p ? p.display_name : "";
  }

  function renderParticipants() {
    if (!ui.participants) return;
    const items = [];
    if (!state.terminal) {
      items.push(
        el("li", {
          class: "participant self",
          text: selfName(),
          dataset: { peerId: state.myPeerId || "", userId: String(state.userId), role: state.role },
        }),
      );
    }
    for (const p of state.participants.values()) {
      const peer = state.peers.get(p.peer_id);
      items.push(
        el("li", {
          class: "participant",
          text: p.display_name,
          dataset: {
            peerId: p.peer_id,
            userId: String(p.user_id),
            role: p.role,
            connectionState: peer ? peer.pc.connectionState : "new",
          },
        }),
      );
    }
    ui.participants.replaceChildren(...items);
    for (const peer of state.peers.values()) {
      const caption = peer.figure && peer.figure.querySelector("figcaption");
      if (caption) caption.textContent = peerName(peer.id);
    }
  }

  function updatePeerState(peer) {
    const li = childByData(ui.participants, "peerId", peer.id);
    if (li) li.dataset.connectionState = peer.pc.connectionState;
    if (peer.figure) peer.figure.dataset.connectionState = peer.pc.connectionState;
  }

  // ==========================================================================================================
  // local media
  // ==========================================================================================================

  function getMedia(constraints) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return Promise.reject(new Error("getUserMedia is not available (insecure origin?)"));
    }
    const request = navigator.mediaDevices.getUserMedia(constraints);
    return withTimeout(request, MEDIA_MS, "getUserMedia").catch((err) => {
      // If the person answers the prompt after we gave up, adopt the devices rather than leak them.
      if (err && err.name === "TimeoutError") request.then(adoptLateStream, () => {});
      throw err;
    });
  }

  async function acquireMedia() {
    try {
      const stream = await getMedia({ audio: true, video: VIDEO_CONSTRAINTS });
      for (const track of stream.getTracks()) state.local.addTrack(track);
    } catch (err) {
      warn("camera+microphone unavailable:", err && err.name, err && err.message);
      try {
        const stream = await getMedia({ audio: true });
        for (const track of stream.getTracks()) state.local.addTrack(track);
        state.audioOnly = true;
      } catch (err2) {
        warn("microphone unavailable, receive-only:", err2 && err2.name);
      }
      showMediaWarning();
    }
    state.hasMedia = state.local.getTracks().length > 0;
    refreshLocalPreview();
    renderControls();
  }

  function adoptLateStream(stream) {
    if (state.terminal) {
      stream.getTracks().forEach((track) => track.stop());
      return;
    }
    for (const track of stream.getTracks()) {
      const haveKind = state.local.getTracks().some((have) => have.kind === track.kind);
      if (haveKind || (track.kind === "video" && state.audioOnly && state.hasMedia)) {
        track.stop();
        continue;
      }
      state.local.addTrack(track);
      if (track.kind === "video") state.audioOnly = false;
      for (const peer of state.peers.values()) attachTrack(peer, track);
    }
    state.hasMedia = state.local.getTracks().length > 0;
    if (state.hasMedia) clearMediaWarning();
    refreshLocalPreview();
    renderControls();
  }

  function showMediaWarning() {
    root.classList.add("media-denied");
    if (document.getElementById("media-warning") || !ui.localVideo) return;
    const warning = el("p", { id: "media-warning", class: "media-warning", role: "alert", text: t("media_denied") });
    ui.localVideo.before(warning);
  }

  function clearMediaWarning() {
    root.classList.remove("media-denied");
    const warning = document.getElementById("media-warning");
    if (warning) warning.remove();
  }

  function refreshLocalPreview() {
    if (!ui.localVideo) return;
    const videoTracks = state.local.getVideoTracks();
    ui.localVideo.srcObject = videoTracks.length ? new MediaStream(videoTracks) : null;
    ui.localVideo.hidden = videoTracks.length === 0;
    if (videoTracks.length) {
      ui.localVideo.play().catch((err) => {
        if (err && err.name !== "AbortError") warn("local preview:", err.name);
      });
    }
  }

  function setToggle(button, pressed, label, disabled) {
    if (!button) return;
    button.setAttribute("aria-pressed", pressed ? "true" : "false");
    button.textContent = label;
    button.disabled = Boolean(disabled);
  }

  function renderControls() {
    const off = Boolean(state.terminal);
    const audio = state.local.getAudioTracks()[0];
    const video = state.local.getVideoTracks()[0];
    setToggle(ui.btnMute, state.muted, state.muted ? t("unmute") : t("mute"), off || !audio);
    setToggle(
      ui.btnCamera,
      state.cameraOff,
      state.cameraOff ? t("camera_on") : t("camera_off"),
      off || !video || state.audioOnly,
    );
    setToggle(
      ui.btnAudioOnly,
      state.audioOnly,
      state.audioOnly ? t("audio_only_off") : t("audio_only_on"),
      off || state.switching || !state.hasMedia,
    );
    if (ui.btnLeave) ui.btnLeave.textContent = t("leave");
    root.classList.toggle("is-muted", state.muted);
    root.classList.toggle("camera-off", state.cameraOff);
    root.classList.toggle("audio-only", state.audioOnly);
  }

  function toggleMute() {
    state.muted = !state.muted;
    for (const track of state.local.getAudioTracks()) track.enabled = !state.muted;
    renderControls();
  }

  function toggleCamera() {
    state.cameraOff = !state.cameraOff;
    for (const track of state.local.getVideoTracks()) track.enabled = !state.cameraOff;
    renderControls();
  }

  async function toggleAudioOnly() {
    if (state.switching || state.terminal) return;
    state.switching = true;
    renderControls();
    try {
      if (!state.audioOnly) await dropVideo();
      else await restoreVideo();
    } catch (err) {
      warn("audio-only switch failed:", err && err.name, err && err.message);
      if (state.audioOnly) showMediaWarning();
    } finally {
      state.switching = false;
      refreshLocalPreview();
      renderControls();
    }
  }

  async function dropVideo() {
    // Keep the transceivers (no renegotiation, works with every peer): just stop sending video.
    const tracks = state.local.getVideoTracks();
    const replaced = [];
    for (const peer of state.peers.values()) {
      for (const sender of peer.pc.getSenders()) {
        if (sender.track && tracks.includes(sender.track)) replaced.push(sender.replaceTrack(null));
      }
    }
    await withTimeout(Promise.allSettled(replaced), SDP_MS, "replaceTrack(null)");
    for (const track of tracks) {
      track.stop();
      state.local.removeTrack(track);
    }
    state.audioOnly = true;
  }

  async function restoreVideo() {
    const stream = await getMedia({ video: VIDEO_CONSTRAINTS });
    const track = stream.getVideoTracks()[0];
    if (!track) throw new Error("no camera track");
    if (state.terminal) {
      track.stop();
      return;
    }
    state.cameraOff = false;
    state.local.addTrack(track);
    for (const peer of state.peers.values()) attachTrack(peer, track);
    state.audioOnly = false;
    clearMediaWarning();
  }

  /** Send a (new) local track to a peer: reuse an idle transceiver of its kind, else add one (renegotiates). */
  function attachTrack(peer, track) {
    const pc = peer.pc;
    if (pc.signalingState === "closed" || pc.getSenders().some((s) => s.track === track)) return;
    const idle = pc
      .getTransceivers()
      .find((tr) => !tr.stopped && tr.currentDirection !== "stopped" && tr.receiver.track.kind === track.kind && !tr.sender.track);
    if (!idle) {
      pc.addTrack(track, state.local);
      return;
    }
    idle.sender.replaceTrack(track).catch((err) => warn("replaceTrack:", err));
    if (idle.direction === "recvonly") idle.direction = "sendrecv";
    else if (idle.direction === "inactive") idle.direction = "sendonly";
  }

  function stopMedia() {
    for (const track of state.local.getTracks()) {
      track.stop();
      state.local.removeTrack(track);
    }
    if (ui.localVideo) ui.localVideo.srcObject = null;
  }

  // ==========================================================================================================
  // peer connections: one per remote peer, perfect negotiation
  // ==========================================================================================================

  function iceConfig() {
    return { iceServers: state.iceServers };
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

  function isPolite(peer) {
    return String(state.myPeerId || socket.id || "") > String(peer.id);
  }

  function createPeer(peerId, { offerer }) {
    const pc = new RTCPeerConnection(iceConfig());
    const peer = {
      id: peerId,
      pc,
      makingOffer: false,
      ignoreOffer: false,
      isSettingRemoteAnswerPending: false,
      ignoredOffer: null,
      pendingCandidates: [],
      chain: Promise.resolve(),
      channels: [],
      figure: null,
      video: null,
      closed: false,
      disconnectedTimer: null,
      glareTimer: null,
      lastIceRestart: 0,
      videoTrackMuted: true,
      videoStalled: true,
      lastFramesDecoded: null,
    };
    state.peers.set(peerId, peer);
    ensureFigure(peer);

    pc.onnegotiationneeded = () => {
      negotiate(peer);
    };
    pc.onicecandidate = ({ candidate }) => {
      sendSignal(peer, { candidate: candidate ? candidateJson(candidate) : null });
    };
    pc.ontrack = (event) => onTrack(peer, event);
    pc.ondatachannel = (event) => adoptChannel(peer, event.channel);
    pc.oniceconnectionstatechange = () => onIceState(peer);
    pc.onconnectionstatechange = () => onConnectionState(peer);

    // Newcomer: its tracks trigger negotiationneeded -> offer. Existing peer (offerer=false): the remote
    // offer is applied right after this, and addTrack-created transceivers are recycled into its m-lines.
    for (const track of state.local.getTracks()) pc.addTrack(track, state.local);
    if (offerer) {
      const kinds = new Set(state.local.getTracks().map((track) => track.kind));
      const canSend = state.local.getAudioTracks().length > 0;
      for (const kind of ["audio", "video"]) {
        if (kinds.has(kind)) continue;
        // An idle sendrecv video slot lets "video back on" use replaceTrack without renegotiating.
        const direction = canSend && kind === "video" ? "sendrecv" : "recvonly";
        pc.addTransceiver(kind, { direction, streams: [state.local] });
      }
    }
    renderParticipants();
    return peer;
  }

  function closePeer(peerId) {
    const peer = state.peers.get(peerId);
    if (!peer) return;
    state.peers.delete(peerId);
    peer.closed = true;
    clearTimeout(peer.disconnectedTimer);
    clearTimeout(peer.glareTimer);
    for (const channel of peer.channels) {
      try {
        channel.close();
      } catch {
        /* already closed */
      }
    }
    const pc = peer.pc;
    pc.onnegotiationneeded = pc.onicecandidate = pc.ontrack = pc.ondatachannel = null;
    pc.oniceconnectionstatechange = pc.onconnectionstatechange = null;
    try {
      pc.close();
    } catch (err) {
      warn("pc.close:", err);
    }
    if (peer.video) peer.video.srcObject = null;
    if (peer.figure) peer.figure.remove();
    updateRemoteCount();
  }

  function closeAllPeers() {
    for (const peerId of [...state.peers.keys()]) closePeer(peerId);
  }

  function candidateJson(c) {
    return {
      candidate: c.candidate,
      sdpMid: c.sdpMid ?? null,
      sdpMLineIndex: c.sdpMLineIndex ?? null,
      usernameFragment: c.usernameFragment ?? null,
    };
  }

  function descriptionJson(d) {
    return { type: d.type, sdp: d.sdp || "" };
  }

  async function sendSignal(peer, payload, attempt = 0) {
    if (peer.closed || state.terminal || !socket.connected) return;
    const ack = await emitAck(socket, "rtc.signal", { consultation_id: state.cid, to: peer.id, ...payload }, ACK_MS);
    if (ack.ok) return;
    const code = ack.error && ack.error.code;
    if (code === "rate_limited" && attempt < 3 && !peer.closed) {
      setTimeout(() => sendSignal(peer, payload, attempt + 1), 300 * (attempt + 1));
      return;
    }
    if (!peer.closed && !state.terminal) warn(`rtc.signal to ${peer.id} failed:`, code, ack.error && ack.error.message);
  }

  async function negotiate(peer) {
    const pc = peer.pc;
    if (peer.closed || state.terminal) return;
    try {
      peer.makingOffer = true;
      await withTimeout(pc.setLocalDescription(), SDP_MS, "setLocalDescription(offer)");
      if (!peer.closed && pc.localDescription) {
        sendSignal(peer, { description: descriptionJson(pc.localDescription) });
      }
    } catch (err) {
      warn(`negotiation with ${peer.id} failed:`, err && err.message);
    } finally {
      peer.makingOffer = false;
    }
  }

  function onSignal(msg) {
    if (!msg || Number(msg.consultation_id) !== state.cid || state.terminal) return;
    const from = msg.from;
    if (!from || from === state.myPeerId) return;
    let peer = state.peers.get(from);
    if (!peer) {
      if (!msg.description || msg.description.type !== "offer") {
        // Candidates or answers for a connection we already dropped (or never had): nothing to apply them to.
        return;
      }
      peer = createPeer(from, { offerer: false });
    }
    // One message at a time per peer, in arrival order.
    const target = peer;
    target.chain = target.chain
      .then(() => handleSignal(target, msg))
      .catch((err) => warn(`signal from ${from}:`, err && err.name, err && err.message));
  }

  async function handleSignal(peer, msg) {
    if (peer.closed) return;
    const pc = peer.pc;
    const description = msg.description;
    if (description) {
      await applyDescription(peer, description);
      return;
    }
    if (!("candidate" in msg)) return;
    if (!pc.remoteDescription) {
      peer.pendingCandidates.push(msg.candidate);
      return;
    }
    await addCandidate(peer, msg.candidate);
  }

  async function applyDescription(peer, description, { forcePolite = false } = {}) {
    const pc = peer.pc;
    const readyForOffer =
      !peer.makingOffer && (pc.signalingState === "stable" || peer.isSettingRemoteAnswerPending);
    const offerCollision = description.type === "offer" && !readyForOffer;
    peer.ignoreOffer = !forcePolite && !isPolite(peer) && offerCollision;
    if (peer.ignoreOffer) {
      // A peer that cannot roll back (aiortc) would wait forever for our answer: keep its offer and, if our
      // own offer stays unanswered, give way after a while.
      peer.ignoredOffer = description;
      armGlareWatchdog(peer);
      return;
    }
    peer.isSettingRemoteAnswerPending = description.type === "answer";
    try {
      await withTimeout(pc.setRemoteDescription(description), SDP_MS, `setRemoteDescription(${description.type})`);
    } finally {
      peer.isSettingRemoteAnswerPending = false;
    }
    if (description.type === "answer") {
      peer.ignoredOffer = null;
      clearTimeout(peer.glareTimer);
    }
    await flushCandidates(peer);
    if (description.type === "offer" && !peer.closed) {
      await withTimeout(pc.setLocalDescription(), SDP_MS, "setLocalDescription(answer)");
      if (!peer.closed && pc.localDescription) {
        sendSignal(peer, { description: descriptionJson(pc.localDescription) });
      }
    }
  }

  function armGlareWatchdog(peer) {
    clearTimeout(peer.glareTimer);
    peer.glareTimer = setTimeout(() => {
      const offer = peer.ignoredOffer;
      if (peer.closed || !offer || peer.pc.signalingState !== "have-local-offer") return;
      peer.ignoredOffer = null;
      peer.chain = peer.chain
        .then(async () => {
          warn(`offer to ${peer.id} unanswered; answering theirs instead`);
          await withTimeout(peer.pc.setLocalDescription({ type: "rollback" }), SDP_MS, "rollback");
          await applyDescription(peer, offer, { forcePolite: true });
        })
        .catch((err) => warn("glare recovery failed:", err && err.message));
    }, GLARE_WATCHDOG_MS);
  }

  async function addCandidate(peer, candidate) {
    try {
      if (candidate === null || candidate === undefined) {
        await peer.pc.addIceCandidate(); // end of candidates
      } else {
        await peer.pc.addIceCandidate(candidate);
      }
    } catch (err) {
      // Candidates of an offer we ignored, or an end-of-candidates marker the browser does not want.
      if (!peer.ignoreOffer && candidate) warn(`addIceCandidate from ${peer.id}:`, err && err.message);
    }
  }

  async function flushCandidates(peer) {
    const queued = peer.pendingCandidates.splice(0);
    for (const candidate of queued) await addCandidate(peer, candidate);
  }

  function restartIce(peer) {
    const pc = peer.pc;
    if (peer.closed || state.terminal || !socket.connected || pc.signalingState === "closed") return;
    const now = Date.now();
    if (now - peer.lastIceRestart < ICE_RESTART_MIN_INTERVAL_MS) return;
    peer.lastIceRestart = now;
    warn(`ICE restart with ${peer.id}`);
    if (typeof pc.restartIce === "function") {
      pc.restartIce(); // -> negotiationneeded -> offer with fresh credentials
    } else {
      negotiateIceRestart(peer);
    }
  }

  async function negotiateIceRestart(peer) {
    try {
      peer.makingOffer = true;
      const offer = await withTimeout(peer.pc.createOffer({ iceRestart: true }), SDP_MS, "createOffer");
      await withTimeout(peer.pc.setLocalDescription(offer), SDP_MS, "setLocalDescription");
      sendSignal(peer, { description: descriptionJson(peer.pc.localDescription) });
    } catch (err) {
      warn("ICE restart failed:", err && err.message);
    } finally {
      peer.makingOffer = false;
    }
  }

  function onIceState(peer) {
    const s = peer.pc.iceConnectionState;
    clearTimeout(peer.disconnectedTimer);
    peer.disconnectedTimer = null;
    if (s === "failed") restartIce(peer);
    else if (s === "disconnected") {
      // Often recovers by itself on a lossy 3G link; restart only if it does not.
      peer.disconnectedTimer = setTimeout(() => {
        if (!peer.closed && peer.pc.iceConnectionState === "disconnected") restartIce(peer);
      }, ICE_DISCONNECTED_GRACE_MS);
    }
    updatePeerState(peer);
  }

  function onConnectionState(peer) {
    if (peer.pc.connectionState === "failed") restartIce(peer);
    updatePeerState(peer);
  }

  function adoptChannel(peer, channel) {
    peer.channels.push(channel);
    channel.onclose = () => {
      peer.channels = peer.channels.filter((c) => c !== channel);
    };
    channel.onerror = (event) => warn(`data channel ${channel.label}:`, event && event.error);
  }

  // ==========================================================================================================
  // remote media
  // ==========================================================================================================

  function ensureFigure(peer) {
    if (peer.figure || !ui.remoteVideos) return;
    const video = el("video", { class: "remote-video", autoplay: true, playsinline: true });
    video.autoplay = true;
    video.playsInline = true;
    const figure = el(
      "figure",
      { class: "remote video-muted", dataset: { peerId: peer.id, connectionState: "new" } },
      video,
      el("figcaption", { text: peerName(peer.id) }),
    );
    ui.remoteVideos.append(figure);
    peer.figure = figure;
    peer.video = video;
    updateRemoteCount();
  }

  function updateRemoteCount() {
    if (ui.remoteVideos) ui.remoteVideos.dataset.count = String(ui.remoteVideos.children.length);
  }

  function onTrack(peer, event) {
    const { track, streams } = event;
    const video = peer.video;
    if (!video) return;
    let stream = video.srcObject;
    if (!(stream instanceof MediaStream)) {
      stream = streams && streams[0] ? streams[0] : new MediaStream();
      video.srcObject = stream;
    }
    if (!stream.getTracks().includes(track)) {
      for (const old of stream.getTracks()) {
        if (old.kind === track.kind && old.readyState === "ended") stream.removeTrack(old);
      }
      stream.addTrack(track);
    }
    track.addEventListener("ended", () => {
      if (stream.getTracks().includes(track)) stream.removeTrack(track);
    });
    if (track.kind === "video") {
      const mark = () => {
        peer.videoTrackMuted = track.muted;
        markVideo(peer);
      };
      track.addEventListener("mute", mark);
      track.addEventListener("unmute", () => {
        mark();
        playVideo(video);
      });
      mark();
    }
    playVideo(video);
  }

  function markVideo(peer) {
    if (peer.figure) peer.figure.classList.toggle("video-muted", Boolean(peer.videoTrackMuted || peer.videoStalled));
  }

  // A sender that switched to audio only (replaceTrack(null)) does not mute our track in every browser:
  // watch decoded frames so the figure shows the name instead of a frozen picture.
  async function watchRemoteVideo() {
    for (const peer of [...state.peers.values()]) {
      if (peer.closed || !peer.figure) continue;
      let frames = null;
      try {
        const report = await withTimeout(peer.pc.getStats(), VIDEO_WATCH_MS, "getStats");
        report.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") frames = (frames || 0) + (s.framesDecoded || 0);
        });
      } catch {
        continue;
      }
      peer.videoStalled = frames === null || frames === peer.lastFramesDecoded;
      peer.lastFramesDecoded = frames;
      markVideo(peer);
    }
  }

  function playVideo(video) {
    const attempt = video.play();
    if (!attempt || typeof attempt.catch !== "function") return;
    attempt.catch((err) => {
      if (err && err.name === "NotAllowedError" && !video.muted) {
        // Autoplay with sound blocked until the user interacts: play muted now, unmute on first gesture.
        video.muted = true;
        root.classList.add("audio-blocked");
        video.play().catch((err2) => warn("remote video play:", err2 && err2.name));
        unmuteOnGesture();
      } else if (err && err.name !== "AbortError") {
        warn("remote video play:", err && err.name);
      }
    });
  }

  let gestureArmed = false;
  function unmuteOnGesture() {
    if (gestureArmed) return;
    gestureArmed = true;
    const unmute = () => {
      gestureArmed = false;
      root.classList.remove("audio-blocked");
      for (const video of ui.remoteVideos ? ui.remoteVideos.querySelectorAll("video.remote-video") : []) {
        video.muted = false;
        video.play().catch((err) => warn("remote video play:", err && err.name));
      }
    };
    document.addEventListener("pointerdown", unmute, { once: true });
    document.addEventListener("keydown", unmute, { once: true });
  }

  // ==========================================================================================================
  // notes: outbox in localStorage, rendered at once, confirmed by the ack or note.added
  // ==========================================================================================================

  // The key is per consultation; each item also carries its writer, so on a shared clinic PC one user's
  // unsent notes are never sent under another user's name.
  function readOutbox() {
    return readAllOutbox().filter((i) => i.user_id === state.userId);
  }

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
    const items = readAllOutbox().filter((i) => i.client_id !== item.client_id);
    items.push(item);
    writeOutbox(items);
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

  function noteItem(clientId) {
    return childByData(ui.notesList, "clientId", clientId);
  }

  function fillNote(li, { author, createdAt, text }) {
    const part = (cls, tag) => {
      let node = li.querySelector(`.${cls}`);
      if (!node) {
        node = el(tag, { class: cls });
        li.append(node);
      }
      return node;
    };
    if (author != null) part("note-author", "span").textContent = author;
    if (createdAt) {
      const time = part("note-time", "time");
      time.setAttribute("datetime", createdAt);
      time.textContent = formatTime(createdAt);
    }
    if (text != null) part("note-text", "p").textContent = text;
  }

  function setNoteState(li, text) {
    let node = li.querySelector(".note-state");
    if (!text) {
      if (node) node.remove();
      return;
    }
    if (!node) {
      node = el("span", { class: "note-state" });
      li.append(node);
    }
    node.textContent = text;
  }

  function buildNote(clientId) {
    const li = el(
      "li",
      { class: "note", dataset: { clientId } },
      el("span", { class: "note-author" }),
      " ",
      el("time", { class: "note-time" }),
      el("p", { class: "note-text" }),
    );
    return li;
  }

  function insertNote(li, { pending }) {
    if (!ui.notesList) return;
    const firstPending = pending ? null : ui.notesList.querySelector(":scope > li.note-pending");
    if (firstPending) ui.notesList.insertBefore(li, firstPending);
    else ui.notesList.append(li);
    ui.notesList.scrollTop = ui.notesList.scrollHeight;
  }

  function renderPendingNote(item) {
    let li = noteItem(item.client_id);
    if (!li) {
      li = buildNote(item.client_id);
      insertNote(li, { pending: true });
    }
    li.classList.add("note-pending");
    li.classList.remove("note-failed");
    fillNote(li, { author: t("you"), createdAt: item.created_at, text: item.text });
    setNoteState(li, t("note_pending"));
    return li;
  }

  function markSaved(li, note) {
    const wasPending = li.classList.contains("note-pending") || li.classList.contains("note-failed");
    li.classList.remove("note-pending", "note-failed");
    if (note) {
      if (note.id != null) li.dataset.noteId = String(note.id);
      fillNote(li, { author: note.author_name, createdAt: note.created_at, text: note.text });
    }
    if (wasPending) {
      setNoteState(li, t("note_saved"));
      setTimeout(() => {
        if (!li.classList.contains("note-pending") && !li.classList.contains("note-failed")) setNoteState(li, "");
      }, TRANSIENT_STATUS_MS);
      // Saved notes stay above the ones still waiting.
      const firstPending = ui.notesList && ui.notesList.querySelector(":scope > li.note-pending");
      if (firstPending && li.compareDocumentPosition(firstPending) & Node.DOCUMENT_POSITION_PRECEDING) {
        ui.notesList.insertBefore(li, firstPending);
      }
    }
  }

  function markFailed(li, message) {
    li.classList.remove("note-pending");
    li.classList.add("note-failed");
    setNoteState(li, message ? `${t("note_failed")}: ${message}` : t("note_failed"));
  }

  /** A note the server has saved: confirm ours, or show someone else's. */
  function acceptSavedNote(note) {
    if (!note || !note.client_id || Number(note.consultation_id) !== state.cid) return;
    outboxRemove(note.client_id);
    let li = noteItem(note.client_id);
    if (li) {
      markSaved(li, note);
      return;
    }
    li = buildNote(note.client_id);
    markSaved(li, note);
    insertNote(li, { pending: false });
  }

  async function sendNote(item) {
    // Notes do not need the room (a refused join still lets one write): only the connection.
    if (!socket.connected || state.inflightNotes.has(item.client_id)) return;
    state.inflightNotes.add(item.client_id);
    let ack;
    try {
      ack = await emitAck(
        socket,
        "note.add",
        { consultation_id: state.cid, text: item.text, client_id: item.client_id },
        ACK_MS,
      );
    } finally {
      state.inflightNotes.delete(item.client_id);
    }
    const li = noteItem(item.client_id);
    if (ack.ok) {
      outboxRemove(item.client_id);
      if (ack.note) acceptSavedNote(ack.note);
      else if (li) markSaved(li, null);
      return;
    }
    const code = (ack.error && ack.error.code) || "internal";
    if (PERMANENT_NOTE_ERRORS.has(code)) {
      outboxRemove(item.client_id);
      if (li) markFailed(li, ack.error && ack.error.message);
      return;
    }
    if (code === "unauthenticated") {
      sessionExpired();
      return;
    }
    // timeout, disconnected, rate_limited, internal: keep it pending; retry now-ish if still connected,
    // and in any case after the next join.
    if (socket.connected && state.joined) {
      setTimeout(() => {
        if (readOutbox().some((i) => i.client_id === item.client_id)) sendNote(item);
      }, RETRY_NOTE_MS);
    }
  }

  function flushOutbox() {
    for (const item of readOutbox()) sendNote(item);
  }

  function onNoteSubmit(event) {
    event.preventDefault();
    if (state.terminal === "closed" || !ui.noteText) return;
    const text = ui.noteText.value.trim();
    if (!text) return;
    const item = { client_id: newClientId(), text, created_at: new Date().toISOString(), user_id: state.userId };
    outboxAdd(item);
    renderPendingNote(item);
    ui.noteText.value = "";
    ui.noteText.focus();
    sendNote(item);
  }

  function reconcileNotes(notes) {
    if (!Array.isArray(notes)) return;
    for (const note of notes) acceptSavedNote(note);
  }

  function loadOutboxAtStart() {
    for (const item of readOutbox()) {
      const li = noteItem(item.client_id);
      if (li && li.dataset.noteId) {
        outboxRemove(item.client_id); // the page was rendered after the server saved it
        continue;
      }
      renderPendingNote(item);
    }
    if (ui.notesList) ui.notesList.scrollTop = ui.notesList.scrollHeight;
  }

  function disableNotes() {
    if (ui.noteText) ui.noteText.disabled = true;
    if (ui.noteSend) ui.noteSend.disabled = true;
    if (ui.noteForm) ui.noteForm.classList.add("disabled");
  }

  // ==========================================================================================================
  // lifecycle: join, reconnect, close, replace, expire, leave
  // ==========================================================================================================

  function shutdown(kind) {
    if (state.terminal) return false;
    state.terminal = kind;
    state.joined = false;
    state.joinGeneration += 1;
    clearTimeout(state.statusTimer);
    closeAllPeers();
    stopMedia();
    state.participants.clear();
    renderParticipants();
    renderControls();
    if (ui.status) ui.status.dataset.state = kind;
    root.dataset.roomState = kind;
    return true;
  }

  function roomClosed(status) {
    if (status) root.dataset.status = status;
    const wasJoined = state.joined;
    if (!shutdown("closed")) return;
    disableNotes();
    live.onClosed();
    // Tell the server we are out, so the record shows when we left.
    if (wasJoined) emitAck(socket, "room.leave", { consultation_id: state.cid }, ACK_MS);
    const link =
      state.role === "clinician" && state.recordUrl ? { href: state.recordUrl, text: t("record") } : null;
    showBanner(t("room_closed"), link);
    if (ui.status) ui.status.textContent = t("room_closed");
  }

  function roomReplaced() {
    if (!shutdown("replaced")) return;
    showBanner(t("room_replaced"));
    if (ui.status) ui.status.textContent = t("room_replaced");
    socket.disconnect();
  }

  function sessionExpired() {
    if (!shutdown("expired")) return;
    showBanner(t("session_expired"), { href: "/login", text: t("login") });
    if (ui.status) ui.status.textContent = t("session_expired");
    socket.disconnect();
  }

  function joinRefused(error) {
    if (!shutdown("refused")) return;
    const message = (error && error.message) || error.code || "error";
    showBanner(message);
    if (ui.status) ui.status.textContent = message;
    flushOutbox();
  }

  async function leave() {
    const wasJoined = state.joined;
    shutdown("left");
    if (wasJoined && socket.connected) {
      await emitAck(socket, "room.leave", { consultation_id: state.cid }, 2000);
    }
    socket.disconnect();
    window.location.assign("/dashboard");
  }

  async function onConnect() {
    state.everConnected = true;
    if (state.terminal) return;
    const generation = ++state.joinGeneration;
    state.joined = false;
    state.myPeerId = socket.id;
    // A new connection is a new peer id: the others drop our old one, so rebuild every connection.
    closeAllPeers();
    state.participants.clear();
    renderParticipants();
    renderStatus();
    await state.mediaReady;
    if (generation !== state.joinGeneration || !socket.connected || state.terminal) return;
    const ack = await emitAck(socket, "room.join", { consultation_id: state.cid }, ACK_MS);
    if (generation !== state.joinGeneration || !socket.connected || state.terminal) return;
    if (!ack.ok) {
      onJoinFailed(ack.error || {}, generation);
      return;
    }
    onJoined(ack);
  }

  function onJoinFailed(error, generation) {
    const code = error.code || "internal";
    warn("room.join failed:", code, error.message);
    if (code === "unauthenticated") sessionExpired();
    else if (["forbidden", "not_found", "conflict", "room_full", "invalid"].includes(code)) joinRefused(error);
    else {
      setTimeout(() => {
        if (generation === state.joinGeneration && socket.connected && !state.terminal) onConnect();
      }, REJOIN_MS);
    }
  }

  function onJoined(ack) {
    state.myPeerId = ack.peer_id || socket.id;
    state.iceServers = sanitizeIceServers(ack.ice_servers);
    for (const peer of state.peers.values()) {
      // Connections opened by an offer that beat our join ack were made without the TURN servers.
      try {
        peer.pc.setConfiguration({ ...peer.pc.getConfiguration(), iceServers: state.iceServers });
      } catch (err) {
        warn("setConfiguration:", err && err.message);
      }
    }
    if (ack.status) showStatus(ack.status);
    if (ack.status && TERMINAL_STATUSES.has(ack.status)) {
      state.joined = true; // so that roomClosed says goodbye to the server
      reconcileNotes(ack.notes);
      live.onJoined(ack);
      roomClosed(ack.status);
      return;
    }
    const participants = Array.isArray(ack.participants) ? ack.participants : [];
    for (const p of participants) {
      if (p && p.peer_id && p.peer_id !== state.myPeerId) state.participants.set(p.peer_id, p);
    }
    state.joined = true;
    reconcileNotes(ack.notes);
    live.onJoined(ack);
    // We are the newcomer: we offer to everyone already here (unless one of them beat us to it).
    for (const p of participants) {
      if (p && p.peer_id && p.peer_id !== state.myPeerId && !state.peers.has(p.peer_id)) {
        createPeer(p.peer_id, { offerer: true });
      }
    }
    renderParticipants();
    renderStatus();
    document.body.dataset.roomReady = "1";
    flushOutbox();
  }

  function onPeerJoined(msg) {
    if (!msg || Number(msg.consultation_id) !== state.cid || state.terminal || !msg.peer) return;
    const p = msg.peer;
    if (!p.peer_id || p.peer_id === state.myPeerId) return;
    state.participants.set(p.peer_id, p);
    // No connection yet: the newcomer offers, we answer (avoids glare).
    renderParticipants();
    renderStatus();
    announce("peer_joined", { name: p.display_name });
  }

  function onPeerLeft(msg) {
    if (!msg || Number(msg.consultation_id) !== state.cid || state.terminal) return;
    const name = peerName(msg.peer_id);
    const known = state.participants.delete(msg.peer_id);
    closePeer(msg.peer_id);
    renderParticipants();
    renderStatus();
    if (known) announce("peer_left", { name });
  }

  function onConsultationUpdated(msg) {
    const c = msg && msg.consultation;
    if (!c || Number(c.id) !== state.cid) return;
    showStatus(c.status);
  }

  /** The consultation's state in the patient banner, kept current as it changes (accepted, started). */
  function showStatus(status) {
    root.dataset.status = status;
    const label = document.getElementById("room-status");
    if (label) label.textContent = t(`status_${status}`);
    const cancel = document.getElementById("cancel-request");
    if (cancel && !["requested", "offered"].includes(status)) cancel.closest("section").hidden = true;
  }

  // ==========================================================================================================
  // wiring
  // ==========================================================================================================

  if (ui.btnMute) ui.btnMute.addEventListener("click", toggleMute);
  if (ui.btnCamera) ui.btnCamera.addEventListener("click", toggleCamera);
  if (ui.btnAudioOnly) ui.btnAudioOnly.addEventListener("click", () => toggleAudioOnly());
  if (ui.btnLeave) ui.btnLeave.addEventListener("click", () => leave());
  if (ui.noteForm) ui.noteForm.addEventListener("submit", onNoteSubmit);
  if (ui.noteText) {
    ui.noteText.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        if (ui.noteForm && typeof ui.noteForm.requestSubmit === "function") ui.noteForm.requestSubmit();
        else if (ui.noteForm) ui.noteForm.dispatchEvent(new Event("submit", { cancelable: true }));
      }
    });
  }

  renderControls();
  loadOutboxAtStart();
  state.mediaReady = acquireMedia().catch((err) => warn("media setup:", err));

  socket.on("connect", () => {
    onConnect().catch((err) => warn("join:", err));
  });
  socket.on("disconnect", (reason) => {
    state.joined = false;
    state.joinGeneration += 1;
    // Peer connections stay up until we are back: media may still flow while signaling is down.
    renderStatus();
    if (reason === "io server disconnect" && !state.terminal) {
      setTimeout(() => {
        if (!socket.connected && !state.terminal) socket.connect();
      }, REJOIN_MS);
    }
  });
  socket.on("connect_error", (err) => {
    if (isUnauthenticated(err)) {
      sessionExpired();
      return;
    }
    warn("socket connect error:", err && err.message);
    renderStatus();
    if (!socket.active && !state.terminal) {
      // Refused by the server (not a network error): socket.io will not retry by itself.
      setTimeout(() => {
        if (!socket.connected && !state.terminal) socket.connect();
      }, REJOIN_MS);
    }
  });
  socket.on("room.peer_joined", onPeerJoined);
  socket.on("room.peer_left", onPeerLeft);
  socket.on("rtc.signal", onSignal);
  socket.on("note.added", (msg) => acceptSavedNote(msg && msg.note));
  socket.on("consultation.updated", onConsultationUpdated);
  socket.on("room.closed", (msg) => {
    if (msg && Number(msg.consultation_id) === state.cid) roomClosed(msg.status);
  });
  socket.on("room.replaced", (msg) => {
    if (msg && Number(msg.consultation_id) === state.cid) roomReplaced();
  });
  socket.on("session.expired", () => sessionExpired());

  setInterval(() => {
    if (state.peers.size) watchRemoteVideo().catch((err) => warn("video watch:", err));
  }, VIDEO_WATCH_MS);

  window.addEventListener("pagehide", () => {
    for (const track of state.local.getTracks()) track.stop();
  });

  // Test and debugging hooks (read-only views of the live state).
  window.teleconsultRoom = {
    get peerId() {
      return state.myPeerId;
    },
    get socketConnected() {
      return socket.connected;
    },
    get joined() {
      return state.joined;
    },
    get terminal() {
      return state.terminal;
    },
    get audioOnly() {
      return state.audioOnly;
    },
    get peers() {
      return new Map(this.stats().map((s) => [s.peerId, s]));
    },
    stats() {
      return [...state.peers.values()].map((peer) => ({
        peerId: peer.id,
        connectionState: peer.pc.connectionState,
        iceConnectionState: peer.pc.iceConnectionState,
        signalingState: peer.pc.signalingState,
        dataChannels: peer.channels.map((c) => ({ label: c.label, readyState: c.readyState })),
      }));
    },
    outbox() {
      return readOutbox();
    },
    monitorStats() {
      return live.stats();
    },
    vitalsOutbox() {
      return live.outbox();
    },
    /** Force an ICE restart towards every peer (tests of the restart and glare paths). */
    restartIce() {
      for (const peer of state.peers.values()) {
        peer.lastIceRestart = 0;
        restartIce(peer);
      }
    },
  };
}
