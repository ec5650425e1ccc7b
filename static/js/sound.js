// Alert sounds made with the Web Audio API (no audio files): a repeating ring for a specialist's offer and a
// short chime for a coordinator's escalation. Browsers keep audio silent until the page has had a user
// gesture, so the first click or key press anywhere on the page unlocks it, and pages offer an explicit
// "enable sound & notifications" button that also asks for desktop notifications.

import { warn } from "./common.js";

const RING_EVERY_MS = 2400;

export function createSound() {
  let ctx = null;
  let ringTimer = null;
  const listeners = new Set();

  function changed() {
    for (const fn of listeners) {
      try {
        fn();
      } catch (err) {
        warn("sound listener:", err);
      }
    }
  }

  function context() {
    if (ctx) return ctx;
    const Ctor = window.AudioContext || window.webkitAudioContext;
    if (!Ctor) return null;
    try {
      ctx = new Ctor();
      ctx.addEventListener("statechange", changed);
    } catch (err) {
      warn("no audio:", err);
      ctx = null;
    }
    return ctx;
  }

  /** Try to start audio; resolves to true when sound can play. Call from a user gesture to be sure. */
  async function unlock() {
    const audio = context();
    if (!audio) return false;
    if (audio.state !== "running") {
      try {
        await audio.resume();
      } catch (err) {
        warn("audio resume:", err);
      }
    }
    changed();
    return audio.state === "running";
  }

  function tone(freq, at, seconds, volume = 0.25) {
    const audio = ctx;
    if (!audio || audio.state !== "running") return;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    // A short attack and release: no clicks.
    gain.gain.setValueAtTime(0, at);
    gain.gain.linearRampToValueAtTime(volume, at + 0.02);
    gain.gain.setValueAtTime(volume, at + seconds - 0.03);
    gain.gain.linearRampToValueAtTime(0, at + seconds);
    osc.connect(gain).connect(audio.destination);
    osc.start(at);
    osc.stop(at + seconds + 0.01);
  }

  function ringOnce() {
    if (!ctx || ctx.state !== "running") return;
    const now = ctx.currentTime + 0.02;
    // Two quick double beeps, like a phone.
    for (const [offset, freq] of [
      [0, 880],
      [0.18, 1175],
      [0.5, 880],
      [0.68, 1175],
    ]) {
      tone(freq, now + offset, 0.15);
    }
  }

  return {
    unlock,
    get enabled() {
      return Boolean(ctx && ctx.state === "running");
    },
    get ringing() {
      return ringTimer !== null;
    },
    onChange(fn) {
      listeners.add(fn);
    },
    startRinging() {
      if (ringTimer !== null) return;
      // Starts at once where the browser allows sound without a gesture; otherwise at the first gesture.
      unlock().then(() => {
        if (ringTimer !== null) ringOnce();
      });
      ringTimer = setInterval(ringOnce, RING_EVERY_MS);
      changed();
    },
    stopRinging() {
      if (ringTimer === null) return;
      clearInterval(ringTimer);
      ringTimer = null;
      changed();
    },
    /** A short three-note alert (escalations). */
    chime() {
      if (!ctx || ctx.state !== "running") return;
      const now = ctx.currentTime + 0.02;
      tone(660, now, 0.12);
      tone(880, now + 0.15, 0.12);
      tone(1320, now + 0.3, 0.25);
    },
  };
}

/** Unlock audio on the first gesture anywhere on the page (browsers refuse sound before one). */
export function unlockOnFirstGesture(sound) {
  const events = ["pointerdown", "keydown", "touchstart"];
  const once = () => {
    for (const name of events) document.removeEventListener(name, once, true);
    sound.unlock();
  };
  for (const name of events) document.addEventListener(name, once, true);
}

/**
 * Wire the "enable sound & notifications" button: unlock audio, ask for desktop notifications, and show what
 * is on. `button` may be null (page without one).
 */
export function wireSoundButton(button, sound, t) {
  if (!button) return;
  const label = button.querySelector(".sound-label") || button;
  const render = () => {
    const notifications = "Notification" in window ? Notification.permission : "unsupported";
    const allOn = sound.enabled && notifications !== "default";
    button.dataset.sound = sound.enabled ? "on" : "off";
    button.dataset.notifications = notifications;
    button.setAttribute("aria-pressed", allOn ? "true" : "false");
    if (!sound.enabled) label.textContent = t("sound_enable");
    else if (notifications === "denied") label.textContent = t("sound_on_notifications_blocked");
    else if (notifications === "default") label.textContent = t("sound_enable");
    else label.textContent = t("sound_on");
  };
  button.addEventListener("click", async () => {
    await sound.unlock();
    if ("Notification" in window && Notification.permission === "default") {
      try {
        await Notification.requestPermission();
      } catch (err) {
        warn("notification permission:", err);
      }
    }
    render();
  });
  sound.onChange(render);
  render();
}
