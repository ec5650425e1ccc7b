// The viewed case's notes. A note is shown at once and kept in a localStorage outbox until the server confirms
// it, so it survives a dropped link: it is resent a moment later, and after every re-entry (the server
// deduplicates by client_id). Entry and DOM map: static/js/conference-room.js.

import { ACK_TIMEOUT_MS, el, emitAck, formatTime, warn } from "../common.js";
import { TRANSIENT_MS, forThisSession } from "./shared.js";

const RETRY_NOTE_MS = 5000;
// A note refused for one of these reasons will never be accepted as it is: tell the writer, stop retrying.
const PERMANENT_NOTE_ERRORS = new Set(["invalid", "forbidden", "too_large", "not_found", "conflict"]);
const CLIENT_ID_RE = /^[A-Za-z0-9_-]{8,64}$/;

/** Notes and their outbox. `ctx`: see startConference in conference-room.js. */
export function createNotes(ctx) {
  const { state, ui, t, socket } = ctx;
  const outboxKey = `tc-conference-outbox-${state.conferenceId}`;
  const failedNotes = new Map(); // client_id -> {item, message}
  const savedNotes = new Set(); // client ids confirmed a moment ago ("Saved")
  const inflightNotes = new Set();
  let memoryOutbox = null; // the outbox, when localStorage cannot hold it

  // One key per conference; each item carries its writer and session, so on a shared clinic PC one user's unsent
  // notes are never sent under another user's name, nor into another session.
  function readAllOutbox() {
    if (memoryOutbox) return memoryOutbox.slice();
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
    if (memoryOutbox) {
      memoryOutbox = items.slice();
      return;
    }
    try {
      if (items.length) window.localStorage.setItem(outboxKey, JSON.stringify(items));
      else window.localStorage.removeItem(outboxKey);
    } catch (err) {
      warn("localStorage unavailable; keeping unsent notes in memory:", err && err.message);
      memoryOutbox = items.slice();
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
    const c = ctx.agenda.viewedCase();
    if (!c) return;
    const saved = (c.notes || []).map((n) =>
      noteLi({
        clientId: n.client_id,
        noteId: String(n.id),
        author: n.author_name,
        createdAt: n.created_at,
        text: n.text,
        stateText: n.author_user_id === state.userId && savedNotes.has(n.client_id) ? t("note_saved") : "",
      }),
    );
    const sessionId = state.session ? state.session.id : null;
    const pending = readOutbox()
      .filter((i) => i.agenda_item_id === c.item_id && i.session_id === sessionId)
      .map((i) =>
        noteLi({ clientId: i.client_id, author: t("you"), createdAt: i.created_at, text: i.text, cls: "note-pending", stateText: t("note_pending") }),
      );
    const failed = [...failedNotes.values()]
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
    if (!note || !forThisSession(state, note)) return;
    const c = state.cases.get(note.agenda_item_id);
    if (!c) return;
    c.notes = c.notes || [];
    if (!c.notes.some((n) => n.id === note.id)) c.notes.push(note);
    if (note.author_user_id === state.userId) {
      outboxRemove(note.client_id);
      if (!savedNotes.has(note.client_id)) {
        savedNotes.add(note.client_id);
        setTimeout(() => {
          savedNotes.delete(note.client_id);
          if (state.viewedItem === note.agenda_item_id) renderNotes();
        }, TRANSIENT_MS);
      }
    }
    if (state.viewedItem === note.agenda_item_id) renderNotes();
  }

  async function sendNote(item) {
    if (!socket.connected || state.phase !== "inside" || inflightNotes.has(item.client_id)) return;
    inflightNotes.add(item.client_id);
    let ack;
    try {
      const payload = {
        session_id: item.session_id,
        agenda_item_id: item.agenda_item_id,
        client_id: item.client_id,
        text: item.text,
      };
      ack = await emitAck(socket, "conference.note", payload, ACK_TIMEOUT_MS);
    } finally {
      inflightNotes.delete(item.client_id);
    }
    if (ack.ok) {
      if (ack.note) acceptSavedNote(ack.note);
      else outboxRemove(item.client_id);
      return;
    }
    const code = (ack.error && ack.error.code) || "internal";
    if (code === "unauthenticated") {
      ctx.room.sessionExpired();
      return;
    }
    if (PERMANENT_NOTE_ERRORS.has(code)) {
      outboxRemove(item.client_id);
      failedNotes.set(item.client_id, { item, message: ack.error && ack.error.message });
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
      failedNotes.set(item.client_id, { item, message: t("ended") });
    }
  }

  function onNoteSubmit(event) {
    event.preventDefault();
    const c = ctx.agenda.viewedCase();
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

  if (ui.noteForm) ui.noteForm.addEventListener("submit", onNoteSubmit);
  if (ui.noteText) {
    ui.noteText.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        ui.noteForm.requestSubmit();
      }
    });
  }

  return { renderNotes, acceptSavedNote, readOutbox, flushOutbox, dropStaleOutbox, failUnsentNotes };
}
