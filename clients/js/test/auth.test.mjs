// JWT auth against a real pod: tokens from a provider, refreshed on the open socket, and a
// provider that signs the user out stops the client.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { DistrisocksClient } from "../dist/index.js";
import { Pod, jwt, until } from "./pod.mjs";

const SECRET = "client-test-secret";
let pod;
before(async () => {
  pod = await Pod.start(["--jwt-secret", SECRET]);
});
after(async () => {
  await pod.stop();
});

test("the token is refreshed on the open socket: the connection outlives its first token", async () => {
  const issued = [];
  const token = () => {
    const exp = Math.floor(Date.now() / 1000) + 3;
    issued.push(exp);
    return jwt(SECRET, { sub: "tok-alice", exp });
  };
  const alice = new DistrisocksClient({ url: pod.url, userId: "tok-alice", token, refreshBeforeMs: 1500 });
  const closes = [];
  alice.on("close", (e) => closes.push(e));
  await alice.connect();
  const firstExp = issued[0];
  // The first token's expiry passes (plus the pod's one-second sweep): the socket must still be the same one.
  await until(() => Date.now() > (firstExp + 1) * 1000 + 500, "the first token's expiry", 10_000);
  assert.ok(issued.length >= 2, "a fresh token was asked for before the expiry");
  const a = await alice.send({ to: "tok-bob", payload: "still here" });
  assert.equal(a.status, "NONE");
  assert.deepEqual(closes, [], "no reconnect was needed");
  alice.close();
});

test("without a refresh the pod closes with 4011 and the client reconnects with a fresh token", async () => {
  let calls = 0;
  const token = () => {
    calls++;
    return jwt(SECRET, { sub: "tok-bob", exp: Math.floor(Date.now() / 1000) + 2 });
  };
  // refreshBeforeMs 0 and a 2 s token: the refresh may race the expiry; a provider that fails
  // refreshes makes it certain.
  let refreshing = false;
  const bob = new DistrisocksClient({
    url: pod.url,
    userId: "tok-bob",
    token: () => (refreshing ? Promise.reject(new Error("auth service down")) : token()),
    refreshBeforeMs: 1000,
  });
  const closes = [];
  bob.on("close", (e) => closes.push(e));
  bob.on("state", (s) => {
    refreshing = s === "open";
  });
  await bob.connect();
  await until(() => closes.length >= 1 && bob.connected, "the 4011 close and the reconnect", 10_000);
  assert.equal(closes[0].code, 4011);
  assert.equal(closes[0].reconnect, "now");
  assert.ok(calls >= 2);
  bob.close();
});

test("a token provider that gives no token stops the client; its sends are rejected", async () => {
  const c = new DistrisocksClient({ url: pod.url, userId: "tok-carol", token: () => null });
  const states = [];
  c.on("state", (s) => states.push(s));
  const pending = c.send({ to: "tok-dave", payload: "never" });
  await assert.rejects(c.connect(), { code: "signed_out" });
  await assert.rejects(pending, { code: "closed" });
  assert.equal(states.at(-1), "stopped");
});
