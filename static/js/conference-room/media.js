// Video through the SFU (Janus). The browser never talks to the SFU: it sends SDP to our socket.io events
// (conference.publish, subscribe, start, layer, unpublish) and the server brokers it.
//
// One upload per site (VP8 with three simulcast layers, or audio only on a weak link) and one download
// connection per subscription (the others who publish); on a weak link the lightest layers are asked for. No
// trickle ICE: candidates are gathered completely before an SDP leaves the browser. Steps run one after another
// (queue); a generation number retires the work of an earlier entry. Entry: static/js/conference-room.js.

import { emitAck, warn, withTimeout } from "../common.js";
import { MEDIA_ACK_MS, forThisSession } from "./shared.js";
import { createTiles } from "./tiles.js";

const MEDIA_PROMPT_MS = 20000; // a person may be reading the camera permission prompt
const ICE_GATHER_MS = 5000;
const RESUBSCRIBE_MS = 2000;
const MAX_SUBSCRIBE_TRIES = 3;
// 960x540 is the smallest picture for which browsers send all three simulcast layers (below it, two).
const VIDEO = { width: { ideal: 960 }, height: { ideal: 540 }, frameRate: { ideal: 15, max: 15 } };
// Three VP8 layers (full, half, quarter size) with caps; a weak site asks the SFU for layer 0, the quarter.
// Listed high to low: Janus reads the SDP's rids in that order unless told otherwise (its JSEP "rid_order").
const SIMULCAST = [
  { rid: "h", maxBitrate: 900000 },
  { rid: "m", scaleResolutionDownBy: 2, maxBitrate: 300000 },
  { rid: "l", scaleResolutionDownBy: 4, maxBitrate: 100000 },
];
const AUDIO_ONLY_KEY = "tc-conference-audio-only";

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

/** The ICE servers of the conference.enter ack, keeping only the fields RTCPeerConnection takes. */
export function sanitizeIceServers(list) {
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

/** Publishing, subscriptions and the local camera/microphone. `ctx`: see startConference in conference-room.js. */
export function createMedia(ctx) {
  const { state, ui, t, socket } = ctx;
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
    audioOnly: loadAudioOnly(), // the weak-connection choice, remembered on this computer
    muted: false,
  };
  const tiles = createTiles(ctx, media);

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
      tiles.renderSelfTile();
      if (generation === media.generation) await publish(generation);
    });
    queue(() => subscribeKnown(generation));
  }

  function restartMedia() {
    if (state.phase !== "inside" || !state.session || !state.session.media || media.unavailable) {
      tiles.renderSelfTile();
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
    if (media.audioOnly) {
      for (const track of local.getVideoTracks()) {
        track.stop();
        local.removeTrack(track);
      }
    }
    const needAudio = local.getAudioTracks().length === 0 && !media.audioRefused;
    const needVideo = !media.audioOnly && local.getVideoTracks().length === 0 && !media.videoRefused;
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
      tiles.showMediaNote(t("media_denied"));
    }
    for (const track of local.getAudioTracks()) track.enabled = !media.muted;
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
    const video = local && !media.audioOnly ? local.getVideoTracks()[0] : null;
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
      else tiles.showMediaNote(t("video_failed", { message: (ack.error && ack.error.message) || code }));
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
    pc.ontrack = (event) => tiles.onRemoteTrack(sub, event);
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
    if (!media.audioOnly || !sub.started || !sub.connected || sub.layered || generation !== media.generation) return;
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
      ctx.room.sessionExpired();
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
    tiles.showMediaNote(t("video_unavailable"));
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
    for (const id of [...media.tiles.keys()]) tiles.removeTile(id);
  }

  function stopMedia() {
    media.generation += 1;
    closePeers();
    stopLocal();
    tiles.renderSelfTile();
  }

  function removePublisher(publisherId) {
    media.publishers.delete(publisherId);
    media.subscribed.delete(publisherId);
    tiles.removeTile(publisherId);
    for (const sub of [...media.subscriptions.values()]) {
      if (sub.publishers.delete(publisherId) && sub.publishers.size === 0) closeSubscription(sub);
    }
  }

  function onPublished(msg) {
    const p = msg && msg.publisher;
    if (!p || !forThisSession(state, msg) || p.user_id === state.userId) return;
    media.publishers.set(p.publisher_id, p);
    media.tries.delete(p.publisher_id);
    if (state.phase !== "inside" || !state.session.media || media.unavailable) return;
    const generation = media.generation;
    queue(() => subscribeKnown(generation));
  }

  function onUnpublished(msg) {
    if (!forThisSession(state, msg)) return;
    removePublisher(Number(msg.publisher_id));
  }

  function toggleMute() {
    media.muted = !media.muted;
    if (media.local) for (const track of media.local.getAudioTracks()) track.enabled = !media.muted;
    if (ui.mute) {
      ui.mute.setAttribute("aria-pressed", media.muted ? "true" : "false");
      ui.mute.textContent = media.muted ? t("unmute") : t("mute");
    }
  }

  /** Someone left the room: what they published is gone. */
  function removePublishersOf(userId) {
    for (const [publisherId, p] of [...media.publishers]) {
      if (p.user_id === userId) removePublisher(publisherId);
    }
  }

  /** The socket dropped: the server has let go of our SFU handles; conference.enter starts media again. */
  function disconnected() {
    media.generation += 1;
    closePeers();
  }

  if (ui.audioOnly) {
    ui.audioOnly.checked = media.audioOnly;
    ui.audioOnly.addEventListener("change", () => {
      media.audioOnly = ui.audioOnly.checked;
      saveAudioOnly(media.audioOnly);
      media.videoRefused = false; // an explicit choice: ask for the camera again
      restartMedia();
    });
  }
  if (ui.mute) ui.mute.addEventListener("click", toggleMute);
  window.addEventListener("pagehide", () => {
    if (media.local) for (const track of media.local.getTracks()) track.stop();
  });

  return {
    showMediaNote: tiles.showMediaNote,
    startMedia,
    stopMedia,
    disconnected,
    removePublishersOf,
    onPublished,
    onUnpublished,
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
  };
}
