// The video stage: our own preview, one tile per remote publisher (its tracks as they arrive), the audio-only
// badge, and the note above the videos (media problems, sound blocked until a click). Used by media.js only.

import { el, warn } from "../common.js";

/** Tiles drawn from the `media` state of media.js. `ctx`: see startConference in conference-room.js. */
export function createTiles(ctx, media) {
  const { state, ui, t } = ctx;

  function showMediaNote(text) {
    if (!ui.mediaNote) return;
    ui.mediaNote.textContent = text;
    ui.mediaNote.hidden = !text;
  }

  function countTiles() {
    if (ui.videos) ui.videos.dataset.count = String(ui.videos.children.length);
  }

  function renderSelfTile() {
    const local = media.local;
    const videoTracks = local ? local.getVideoTracks() : [];
    if (!local || state.phase !== "inside") {
      if (media.selfTile) media.selfTile.figure.remove();
      media.selfTile = null;
      countTiles();
      return;
    }
    if (!media.selfTile) {
      const video = el("video", { autoplay: true, playsinline: true });
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      const figure = el("figure", { class: "cr-tile self", dataset: { userId: String(state.userId) } }, video);
      figure.append(el("figcaption"));
      if (ui.videos) ui.videos.prepend(figure);
      media.selfTile = { figure, video };
    }
    const { figure, video } = media.selfTile;
    const caption = `${ctx.people.selfName()} (${t("you")}) · ${ctx.people.selfSite()}`;
    figure.querySelector("figcaption").textContent = caption;
    figure.classList.toggle("no-video", videoTracks.length === 0);
    setBadge(figure, media.audioOnly || videoTracks.length === 0 ? t("audio_only") : "");
    const wanted = videoTracks.length ? videoTracks[0] : null;
    const shown = video.srcObject ? video.srcObject.getVideoTracks()[0] : null;
    if (wanted !== shown) {
      video.srcObject = wanted ? new MediaStream([wanted]) : null;
      if (wanted) video.play().catch((err) => err && err.name !== "AbortError" && warn("preview:", err.name));
    }
    countTiles();
  }

  function setBadge(figure, text) {
    let badge = figure.querySelector(".cr-badge");
    if (!text) {
      if (badge) badge.remove();
      return;
    }
    if (!badge) {
      badge = el("span", { class: "cr-badge" });
      figure.append(badge);
    }
    badge.textContent = text;
  }

  function ensureTile(publisherId) {
    let tile = media.tiles.get(publisherId);
    if (tile) return tile;
    const info = media.publishers.get(publisherId) || { user_id: 0, display_name: "", facility_name: "" };
    const video = el("video", { autoplay: true, playsinline: true });
    video.autoplay = true;
    video.playsInline = true;
    const caption = [info.display_name, info.facility_name].filter(Boolean).join(" · ");
    const figure = el(
      "figure",
      { class: "cr-tile remote no-video", dataset: { publisherId: String(publisherId), userId: String(info.user_id) } },
      video,
      el("figcaption", { text: caption }),
    );
    if (info.audio_only) setBadge(figure, t("audio_only"));
    if (ui.videos) ui.videos.append(figure);
    tile = { figure, video, stream: new MediaStream() };
    media.tiles.set(publisherId, tile);
    countTiles();
    return tile;
  }

  function removeTile(publisherId) {
    const tile = media.tiles.get(publisherId);
    if (!tile) return;
    media.tiles.delete(publisherId);
    tile.video.srcObject = null;
    tile.figure.remove();
    countTiles();
  }

  function onRemoteTrack(sub, event) {
    const mid = event.transceiver ? event.transceiver.mid : null;
    const info = sub.mids.get(String(mid));
    if (!info) return;
    const tile = ensureTile(info.publisher_id);
    const track = event.track;
    tile.stream.addTrack(track);
    if (track.kind === "video") {
      const show = () => tile.figure.classList.toggle("no-video", track.muted || track.readyState !== "live");
      track.addEventListener("mute", show);
      track.addEventListener("unmute", show);
      track.addEventListener("ended", show);
      show();
    }
    if (tile.video.srcObject !== tile.stream) tile.video.srcObject = tile.stream;
    playRemote(tile.video);
  }

  function playRemote(video) {
    const attempt = video.play();
    if (!attempt || typeof attempt.catch !== "function") return;
    attempt.catch((err) => {
      if (err && err.name === "NotAllowedError" && !video.muted) {
        // Sound needs a click first in this browser: play muted now, turn the sound on at the first gesture.
        video.muted = true;
        video.play().catch((err2) => warn("remote video:", err2 && err2.name));
        showMediaNote(t("sound_blocked"));
        const unmute = () => {
          for (const tile of media.tiles.values()) {
            tile.video.muted = false;
            tile.video.play().catch(() => {});
          }
          if (ui.mediaNote && ui.mediaNote.textContent === t("sound_blocked")) showMediaNote("");
        };
        document.addEventListener("pointerdown", unmute, { once: true });
        document.addEventListener("keydown", unmute, { once: true });
      } else if (err && err.name !== "AbortError") {
        warn("remote video:", err && err.name);
      }
    });
  }

  return { showMediaNote, renderSelfTile, removeTile, onRemoteTrack };
}
