// Injected by bench/join_time.py into every page it measures (Playwright add_init_script: runs before the
// page's own scripts, and is not subject to the page's CSP). It only observes: it timestamps (performance.now(),
// relative to the page's timeOrigin) the WebSocket frames, getUserMedia, the RTCPeerConnection milestones
// and the first frame of each remote video, into window.__bench.marks as [name, ms, detail].
(() => {
  if (window.__bench) return;
  const marks = [];
  const mark = (name, detail) => marks.push([name, performance.now(), detail === undefined ? null : detail]);
  window.__bench = { timeOrigin: performance.timeOrigin, marks };

  document.addEventListener("DOMContentLoaded", () => mark("dom.contentLoaded"), { once: true });
  window.addEventListener("load", () => mark("dom.load"), { once: true });

  // --- socket.io frames (engine.io over a websocket) -------------------------------------------------------
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      mark("ws.create");
      super(...args);
      this.addEventListener("open", () => mark("ws.open"));
      this.addEventListener("message", (event) => {
        if (typeof event.data === "string") mark("ws.in", event.data.slice(0, 120));
      });
    }
    send(data) {
      if (typeof data === "string") mark("ws.out", data.slice(0, 120));
      return super.send(data);
    }
  };

  // --- camera and microphone -------------------------------------------------------------------------------
  const devices = navigator.mediaDevices;
  if (devices && devices.getUserMedia) {
    const getUserMedia = devices.getUserMedia.bind(devices);
    devices.getUserMedia = (constraints) => {
      mark("gum.start", constraints && constraints.video ? "av" : "a");
      const request = getUserMedia(constraints);
      request.then(
        () => mark("gum.done"),
        (err) => mark("gum.error", String(err && err.name)),
      );
      return request;
    };
  }

  // --- peer connections ------------------------------------------------------------------------------------
  const NativePC = window.RTCPeerConnection;
  if (NativePC) {
    window.RTCPeerConnection = class extends NativePC {
      constructor(...args) {
        super(...args);
        mark("pc.create");
        this.addEventListener("signalingstatechange", () => mark(`pc.signaling.${this.signalingState}`));
        this.addEventListener("icegatheringstatechange", () => mark(`pc.gathering.${this.iceGatheringState}`));
        this.addEventListener("iceconnectionstatechange", () => mark(`pc.ice.${this.iceConnectionState}`));
        this.addEventListener("connectionstatechange", () => mark(`pc.conn.${this.connectionState}`));
        this.addEventListener("negotiationneeded", () => mark("pc.negotiationneeded"));
        this.addEventListener("icecandidate", (e) => mark(e.candidate ? "pc.candidate.local" : "pc.candidate.end"));
        this.addEventListener("track", (e) => mark(`pc.track.${e.track.kind}`));
      }
      setLocalDescription(...args) {
        mark("pc.sld.call");
        return super.setLocalDescription(...args).then((value) => {
          mark(`pc.sld.${this.localDescription ? this.localDescription.type : "none"}`);
          return value;
        });
      }
      setRemoteDescription(description, ...rest) {
        const type = description && description.type;
        mark(`pc.srd.call.${type}`);
        return super.setRemoteDescription(description, ...rest).then((value) => {
          mark(`pc.srd.${type}`);
          return value;
        });
      }
      addIceCandidate(...args) {
        mark("pc.candidate.remote");
        return super.addIceCandidate(...args);
      }
    };
  }

  // --- remote video: first frame presented, and "playing" as the bench's wait sees it ----------------------
  const watched = new WeakSet();
  const watch = (video) => {
    if (watched.has(video)) return;
    watched.add(video);
    mark("video.element");
    video.addEventListener("loadedmetadata", () => mark("video.loadedmetadata"), { once: true });
    video.addEventListener("playing", () => mark("video.playing"), { once: true });
    if (typeof video.requestVideoFrameCallback === "function") {
      video.requestVideoFrameCallback((now, meta) => mark("video.firstFrame", meta ? meta.width : null));
    }
    const poll = setInterval(() => {
      if (video.videoWidth > 0 && !video.paused && video.readyState >= 2) {
        mark("video.ready");
        clearInterval(poll);
      }
    }, 4);
    setTimeout(() => clearInterval(poll), 60000);
  };
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        if (node.matches("video.remote-video")) watch(node);
        for (const video of node.querySelectorAll("video.remote-video")) watch(video);
      }
    }
  }).observe(document, { childList: true, subtree: true });
})();
