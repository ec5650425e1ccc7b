// What the conference room's modules share: the English fallback strings (the page's #conference-i18n has the
// translations), the timeouts more than one module uses, and the test for an event of our session.
// Entry: static/js/conference-room.js.

export const ENGLISH = {
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

export const MEDIA_ACK_MS = 30000; // the server waits on the SFU for these
export const TRANSIENT_MS = 4000; // how long a passing message ("Saved", "… joined") stays

/** Is this room event (or record) about the session we are in? */
export function forThisSession(state, msg) {
  return Boolean(msg && state.session && Number(msg.session_id) === state.session.id);
}
