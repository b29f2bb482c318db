// The client's pure parts, without a socket: each test can fail on the behaviour it names.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff, Cursor, reconnectFor, expiryOf, directConversationId, parseServerFrame, LocalCursorStorage } from "../dist/index.js";
import { Outbox } from "../dist/outbox.js";
import { Session } from "../dist/session.js";

test("the cursor advances only over held positions, whatever their order", () => {
  const c = new Cursor(10);
  assert.equal(c.add(12), false);
  assert.equal(c.pos, 10);
  assert.equal(c.holds(12), true);
  assert.equal(c.holds(11), false);
  assert.equal(c.add(11), true);
  assert.equal(c.pos, 12);
  assert.equal(c.add(9), false, "below the cursor is a repeat");
  c.add(15);
  assert.equal(c.pos, 12);
  assert.equal(c.pending, 1);
});

test("history_truncated moves the cursor over what retention deleted, and over what was held past it", () => {
  const c = new Cursor(3);
  c.add(8);
  c.add(9);
  assert.equal(c.skipTo(7), true);
  assert.equal(c.pos, 9);
  assert.equal(c.pending, 0);
  assert.equal(c.skipTo(5), false);
});

test("backoff is jittered below an exponential bound, capped, and reset by an open", () => {
  const seq = [];
  const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2 }, () => 0.999);
  for (let i = 0; i < 6; i++) seq.push(b.next());
  assert.deepEqual(seq, [99, 199, 399, 799, 999, 999]);
  b.reset();
  assert.equal(b.next(), 99);
  const low = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2 }, () => 0);
  assert.equal(low.next(), 0, "full jitter reaches down to zero");
});

test("close codes: 1001, 4009 and 4011 reconnect at once, 4010 and 4012 never, the rest after backoff", () => {
  assert.deepEqual([1001, 4009, 4011].map(reconnectFor), ["now", "now", "now"]);
  assert.equal(reconnectFor(4010), "never");
  assert.equal(reconnectFor(4012), "never");
  assert.deepEqual([1006, 1011, 4001, 4008, 4029].map(reconnectFor), Array(5).fill("backoff"));
});

test("the outbox holds a retryable refusal, rejects a final one, and is bounded", async () => {
  const o = new Outbox(2);
  const a = o.add("a", "A");
  const b = o.add("b", "B");
  await assert.rejects(o.add("c", "C"), { code: "outbox_full" });
  assert.deepEqual(o.due(0), ["A", "B"]);
  assert.deepEqual(o.due(0), [], "in flight is not written twice");
  assert.equal(o.refused("a", "overloaded", "busy", 1000, 500), true);
  assert.deepEqual(o.due(1200), []);
  assert.equal(o.nextHold(), 1500);
  assert.deepEqual(o.due(1500), ["A"]);
  assert.equal(o.refused("b", "payload_too_large", "big", 0, 500), false);
  await assert.rejects(b, { code: "payload_too_large" });
  o.disconnected();
  assert.deepEqual(o.due(2000), ["A"], "a reconnect writes again what had no answer");
  assert.equal(o.accepted({ id: "m1", clientMsgId: "a", status: "NONE" }), true);
  assert.equal((await a).id, "m1");
  assert.equal(o.size, 0);
  assert.equal(o.accepted({ id: "m1", clientMsgId: "a", status: "NONE" }), false, "a late repeat settles nothing");
});

test("a token's exp is read without verifying it; garbage has none", () => {
  const payload = Buffer.from(JSON.stringify({ sub: "alice", exp: 1_800_000_000 })).toString("base64url");
  assert.equal(expiryOf(`x.${payload}.y`), 1_800_000_000);
  assert.equal(expiryOf("not a token"), undefined);
  assert.equal(expiryOf("a.%%%.b"), undefined);
});

test("direct conversation ids match the server's naming", () => {
  assert.equal(directConversationId("bob", "alice"), "dm:5:alice:bob");
  assert.equal(directConversationId("alice", "bob"), "dm:5:alice:bob");
  assert.equal(directConversationId("é", "z"), "dm:1:z:é", "compared by UTF-8 bytes, length in bytes");
});

test("server frames parse into typed values; carbons are told from messages to ack", () => {
  const text = (o) => JSON.stringify(o);
  const m = { type: "message", id: "m1", sender_id: "alice", reciever_id: "bob", message: "hi", created_at: "t", conversation_id: "dm:5:alice:bob", seq: 1, pos: 3 };
  const toBob = parseServerFrame(text(m), "bob");
  assert.equal(toBob.type, "message");
  assert.equal(toBob.message.carbon, false);
  assert.equal(parseServerFrame(text(m), "alice").message.carbon, true);
  const g = { ...m, reciever_id: "g:team", conversation_id: "g:team" };
  assert.equal(parseServerFrame(text(g), "bob").message.group, true);
  assert.equal(parseServerFrame("{oops", "bob").type, "unknown");
  assert.equal(parseServerFrame(text({ type: "new_frame_kind" }), "bob").type, "unknown");
  const e = parseServerFrame(text({ type: "error", code: "overloaded", message: "m", client_msg_id: "c" }), "bob");
  assert.deepEqual(e.error, { code: "overloaded", message: "m", clientMsgId: "c", id: undefined });
});

test("localStorage cursors survive as numbers and ignore garbage", async () => {
  const kv = new Map();
  const s = new LocalCursorStorage({ getItem: (k) => kv.get(k) ?? null, setItem: (k, v) => kv.set(k, v) });
  assert.equal(await s.load("bob"), null);
  await s.save("bob", 42);
  assert.equal(await s.load("bob"), 42);
  kv.set("distrisocks.cursor.bob", "-3");
  assert.equal(await s.load("bob"), null);
});

test("an ack still waiting for its timer when the connection ends is written after the next open", () => {
  const frames = [];
  const s = new Session(undefined, 0, (f) => {
    frames.push(JSON.parse(f));
    return true;
  });
  s.opened(null);
  s.ack("m1", 60_000);
  s.ended(); // the connection dies before the ack frame was due
  assert.deepEqual(frames, [], "nothing was written before the end");
  s.opened(null);
  assert.deepEqual(frames, [{ type: "ack", ids: ["m1"] }], "a v2 sync would not bring m1 back to be acked");
  s.stop();
});
