// The peer of bench/ecg_relay.py: a minimal Node socket.io (v4) relay of binary waveform frames.
//
// Same events and fan-out as teleconsult's signaling server, none of its work: no authentication (the
// token in the handshake is ignored), no validation beyond reading the frame's stream id, no storage.
//   room.join   {consultation_id}           -> joins room "consultation:<id>", acks {ok: true}
//   stream.open {consultation_id, ...}      -> assigns a stream id, acks {ok: true, stream: {id}, next_seq: 0}
//   stream.frame <binary frame>             -> emits the bytes to the stream's room, acks {ok: true, seq} at once
//
//   node bench/node_relay/relay.js --port 8091        (prints "listening <port>" when ready)

"use strict";

const http = require("http");
const { Server } = require("socket.io");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

// Unsigned LEB128 at buf[pos]: [value, next position] (docs/waveform-format.md).
function uvarint(buf, pos) {
  let value = 0;
  let mult = 1;
  for (;;) {
    if (pos >= buf.length) return [-1, pos];
    const byte = buf[pos++];
    value += (byte & 0x7f) * mult;
    if (!(byte & 0x80)) return [value, pos];
    mult *= 128;
  }
}

const port = Number(arg("--port", "8091"));
const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404);
  res.end(req.url === "/healthz" ? "ok" : "");
});
// Same heartbeat as teleconsult's defaults (ping_interval_s 5, ping_timeout_s 10) and buffer limit.
const io = new Server(server, { pingInterval: 5000, pingTimeout: 10000, maxHttpBufferSize: 256 * 1024 });

const roomOfStream = new Map();
let nextStream = 0;

io.on("connection", (socket) => {
  socket.on("room.join", (msg, ack) => {
    const id = Number(msg && msg.consultation_id);
    socket.join(`consultation:${id}`);
    if (typeof ack === "function") ack({ ok: true, peer_id: socket.id, participants: [] });
  });
  socket.on("stream.open", (msg, ack) => {
    const id = ++nextStream;
    roomOfStream.set(id, `consultation:${Number(msg && msg.consultation_id)}`);
    if (typeof ack === "function") ack({ ok: true, stream: { id }, next_seq: 0 });
  });
  socket.on("stream.frame", (data, ack) => {
    if (!Buffer.isBuffer(data) || data.length < 3 || data[0] !== 0xec) {
      if (typeof ack === "function") ack({ ok: false, error: { code: "invalid", message: "not a frame" } });
      return;
    }
    const [streamId, pos] = uvarint(data, 2);
    const [seq] = uvarint(data, pos);
    const room = roomOfStream.get(streamId);
    if (room === undefined) {
      if (typeof ack === "function") ack({ ok: false, error: { code: "forbidden", message: "unknown stream" } });
      return;
    }
    io.to(room).emit("stream.frame", data);
    if (typeof ack === "function") ack({ ok: true, seq, duplicate: false });
  });
});

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${port}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
