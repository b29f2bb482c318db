// The demo chat end to end: a real pod serving the page (--demo-dir), real Chromium windows
// (playwright-core driving Debian's /usr/bin/chromium), one browser context per device.
// Messages are counted per id in the DOM: a copy shown twice fails. Every test leaves
// screenshots in target/demo-screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Pod } from "../../js/test/pod.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const SHOTS = join(HERE, "..", "..", "..", "target", "demo-screenshots");
const WAIT = { timeout: 20_000 };
let pod;
let browser;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  pod = await Pod.start(["--auth", "dev", "--demo-dir", join(HERE, "..")]);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking"],
  });
});
after(async () => {
  await browser?.close();
  await pod?.stop();
});

/** A device: a browser context of its own, signed in as `user`. */
async function device(user) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${user}] page error: ${e}`));
  await page.goto(`http://127.0.0.1:${pod.port}/demo/`);
  await page.fill('[data-testid="user"]', user);
  await page.click('[data-testid="signin-button"]');
  await page.waitForSelector('[data-testid="connection"]:text("connected")', WAIT);
  return { user, context, page };
}

const shot = (d, name) => d.page.screenshot({ path: join(SHOTS, `${name}-${d.user}.png`) });

const convSel = (id) => `li[data-testid="conversation"][data-id="${id}"]`;
const dm = (a, b) => (a < b ? `dm:${a.length}:${a}:${b}` : `dm:${b.length}:${b}:${a}`);

async function openChat(d, peer) {
  await d.page.fill('[data-testid="new-chat-peer"]', peer);
  await d.page.press('[data-testid="new-chat-peer"]', "Enter");
  await d.page.waitForSelector(`[data-testid="chat-title"]:text-is("${peer}")`, WAIT);
}

async function say(d, text) {
  await d.page.fill('[data-testid="composer-text"]', text);
  await d.page.click('[data-testid="send"]');
}

/** Waits until `text` is shown in the open chat, then returns how many message items carry its id. */
async function shown(d, text) {
  const li = d.page.locator('li[data-testid="message"]', { hasText: text });
  await li.first().waitFor(WAIT);
  const id = await li.first().getAttribute("data-id");
  return { id, copies: await d.page.locator(`li[data-testid="message"][data-id="${id}"]`).count() };
}

/** Waits until the ticks of my message `text` carry every `data-*` value in `want`. */
async function ticks(d, text, want) {
  await d.page.waitForFunction(([t, w]) => {
    const li = [...document.querySelectorAll('li[data-testid="message"]')].find((e) => e.querySelector(".text")?.textContent === t);
    const ticks = li?.querySelector('[data-testid="ticks"]');
    return ticks && Object.entries(w).every(([k, v]) => ticks.dataset[k] === v);
  }, [text, want], WAIT);
}

test("two users chat in two windows: typing, presence, one copy each, read ticks", async () => {
  const alice = await device("d1-alice");
  const bob = await device("d1-bob");
  await openChat(alice, "d1-bob");
  await openChat(bob, "d1-alice");
  await alice.page.type('[data-testid="composer-text"]', "hel");
  await bob.page.waitForSelector('[data-testid="typing"]:text("d1-alice is typing")', WAIT);
  await shot(bob, "1-typing");
  await say(alice, "first");
  assert.equal((await shown(bob, "first")).copies, 1);
  // Presence answers only for users who share a conversation: now they do.
  await alice.page.waitForSelector('[data-testid="presence"]:text("online")', WAIT);
  await ticks(alice, "first", { read: "true" }); // bob's open chat read it
  await bob.page.goto("about:blank"); // bob has the chat open nowhere: the next one stays unread
  await say(alice, "hello bob");
  await ticks(alice, "hello bob", { status: "NONE" });
  const bob2 = await device("d1-bob");
  await bob2.page.waitForSelector(`${convSel(dm("d1-alice", "d1-bob"))} .unread:text-is("1")`, WAIT);
  await shot(bob2, "1-unread");
  await bob2.page.click(convSel(dm("d1-alice", "d1-bob")));
  const got = await shown(bob2, "hello bob");
  assert.equal(got.copies, 1);
  await ticks(alice, "hello bob", { status: "DELIVERED", read: "true" });
  await say(bob2, "hi alice");
  assert.equal((await shown(alice, "hi alice")).copies, 1);
  await shot(alice, "1-read");
  await shot(bob2, "1-read");
  await Promise.all([alice, bob, bob2].map((d) => d.context.close()));
});

test("a user goes offline and comes back: what was sent meanwhile arrives once, then DELIVERED", async () => {
  const alice = await device("d2-alice");
  const bob = await device("d2-bob");
  await openChat(alice, "d2-bob");
  await say(alice, "before");
  await ticks(alice, "before", { status: "DELIVERED" });
  await bob.context.close();
  await say(alice, "while away 1");
  await say(alice, "while away 2");
  await ticks(alice, "while away 2", { status: "NONE" });
  await shot(alice, "2-away");
  const back = await device("d2-bob");
  await back.page.click(convSel(dm("d2-alice", "d2-bob")));
  for (const text of ["before", "while away 1", "while away 2"]) assert.equal((await shown(back, text)).copies, 1, text);
  await ticks(alice, "while away 2", { status: "DELIVERED", read: "true" });
  await shot(back, "2-back");
  await shot(alice, "2-back");
  await Promise.all([alice, back].map((d) => d.context.close()));
});

test("the pod restarts mid-conversation: both reconnect, nothing lost, nothing twice", async () => {
  const alice = await device("d3-alice");
  const bob = await device("d3-bob");
  await openChat(alice, "d3-bob");
  await openChat(bob, "d3-alice");
  await say(alice, "one");
  assert.equal((await shown(bob, "one")).copies, 1);
  await pod.restart("SIGKILL");
  await say(alice, "two"); // written to the outbox while the pod may still be coming up
  await alice.page.waitForSelector('[data-testid="connection"]:text("connected")', WAIT);
  await say(bob, "three");
  for (const text of ["one", "two"]) assert.equal((await shown(bob, text)).copies, 1, text);
  assert.equal((await shown(alice, "three")).copies, 1);
  await ticks(alice, "two", { status: "DELIVERED" });
  await shot(alice, "3-restarted");
  await shot(bob, "3-restarted");
  await Promise.all([alice, bob].map((d) => d.context.close()));
});

test("a second device of the same user catches up on the whole conversation", async () => {
  const alice = await device("d4-alice");
  const phone = await device("d4-bob");
  await openChat(alice, "d4-bob");
  for (const t of ["m1", "m2", "m3"]) await say(alice, t);
  await phone.page.click(convSel(dm("d4-alice", "d4-bob")));
  await shown(phone, "m3");
  await say(phone, "from the phone");
  const laptop = await device("d4-bob");
  await laptop.page.click(convSel(dm("d4-alice", "d4-bob")));
  for (const t of ["m1", "m2", "m3", "from the phone"]) assert.equal((await shown(laptop, t)).copies, 1, t);
  assert.equal(await laptop.page.locator('li[data-testid="message"]').count(), 4);
  await shot(laptop, "4-second-device");
  await Promise.all([alice, phone, laptop].map((d) => d.context.close()));
});

test("a group of three: created in the page, one copy per member, READ once both read", async () => {
  const alice = await device("d5-alice");
  const bob = await device("d5-bob");
  const carol = await device("d5-carol");
  await alice.page.fill('[data-testid="new-group-id"]', "g:d5-team");
  await alice.page.fill('[data-testid="new-group-members"]', "d5-bob, d5-carol");
  await alice.page.press('[data-testid="new-group-members"]', "Enter");
  await alice.page.waitForSelector('[data-testid="chat-title"]:text-is("g:d5-team")', WAIT);
  await say(alice, "hi team");
  for (const d of [bob, carol]) {
    await d.page.click(convSel("g:d5-team"));
    assert.equal((await shown(d, "hi team")).copies, 1);
    await d.page.waitForSelector('li[data-testid="message"] .from:text-is("d5-alice")', WAIT);
  }
  await ticks(alice, "hi team", { status: "READ", read: "true" });
  await shot(alice, "5-group");
  await shot(carol, "5-group");
  await Promise.all([alice, bob, carol].map((d) => d.context.close()));
});
