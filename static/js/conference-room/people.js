// Who is in the room and who waits to be let in: the participants, the host's lobby (admit, refuse) and the
// host's controls (end the session for everyone). Entry and DOM map: static/js/conference-room.js.

import { ACK_TIMEOUT_MS, el, emitAck, formatTime, warn } from "../common.js";
import { MEDIA_ACK_MS, forThisSession } from "./shared.js";

/** A participant's key in state.participants: one person may be in the room from two sites. */
export function participantKey(p) {
  return `${p.user_id}:${p.facility_id}`;
}

/** Participants, lobby and host controls. `ctx`: see startConference in conference-room.js. */
export function createPeople(ctx) {
  const { state, ui, t, socket } = ctx;

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
    if (!forThisSession(state, msg) || state.phase !== "inside" || !msg.participant) return;
    const key = participantKey(msg.participant);
    const known = state.participants.has(key);
    state.participants.set(key, msg.participant);
    renderParticipants();
    if (!known) ctx.room.announce("joined", { name: msg.participant.display_name });
  }

  function onLeft(msg) {
    if (!forThisSession(state, msg) || state.phase !== "inside") return;
    if (Number(msg.user_id) === state.userId) return; // our own earlier connection, replaced by this one
    const key = participantKey(msg);
    const who = state.participants.get(key);
    state.participants.delete(key);
    renderParticipants();
    ctx.media.removePublishersOf(Number(msg.user_id));
    if (who) ctx.room.announce("left", { name: who.display_name });
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
    const ack = await emitAck(socket, "conference.admit", payload, ACK_TIMEOUT_MS);
    if (ack.ok && ack.admission) onAdmission({ entry: ack.admission });
    else {
      button.disabled = false;
      ctx.room.announceError(ack.error);
    }
  }

  function onKnock(msg) {
    const entry = msg && msg.entry;
    if (!entry || !forThisSession(state, entry) || !state.isHost) return;
    const known = state.lobby.has(entry.user_id);
    state.lobby.set(entry.user_id, entry);
    renderLobby();
    if (!known) ctx.room.announce("knocked", { name: entry.display_name });
  }

  function onAdmission(msg) {
    const entry = msg && msg.entry;
    if (!entry) return;
    if (entry.user_id === state.userId && state.phase === "lobby") {
      if (entry.status === "admitted") ctx.room.enter().catch((err) => warn("enter:", err));
      else if (entry.status === "refused") ctx.room.refused();
      return;
    }
    if (state.isHost && forThisSession(state, entry)) {
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
    if (ack.ok || (ack.error && ack.error.code === "conflict")) ctx.room.ended();
    else ctx.room.announceError(ack.error);
  }

  if (ui.lobby) ui.lobby.addEventListener("click", (event) => onLobbyClick(event).catch((err) => warn("admit:", err)));
  if (ui.end) {
    ui.end.addEventListener("click", () => {
      ui.end.hidden = true;
      if (ui.endBox) ui.endBox.hidden = false;
    });
  }
  if (ui.endCancel) ui.endCancel.addEventListener("click", () => renderHostControls());
  if (ui.endConfirm) ui.endConfirm.addEventListener("click", () => endSession().catch((err) => warn("end:", err)));

  return {
    selfName,
    selfSite,
    renderParticipants,
    renderLobby,
    renderHostControls,
    onEntered,
    onLeft,
    onKnock,
    onAdmission,
  };
}
