// A real distriSocks pod for the client's tests: the binary the repository builds, on a free
// loopback port and a data directory of its own, restartable on the same port and data.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, existsSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function binary() {
  if (process.env.DISTRISOCKS_BIN) return process.env.DISTRISOCKS_BIN;
  for (const p of ["target/debug/distrisocks", "target/release/distrisocks"]) {
    if (existsSync(join(ROOT, p))) return join(ROOT, p);
  }
  throw new Error("no pod binary: run `cargo build` at the repository root or set DISTRISOCKS_BIN");
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function until(cond, what, ms = 20_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export class Pod {
  constructor(args = []) {
    this.args = args;
    this.dir = mkdtempSync(join(tmpdir(), "distrisocks-js-"));
    this.proc = undefined;
  }

  static async start(args = []) {
    const pod = new Pod(args);
    pod.port = await freePort();
    await pod.up();
    return pod;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async up() {
    const args = ["--listen", `127.0.0.1:${this.port}`, "--shards", "2", "--data-dir", join(this.dir, "data"), ...this.args];
    this.log = [];
    this.proc = spawn(binary(), args, { stdio: ["ignore", "ignore", "pipe"] });
    this.proc.stderr.on("data", (d) => this.log.push(String(d)));
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.exited = exited;
    await until(async () => {
      if (this.proc.exitCode !== null) throw new Error(`pod exited: ${this.log.join("")}`);
      try {
        return (await fetch(`http://127.0.0.1:${this.port}/healthz`)).ok;
      } catch {
        return false;
      }
    }, "the pod's /healthz");
  }

  /** SIGKILL (a crash) or SIGTERM (a graceful shutdown: 1001 to every socket). */
  async down(signal = "SIGKILL") {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill(signal);
    await this.exited;
  }

  async restart(signal = "SIGKILL") {
    await this.down(signal);
    await this.up();
  }

  async stop() {
    await this.down("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** An HS256 JWT, signed as the auth service would. */
export function jwt(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

export { until };
