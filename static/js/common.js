// Shared browser helpers for teleconsult pages: i18n, time display, timeouts, the socket.io connection.
// Plain ES module, no bundler. Nothing here touches the DOM of a particular page.

import { io } from "/vendor/socket.io/socket.io.esm.min.js";

export const TIME_ZONE = "Asia/Ho_Chi_Minh";
export const ACK_TIMEOUT_MS = 10000;

// --- logging -------------------------------------------------------------------------------------------------

export function warn(...args) {
  // Never throws, never alerts: the clinic must keep working whatever a log call does.
  try {
    console.warn("[teleconsult]", ...args);
  } catch {
    /* console unavailable */
  }
}

let rejectionLoggerInstalled = false;

/** Log (instead of surfacing) any promise rejection nobody handled. */
export function logUnhandledRejections() {
  if (rejectionLoggerInstalled) return;
  rejectionLoggerInstalled = true;
  window.addEventListener("unhandledrejection", (event) => {
    warn("unhandled rejection:", event.reason);
    event.preventDefault();
  });
}

// --- i18n ----------------------------------------------------------------------------------------------------

/**
 * Replace placeholders in a translated string. Both gettext's Python style `%(name)s` and the
 * str.format style `{name}` are understood, so templates may use either.
 */
export function interpolate(text, params) {
  if (!params) return String(text);
  const value = (name, whole) =>
    Object.prototype.hasOwnProperty.call(params, name) && params[name] != null ? String(params[name]) : whole;
  return String(text)
    .replace(/%\((\w+)\)s/g, (whole, name) => value(name, whole))
    .replace(/\{(\w+)\}/g, (whole, name) => value(name, whole));
}

/**
 * Load translations from `<script type="application/json" id="...">`. Returns `t(key, params)`:
 * the translated string, else the English fallback, else the key itself.
 */
export function loadI18n(scriptId, fallback = {}) {
  let strings = {};
  const node = document.getElementById(scriptId);
  if (node) {
    try {
      const parsed = JSON.parse(node.textContent || "{}");
      if (parsed && typeof parsed === "object") strings = parsed;
    } catch (err) {
      warn(`could not parse #${scriptId}:`, err);
    }
  }
  return function t(key, params) {
    const raw = typeof strings[key] === "string" && strings[key] !== "" ? strings[key] : fallback[key] ?? key;
    return interpolate(raw, params);
  };
}

// --- time ----------------------------------------------------------------------------------------------------

/** Parse an ISO 8601 timestamp; one without an offset is UTC (that is how the server stores time). */
export function parseIso(iso) {
  if (iso instanceof Date) return iso;
  if (typeof iso !== "string" || iso === "") return null;
  let text = iso.trim();
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) text += "Z";
  const date = new Date(text.replace(" ", "T"));
  return Number.isNaN(date.getTime()) ? null : date;
}

/** HH:MM in Vietnam time. */
export function formatTime(iso) {
  const date = parseIso(iso);
  if (!date) return "";
  return date.toLocaleTimeString("vi-VN", { timeZone: TIME_ZONE, hour: "2-digit", minute: "2-digit" });
}

/** dd/mm/yyyy HH:MM in Vietnam time. */
export function formatDateTime(iso) {
  const date = parseIso(iso);
  if (!date) return "";
  const day = date.toLocaleDateString("en-GB", {
    timeZone: TIME_ZONE,
    day: "2-digit",
    month: "2-digit",
    year: "numeric",
  });
  return `${day} ${formatTime(date)}`;
}

// --- promises ------------------------------------------------------------------------------------------------

export class TimeoutError extends Error {
  constructor(label, ms) {
    super(`${label || "operation"} timed out after ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/** Resolve or reject like `promise`, or reject with TimeoutError after `ms`. The original keeps running. */
export function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(label, ms)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// --- socket.io -----------------------------------------------------------------------------------------------

/** The one socket of a page: same origin, websocket only, the session cookie authenticates. */
export function createSocket(options = {}) {
  const socket = io({
    transports: ["websocket"],
    withCredentials: true,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 5000,
    randomizationFactor: 0.3,
    timeout: 10000,
    ...options,
  });
  // In-app notifications (conference reminders) pushed live: the top bar's bell (notifications.js) shows
  // them; pages without a socket get them from its periodic refresh.
  socket.on("notification.new", (payload) => {
    if (payload && payload.notification) {
      window.dispatchEvent(new CustomEvent("teleconsult:notification", { detail: payload.notification }));
    }
  });
  return socket;
}

/**
 * Emit a client event and wait for its ack. Never rejects: a lost link or a silent server becomes
 * `{ok: false, error: {code: "timeout" | "disconnected", ...}}`, so callers handle one shape.
 * Nothing is emitted while disconnected (socket.io would buffer it and replay it after a reconnect,
 * when it may no longer make sense); callers that must not lose data keep their own outbox.
 */
export function emitAck(socket, event, payload, ms = ACK_TIMEOUT_MS) {
  return new Promise((resolve) => {
    if (!socket.connected) {
      resolve({ ok: false, error: { code: "disconnected", message: "not connected" } });
      return;
    }
    try {
      socket.timeout(ms).emit(event, payload, (err, ack) => {
        if (err) resolve({ ok: false, error: { code: "timeout", message: `no answer to ${event}` } });
        else if (!ack || typeof ack !== "object") {
          resolve({ ok: false, error: { code: "internal", message: `malformed ack to ${event}` } });
        } else resolve(ack);
      });
    } catch (err) {
      warn(`emit ${event} failed:`, err);
      resolve({ ok: false, error: { code: "internal", message: String(err) } });
    }
  });
}

/**
 * Did the server refuse the connection because the session is missing or expired?
 * python-socketio puts the refusal into `err.message` (as a string, possibly the repr of a dict)
 * and optionally `err.data`; accept every shape.
 */
export function isUnauthenticated(err) {
  if (!err) return false;
  const data = err.data;
  if (data && typeof data === "object" && data.code === "unauthenticated") return true;
  if (typeof data === "string" && data.includes("unauthenticated")) return true;
  const message = typeof err.message === "string" ? err.message : "";
  return message === "unauthenticated" || message.includes("'unauthenticated'") || message.includes('"unauthenticated"');
}

// --- DOM -----------------------------------------------------------------------------------------------------

/** Small element builder; text only through textContent (never innerHTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Find the first child of `parent` whose `data-<key>` equals `value` (no selector escaping needed). */
export function childByData(parent, key, value) {
  if (!parent) return null;
  const wanted = String(value);
  for (const child of parent.children) {
    if (child.dataset && child.dataset[key] === wanted) return child;
  }
  return null;
}
