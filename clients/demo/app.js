// The demo chat: everything a chat page needs from clients/js, in one file. State lives in
// memory and the cursor too (MemoryCursorStorage), so every page load syncs the whole stream
// from position 0 and rebuilds the view; a real application keeps its messages and cursor
// together (IndexedDB) and syncs only what it lacks. Text from the wire only ever goes into
// textContent, never into HTML.
import { DistrisocksClient, directConversationId } from "./client/index.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, text) => {
  const e = Object.assign(document.createElement(tag), props);
  if (text !== undefined) e.textContent = text;
  return e;
};

const state = { me: "", client: null, convs: new Map(), open: null, statuses: new Map(), typing: new Map() };

function conv(id) {
  let c = state.convs.get(id);
  if (!c) {
    const group = id.startsWith("g:");
    c = { id, group, title: group ? id : peerOf(id), items: new Map(), myRead: 0, reads: new Map() };
    state.convs.set(id, c);
  }
  return c;
}

/** The other user of a direct conversation `dm:<bytes of the smaller id>:<smaller>:<larger>`. */
function peerOf(id) {
  const m = /^dm:(\d+):/.exec(id);
  if (!m) return id;
  const rest = new TextEncoder().encode(id.slice(m[0].length));
  const n = Number(m[1]);
  const lo = new TextDecoder().decode(rest.slice(0, n));
  const hi = new TextDecoder().decode(rest.slice(n + 1));
  return lo === state.me ? hi : lo;
}

function maxSeq(c) {
  let s = 0;
  for (const it of c.items.values()) s = Math.max(s, it.seq ?? 0);
  return s;
}

function unread(c) {
  let n = 0;
  for (const it of c.items.values()) if (!it.mine && it.kind === "message" && (it.seq ?? 0) > c.myRead) n++;
  return n;
}

function markRead(c) {
  const s = maxSeq(c);
  if (s > c.myRead && document.visibilityState === "visible") {
    c.myRead = s;
    state.client.read(c.id, s);
  }
}

// --- what the client reports ----------------------------------------------------------------

function onMessage(m) {
  const c = conv(m.conversationId);
  c.items.set(m.id, { kind: "message", id: m.id, seq: m.seq, from: m.senderId, text: m.payload, mine: m.senderId === state.me });
  if (state.open === c.id) {
    markRead(c);
    if (!c.group && !m.carbon) void refreshPresence(); // the peer just spoke: they are here
  }
  render();
}

function onGroup(g) {
  const c = conv(g.conversationId);
  const what = { created: "created the group with", added: "added", removed: "removed", left: "left" }[g.event] ?? g.event;
  const who = g.event === "left" ? "" : ` ${g.members.join(", ")}`;
  c.items.set(g.id, { kind: "event", id: g.id, seq: g.seq, text: `${g.by} ${what}${who}` });
  render();
}

function onRead(r) {
  const c = conv(r.conversationId);
  if (r.userId === state.me) c.myRead = Math.max(c.myRead, r.seq);
  else c.reads.set(r.userId, Math.max(c.reads.get(r.userId) ?? 0, r.seq));
  render();
}

function onTyping(t) {
  clearTimeout(state.typing.get(t.conversationId)?.timer);
  if (!t.active) state.typing.delete(t.conversationId);
  else {
    const timer = setTimeout(() => onTyping({ ...t, active: false }), 3000);
    state.typing.set(t.conversationId, { user: t.userId, timer });
  }
  render();
}

// --- what the user does -----------------------------------------------------------------------

async function send(text) {
  const c = conv(state.open);
  const clientMsgId = crypto.randomUUID();
  c.items.set(clientMsgId, { kind: "message", id: clientMsgId, pending: true, from: state.me, text, mine: true, seq: Infinity });
  render();
  const req = c.group ? { conversationId: c.id } : { to: c.title };
  try {
    const a = await state.client.send({ ...req, payload: text, clientMsgId });
    c.items.delete(clientMsgId);
    if (!c.items.has(a.id)) c.items.set(a.id, { kind: "message", id: a.id, seq: a.seq, from: state.me, text, mine: true });
    if (!state.statuses.has(a.id)) state.statuses.set(a.id, a.status);
  } catch (e) {
    c.items.get(clientMsgId).failed = e.code ?? String(e);
  }
  render();
  // Presence answers only once the two share a conversation, which a first message starts.
  if (state.open === c.id) void refreshPresence();
}

function open(id) {
  state.open = id;
  markRead(conv(id));
  refreshPresence();
  render();
}

async function refreshPresence() {
  const c = state.open && conv(state.open);
  $('[data-testid="presence"]').textContent = "";
  if (!c || c.group) return;
  try {
    const [p] = await state.client.presence([c.title]);
    if (state.open !== c.id) return;
    $('[data-testid="presence"]').textContent = !p ? "" : p.online ? "online" : p.lastSeen ? `last seen ${p.lastSeen.slice(11, 19)}` : "offline";
  } catch {
    // Presence is best effort; the next refresh asks again.
  }
}

// --- rendering --------------------------------------------------------------------------------

function render() {
  const list = $("#conversations");
  list.replaceChildren(
    ...[...state.convs.values()].map((c) => {
      const li = el("li", { className: c.id === state.open ? "open" : "" });
      li.dataset.testid = "conversation";
      li.dataset.id = c.id;
      li.append(el("span", {}, c.title), el("span", { className: "unread" }, unread(c) || ""));
      li.onclick = () => open(c.id);
      return li;
    }),
  );
  $("#chat").hidden = !state.open;
  if (!state.open) return;
  const c = conv(state.open);
  $('[data-testid="chat-title"]').textContent = c.title;
  const items = [...c.items.values()].sort((a, b) => a.seq - b.seq);
  $("#messages").replaceChildren(...items.map((it) => item(c, it)));
  $("#messages").scrollTop = 1e9;
  const t = state.typing.get(c.id);
  $('[data-testid="typing"]').textContent = t ? `${t.user} is typing…` : "";
}

function item(c, it) {
  if (it.kind === "event") return el("li", { className: "event" }, it.text);
  const li = el("li", { className: it.mine ? "mine" : "" });
  li.dataset.testid = "message";
  li.dataset.id = it.id;
  if (c.group && !it.mine) li.append(el("span", { className: "from" }, it.from));
  li.append(el("span", { className: "text" }, it.text));
  if (it.mine) {
    const status = it.failed ? "FAILED" : it.pending ? "PENDING" : (state.statuses.get(it.id) ?? "NONE");
    const read = status === "READ" || (!c.group && (c.reads.get(c.title) ?? 0) >= it.seq);
    const ticks = el("span", { className: "ticks" }, read ? "✓✓ read" : { NONE: "✓", SENT: "✓", DELIVERED: "✓✓", PENDING: "…", FAILED: `✗ ${it.failed}` }[status] ?? status);
    ticks.dataset.testid = "ticks";
    ticks.dataset.status = status;
    ticks.dataset.read = String(read);
    li.append(ticks);
  }
  return li;
}

// --- wiring -----------------------------------------------------------------------------------

function start(me) {
  state.me = me;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const client = (state.client = new DistrisocksClient({ url, userId: me }));
  client.on("message", onMessage);
  client.on("group", onGroup);
  client.on("read", onRead);
  client.on("typing", onTyping);
  client.on("status", (s) => {
    state.statuses.set(s.id, s.status);
    render();
  });
  client.on("state", (s) => ($('[data-testid="connection"]').textContent = s === "open" ? "connected" : s));
  client.connect().catch((e) => ($('[data-testid="connection"]').textContent = `stopped: ${e.code}`));
  $('[data-testid="me"]').textContent = me;
  $("#signin").hidden = true;
  $("#app").hidden = false;
  setInterval(refreshPresence, 10_000);
}

$("#signin").onsubmit = (e) => {
  e.preventDefault();
  start(e.target.user.value.trim());
};
$("#new-chat").onsubmit = (e) => {
  e.preventDefault();
  const peer = e.target.peer.value.trim();
  e.target.reset();
  open(conv(directConversationId(state.me, peer)).id);
};
$("#new-group").onsubmit = async (e) => {
  e.preventDefault();
  const id = e.target.id.value.trim();
  const members = e.target.members.value.split(",").map((s) => s.trim()).filter(Boolean);
  e.target.reset();
  try {
    await state.client.groupCreate(members, id);
    open(id);
  } catch (err) {
    alert(`group: ${err.code ?? err}`);
  }
};
let lastTyping = 0;
$("#composer").oninput = () => {
  if (Date.now() - lastTyping > 1000) {
    lastTyping = Date.now();
    state.client.typing(state.open, true);
  }
};
$("#composer").onsubmit = (e) => {
  e.preventDefault();
  const text = e.target.text.value;
  e.target.reset();
  lastTyping = 0;
  state.client.typing(state.open, false);
  void send(text);
};
document.addEventListener("visibilitychange", () => state.open && markRead(conv(state.open)));
