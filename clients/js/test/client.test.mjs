// The client against a real pod (the repository's binary, its embedded store, real sockets).
// Messages are counted per id: a duplicate shown to the application fails the test.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { DistrisocksClient, MemoryCursorStorage, DistrisocksError } from "../dist/index.js";
import { Pod, until } from "./pod.mjs";

const API_KEY = "js-client-test-api-key-0123";
let pod;
before(async () => {
  pod = await Pod.start(["--api-keys", API_KEY]);
});
after(async () => {
  await pod.stop();
});

const clients = [];
function client(userId, opts = {}) {
  const c = new DistrisocksClient({ url: pod.url, userId, backoff: { initialMs: 50, maxMs: 500 }, ...opts });
  c.got = new Map(); // id -> copies shown
  c.statusOf = new Map();
  c.closes = [];
  c.on("message", (m) => c.got.set(m.id, (c.got.get(m.id) ?? 0) + 1));
  c.on("status", (s) => c.statusOf.set(s.id, s.status));
  c.on("close", (e) => c.closes.push(e));
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

const fromSender = (c, sender) => [...c.got.keys()].filter((id) => c.messages?.get(id)?.senderId === sender);

function keepMessages(c) {
  c.messages = new Map();
  c.on("message", (m) => c.messages.set(m.id, m));
  return c;
}

test("two users chat: every message shown once, acked to DELIVERED", async () => {
  const alice = client("chat-alice");
  const bob = keepMessages(client("chat-bob"));
  await Promise.all([alice.connect(), bob.connect()]);
  const accepted = await Promise.all(Array.from({ length: 30 }, (_, i) => alice.send({ to: "chat-bob", payload: `m${i}` })));
  const ids = accepted.map((a) => a.id);
  assert.equal(new Set(ids).size, 30);
  await until(() => ids.every((id) => alice.statusOf.get(id) === "DELIVERED"), "DELIVERED of every message");
  assert.deepEqual(ids.map((id) => bob.got.get(id)), Array(30).fill(1));
  assert.deepEqual(ids.map((id) => bob.messages.get(id).payload), accepted.map((_, i) => `m${i}`));
  assert.deepEqual(accepted.map((a) => a.seq), Array.from({ length: 30 }, (_, i) => i + 1), "seq in send order");
});

test("sends written just before a crash are stored once after the pod restarts", async () => {
  const alice = client("crash-alice");
  const bob = keepMessages(client("crash-bob"));
  await Promise.all([alice.connect(), bob.connect()]);
  const sends = Array.from({ length: 40 }, (_, i) => alice.send({ to: "crash-bob", payload: `c${i}`, clientMsgId: `crash-${i}` }));
  const crashed = pod.restart("SIGKILL"); // some of them committed, some not, answers lost
  const more = Array.from({ length: 10 }, (_, i) => alice.send({ to: "crash-bob", payload: `d${i}` })); // while the pod is down
  await crashed;
  const accepted = await Promise.all([...sends, ...more]);
  const ids = accepted.map((a) => a.id);
  assert.equal(new Set(ids).size, 50, "one stored message per send");
  await until(() => ids.every((id) => bob.got.get(id) === 1), "bob holding every message");
  // A DELIVERED committed while alice was away reaches her all the same: the client asks for
  // the statuses it missed when it reconnects.
  await until(() => ids.every((id) => alice.statusOf.get(id) === "DELIVERED"), "DELIVERED of every message");
  const last = await alice.send({ to: "crash-bob", payload: "after" });
  await until(() => alice.statusOf.get(last.id) === "DELIVERED", "DELIVERED after the restart");
  assert.deepEqual(ids.map((id) => bob.got.get(id)), Array(50).fill(1), "shown once each across the reconnect");
  assert.ok(alice.closes.length >= 1 && bob.closes.length >= 1, "both saw the crash");
  assert.equal(fromSender(bob, "crash-alice").length, 51);
});

test("a graceful restart (1001) reconnects at once; a second device catches up from its cursor", async () => {
  const alice = client("sync-alice");
  const storage = new MemoryCursorStorage();
  const phone = keepMessages(client("sync-bob", { cursorStorage: storage }));
  await Promise.all([alice.connect(), phone.connect()]);
  const first = await Promise.all([1, 2, 3].map((i) => alice.send({ to: "sync-bob", payload: `a${i}` })));
  await until(() => first.every((a) => phone.got.get(a.id) === 1), "the phone holding the first three");
  await until(() => phone.position === 3, "the phone's cursor at 3");
  await pod.restart("SIGTERM");
  await until(() => phone.connected && alice.connected, "both reconnected");
  assert.equal(phone.closes[0].code, 1001);
  assert.equal(phone.closes[0].reconnect, "now");
  phone.close();
  const later = await Promise.all([4, 5].map((i) => alice.send({ to: "sync-bob", payload: `a${i}` })));
  // The same device comes back with its saved cursor: only what it lacks, once.
  const again = keepMessages(client("sync-bob", { cursorStorage: storage }));
  await again.connect();
  await until(() => later.every((a) => again.got.get(a.id) === 1), "the phone catching up");
  assert.equal(again.got.size, 2, "nothing at or below its cursor came again");
  await until(() => again.position === 5, "the cursor at 5");
  // A new device (empty storage) syncs the whole stream.
  const laptop = keepMessages(client("sync-bob"));
  await laptop.connect();
  await until(() => laptop.position === 5, "the laptop synced to 5");
  assert.deepEqual([...laptop.got.values()], Array(5).fill(1));
});

test("a backend publishes over the server API, then disconnects the user: 4012 stops the client", async () => {
  const bob = keepMessages(client("api-bob"));
  await bob.connect();
  const post = (path, body) =>
    fetch(`http://127.0.0.1:${pod.port}/api/v1${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const res = await post("/messages", { reciever_id: "api-bob", payload: "from the backend" });
  assert.equal(res.status, 201);
  const accepted = await res.json();
  await until(() => bob.got.get(accepted.id) === 1, "the published message");
  assert.equal(bob.messages.get(accepted.id).senderId, "system");
  const gone = await (await post("/users/api-bob/disconnect", {})).json();
  assert.equal(gone.closed, 1);
  await until(() => bob.closes.length === 1, "the close");
  assert.deepEqual([bob.closes[0].code, bob.closes[0].reconnect], [4012, "never"]);
  assert.equal(bob.connected, false);
});

test("a final refusal rejects the send; the outbox goes on", async () => {
  const alice = client("refuse-alice");
  await alice.connect();
  await assert.rejects(alice.send({ to: "refuse-bob", payload: "x".repeat(40_000) }), (e) => e instanceof DistrisocksError && e.code === "payload_too_large");
  await assert.rejects(alice.send({ to: "refuse-bob", conversationId: "g:x", payload: "both" }), { code: "invalid_frame" });
  const ok = await alice.send({ to: "refuse-bob", payload: "fine" });
  assert.equal(ok.status, "NONE");
});

test("groups: created, messaged once per member, members and presence answered", async () => {
  const alice = client("grp-alice");
  const bob = keepMessages(client("grp-bob"));
  const carol = keepMessages(client("grp-carol"));
  await Promise.all([alice, bob, carol].map((c) => c.connect()));
  const created = await alice.groupCreate(["grp-bob", "grp-carol"], "g:grp-test");
  assert.equal(created.event, "created");
  assert.deepEqual((await bob.groupMembers("g:grp-test")).sort(), ["grp-alice", "grp-bob", "grp-carol"]);
  await assert.rejects(bob.groupCreate(["grp-carol"], "g:grp-test"), { code: "group_exists" });
  const sent = await Promise.all([1, 2, 3].map((i) => alice.send({ conversationId: "g:grp-test", payload: `g${i}` })));
  await until(() => sent.every((a) => alice.statusOf.get(a.id) === "DELIVERED"), "DELIVERED from both members");
  for (const c of [bob, carol]) assert.deepEqual(sent.map((a) => c.got.get(a.id)), [1, 1, 1]);
  assert.ok(sent.every((a) => bob.messages.get(a.id).group));
  bob.read("g:grp-test", sent[2].seq);
  carol.read("g:grp-test", sent[2].seq);
  await until(() => alice.statusOf.get(sent[2].id) === "READ", "READ once both read");
  const receipts = await alice.receipts(sent[2].id);
  assert.deepEqual(receipts.members.map((m) => [m.userId, m.read]).sort(), [["grp-bob", true], ["grp-carol", true]]);
  const presence = await alice.presence(["grp-bob", "grp-stranger"]);
  assert.deepEqual(presence.map((p) => [p.userId, p.online]), [["grp-bob", true]]);
  const left = await carol.groupLeave("g:grp-test");
  assert.equal(left.event, "left");
});

test("read receipts and typing reach the other member's device", async () => {
  const alice = client("rt-alice");
  const bob = client("rt-bob");
  const reads = [];
  const typing = [];
  alice.on("read", (r) => reads.push(r));
  alice.on("typing", (t) => typing.push(t));
  await Promise.all([alice.connect(), bob.connect()]);
  const a = await alice.send({ to: "rt-bob", payload: "hello" });
  await until(() => bob.got.has(a.id), "bob holding it");
  bob.typing(a.conversationId, true);
  bob.read(a.conversationId, a.seq);
  await until(() => reads.length === 1 && typing.length === 1, "the receipt and the typing state");
  assert.deepEqual(reads[0], { conversationId: a.conversationId, userId: "rt-bob", seq: a.seq });
  assert.equal(typing[0].userId, "rt-bob");
});
