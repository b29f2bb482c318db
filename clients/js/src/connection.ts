/**
 * One socket at a time, reopened after it ends: the token is asked for anew before each
 * attempt, the URL carries the device's cursor, and the close code decides how soon to come
 * back (backoff.ts). The protocol on top of the socket is the client's (client.ts).
 */

import { Backoff, type BackoffOptions, DEFAULT_BACKOFF, reconnectFor, type Reconnect } from "./backoff.js";

/** The constructor of a standard WebSocket (browsers; Node ≥ 22, or 20 with `--experimental-websocket`). */
export type WebSocketCtor = new (url: string) => WebSocket;

/** A token for the next connection or refresh; `null` (or a throw) means signed out: stop. */
export type TokenProvider = () => string | null | Promise<string | null>;

export type ConnectionState = "connecting" | "open" | "waiting" | "stopped";

export interface ConnectionHooks {
  /** The URL's query for the next attempt (cursor, token or dev user). */
  query(token: string | null): Promise<URLSearchParams>;
  opened(ws: WebSocket, token: string | null): void;
  frame(text: string): void;
  ended(code: number, reason: string, next: Reconnect): void;
  state(s: ConnectionState): void;
}

/** A connection shorter than this that ends "now" is retried with backoff, not at once, so a
 * pod that closes every socket with 1001 as it opens cannot make a client spin. */
const SHORT_LIVED_MS = 1000;

export class Connection {
  private ws: WebSocket | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private readonly backoff: Backoff;

  constructor(
    private readonly url: string,
    private readonly token: TokenProvider | undefined,
    private readonly Ws: WebSocketCtor,
    private readonly hooks: ConnectionHooks,
    backoff: Partial<BackoffOptions> = {},
    private readonly openTimeoutMs = 10_000,
  ) {
    this.backoff = new Backoff({ ...DEFAULT_BACKOFF, ...backoff });
  }

  start(): void {
    this.stopped = false;
    void this.attempt();
  }

  /** The open socket, if any. */
  get socket(): WebSocket | undefined {
    return this.ws?.readyState === 1 ? this.ws : undefined;
  }

  /** Closes for good (code 1000): no reconnect. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = undefined;
    if (ws && ws.readyState <= 1) ws.close(1000, "client closed");
    this.hooks.state("stopped");
  }

  /** Ends the current socket as if the network dropped it; the client reconnects. */
  drop(): void {
    this.ws?.close(4000, "client drop");
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    this.hooks.state("connecting");
    let token: string | null = null;
    try {
      token = this.token ? await this.token() : null;
    } catch {
      token = null;
    }
    if (this.stopped) return;
    if (this.token && token === null) {
      this.hooks.ended(0, "signed out: the token provider gave no token", "never");
      this.stop();
      return;
    }
    const query = await this.hooks.query(token);
    if (this.stopped) return;
    const ws = new this.Ws(`${this.url}${this.url.includes("?") ? "&" : "?"}${query}`);
    this.ws = ws;
    let openedAt = 0;
    // An attempt that hangs (a listener that accepts and never answers) is given up.
    const openTimer = setTimeout(() => ended(1006, "the upgrade did not complete in time"), this.openTimeoutMs);
    // Ends this socket once, whichever comes first: close, error or the open timeout. Node 20's
    // WebSocket fires only `error` when a connection fails before it opens, never `close`.
    const ended = (code: number, reason: string) => {
      clearTimeout(openTimer);
      if (this.ws !== ws) return;
      this.ws = undefined;
      if (ws.readyState <= 1) ws.close();
      this.ended(code, reason, openedAt);
    };
    ws.onopen = () => {
      clearTimeout(openTimer);
      openedAt = Date.now();
      this.backoff.reset();
      this.hooks.state("open");
      this.hooks.opened(ws, token);
    };
    ws.onmessage = (e: MessageEvent) => {
      if (typeof e.data === "string") this.hooks.frame(e.data);
    };
    ws.onerror = () => ended(1006, "connection failed");
    ws.onclose = (e: CloseEvent) => ended(e.code, e.reason);
  }

  private ended(code: number, reason: string, openedAt: number): void {
    const next = this.stopped ? "never" : reconnectFor(code);
    this.hooks.ended(code, reason, next);
    if (next === "never") {
      this.stop();
      return;
    }
    const lived = openedAt === 0 ? 0 : Date.now() - openedAt;
    const delay = next === "now" && lived >= SHORT_LIVED_MS ? 0 : this.backoff.next();
    this.hooks.state("waiting");
    this.timer = setTimeout(() => void this.attempt(), delay);
  }
}
