// The bare peer of bench/join_time.py: join a room on bench/relay_peer.py, the second joiner offers to the
// first, trickle ICE, show the other's video. No reconnection, no perfect negotiation, no notes: the least
// a browser needs to get the other's camera on screen, to put teleconsult's join time in context.

import { io } from "/vendor/socket.io/socket.io.esm.min.js";

const room = new URLSearchParams(window.location.search).get("room") || "bench";
const peers = new Map(); // peer id -> {pc, pending: [candidates]}
const socket = io({ transports: ["websocket"] }); // as teleconsult's createSocket()
const media = navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });

media.then((stream) => {
  const local = document.getElementById("local-video");
  local.srcObject = stream;
  local.play().catch(() => {});
});

function send(to, payload) {
  socket.emit("signal", { to, ...payload }, () => {});
}

async function createPeer(id) {
  const stream = await media;
  const pc = new RTCPeerConnection({ iceServers: [] });
  const peer = { pc, pending: [] };
  peers.set(id, peer);
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  pc.onicecandidate = ({ candidate }) => send(id, { candidate: candidate ? candidate.toJSON() : null });
  pc.ontrack = ({ streams, track }) => {
    let video = document.querySelector(`video[data-peer-id="${id}"]`);
    if (!video) {
      video = document.createElement("video");
      video.className = "remote-video";
      video.autoplay = true;
      video.playsInline = true;
      video.dataset.peerId = id;
      document.getElementById("remote-videos").append(video);
    }
    if (!video.srcObject) video.srcObject = streams[0] || new MediaStream();
    if (!video.srcObject.getTracks().includes(track)) video.srcObject.addTrack(track);
    video.play().catch(() => {});
  };
  return peer;
}

async function onSignal({ from, description, candidate }) {
  let peer = peers.get(from);
  if (!peer) peer = await createPeer(from);
  const { pc } = peer;
  if (description) {
    await pc.setRemoteDescription(description);
    for (const queued of peer.pending.splice(0)) await pc.addIceCandidate(queued || undefined);
    if (description.type === "offer") {
      await pc.setLocalDescription();
      send(from, { description: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
    }
  } else if (!pc.remoteDescription) {
    peer.pending.push(candidate);
  } else {
    await pc.addIceCandidate(candidate || undefined);
  }
}

// Signals from one peer are applied in order.
let chain = Promise.resolve();
socket.on("signal", (msg) => {
  chain = chain.then(() => onSignal(msg)).catch((err) => console.warn("[peer] signal:", err));
});

socket.on("connect", async () => {
  await media;
  socket.emit("join", { room }, async (ack) => {
    document.body.dataset.joined = "1";
    for (const id of ack.peers || []) {
      const { pc } = await createPeer(id);
      await pc.setLocalDescription();
      send(id, { description: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
    }
  });
});
