// The top bar's bell: in-app notifications (conference reminders), persisted on the server.
// Loaded on every signed-in page. The count refreshes every minute and when the tab comes back; pages with a
// socket (common.js createSocket) also deliver "notification.new" live, shown at once as a toast.
// Self-contained on purpose (no socket.io import): a plain page stays light on a 3G link.

const REFRESH_MS = 60000;
const TOAST_MS = 12000;

const bell = document.getElementById("notifications");
if (bell) start(bell);

function start(root) {
  const button = root.querySelector("button.bell");
  const count = root.querySelector(".bell-count");
  const panel = root.querySelector(".bell-panel");
  const list = root.querySelector(".bell-list");
  const markAll = root.querySelector(".bell-read");
  const toast = document.getElementById("notification-toast");
  const label = root.dataset.reminderLabel || "Reminder";
  const empty = root.dataset.emptyLabel || "No notifications";
  let items = [];

  async function refresh() {
    try {
      const response = await fetch("/api/v1/notifications", { credentials: "same-origin" });
      if (!response.ok) return;
      items = (await response.json()).notifications || [];
      render();
    } catch {
      /* offline: keep what is shown, try again later */
    }
  }

  function render() {
    const unread = items.filter((n) => !n.read_at).length;
    count.textContent = unread ? String(unread) : "";
    count.hidden = unread === 0;
    button.setAttribute("aria-label", `${button.dataset.label} (${unread})`);
    list.replaceChildren();
    if (items.length === 0) {
      const li = document.createElement("li");
      li.className = "bell-empty";
      li.textContent = empty;
      list.append(li);
      return;
    }
    for (const n of items.slice(0, 20)) {
      const li = document.createElement("li");
      if (!n.read_at) li.classList.add("unread");
      const link = document.createElement("a");
      link.href = n.conference_id ? `/conferences/${n.conference_id}/room` : "/conferences";
      link.textContent = `${n.kind === "conference.reminder" ? label + ": " : ""}${n.text}`;
      li.append(link);
      list.append(li);
    }
  }

  async function markRead() {
    const ids = items.filter((n) => !n.read_at).map((n) => n.id).slice(0, 100);
    if (ids.length === 0) return;
    try {
      const response = await fetch("/api/v1/notifications/read", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
        body: JSON.stringify({ ids }),
      });
      if (response.ok) await refresh();
    } catch {
      /* offline: they stay unread */
    }
  }

  button.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    button.setAttribute("aria-expanded", String(!panel.hidden));
  });
  markAll.addEventListener("click", markRead);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
  window.addEventListener("teleconsult:notification", (event) => {
    const n = event.detail;
    if (!items.some((i) => i.id === n.id)) items.unshift({ ...n, read_at: null });
    render();
    if (toast) {
      toast.textContent = `${n.kind === "conference.reminder" ? label + ": " : ""}${n.text}`;
      toast.hidden = false;
      clearTimeout(toast.hideTimer);
      toast.hideTimer = setTimeout(() => {
        toast.hidden = true;
      }, TOAST_MS);
    }
  });
  setInterval(refresh, REFRESH_MS);
  refresh();
}
