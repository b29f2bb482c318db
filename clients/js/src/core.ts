/**
 * The client's core, all of it but the request methods (client.ts). It keeps one connection
 * open (connection.ts), makes every send survive reconnects exactly once (outbox.ts), shows
 * each message once, acks what is addressed to its user in batches, keeps the device's sync
 * cursor (cursor.ts), refreshes the token on the open socket and matches answers to requests
 * (requests.ts).
 */

import { type BackoffOptions, type Reconnect } from "./backoff.js";
import { Connection, type ConnectionState, type TokenProvider, type WebSocketCtor } from "./connection.js";
import { Cursor, type CursorStorage, MemoryCursorStorage } from "./cursor.js";
import { Emitter } from "./emitter.js";
import { DistrisocksError } from "./errors.js";
import * as f from "./frames.js";
import { Outbox } from "./outbox.js";
import { Recent } from "./recent.js";
import { Requests } from "./requests.js";
import { Session } from "./session.js";

export interface ClientOptions {
  /** The pod's socket URL, `ws(s)://host:port/ws`. */
  url: string;
  /** This device's user (the token's `sub` in JWT mode): tells carbons from messages to ack. */
  userId: string;
  /** Tokens for JWT auth (sent as `?token=` and in `auth` refreshes); absent: dev auth (`?user_id=`). */
  token?: TokenProvider;
  /** Protocol v2 device sync (`?since=`, carbons, groups). Default true; false: a v1 connection. */
  sync?: boolean;
  cursorStorage?: CursorStorage;
  /** Defaults to `globalThis.WebSocket`. */
  WebSocket?: WebSocketCtor;
  backoff?: Partial<BackoffOptions>;
  /** Ack what is addressed to this user after the `message` listeners ran. Default true. */
  autoAck?: boolean;
  /** Acks wait this long to share a frame (ms, default 10). */
  ackDelayMs?: number;
  /** A send refused with `overloaded`, `store_unavailable` or `rate_limited` is written again after this (ms, default 1000). */
  retryMs?: number;
  /** Sends waiting for `accepted` at most; one more is refused with `outbox_full`. Default 10,000. */
  outboxCapacity?: number;
  /** The fresh token is sent this long before the current one expires (ms, default 30,000). */
  refreshBeforeMs?: number;
  /** An upgrade not complete by then is given up and retried (ms, default 10,000). */
  openTimeoutMs?: number;
  /** A request with no answer by then is rejected with `timeout` (ms, default 10,000). */
  requestTimeoutMs?: number;
}

export interface ClientEvents {
  message: f.Message;
  status: f.StatusEvent;
  read: f.ReadEvent;
  typing: f.TypingEvent;
  group: f.GroupEvent;
  /** Retention deleted the stream up to `throughPos` before this device synced it. */
  truncated: { throughPos: number };
  state: ConnectionState;
  /** A connection ended; `reconnect` says what the client does next. */
  close: { code: number; reason: string; reconnect: Reconnect };
  /** A server error no pending call was waiting for (a refused ack, read or token refresh). */
  error: DistrisocksError;
}

export interface SendRequest {
  /** The recipient user (a direct message)… */
  to?: string;
  /** …or a group the user is in (`g:…`). */
  conversationId?: string;
  payload: string;
  /** The idempotency key; generated when absent. Reuse it to resend a send from a previous run. */
  clientMsgId?: string;
}

export class ClientCore extends Emitter<ClientEvents> {
  readonly userId: string;
  private readonly opts: Required<Pick<ClientOptions, "autoAck" | "ackDelayMs" | "retryMs" | "refreshBeforeMs">>;
  private readonly sync: boolean;
  private readonly storage: CursorStorage;
  private readonly conn: Connection;
  private readonly outbox: Outbox;
  private readonly requests: Requests;
  private readonly session: Session;
  private cursor: Cursor | undefined;
  private readonly seen = new Recent<true>(4096);
  private readonly statuses = new Recent<f.Status>(4096);
  private readonly pendingReads = new Map<string, number>();
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private everOpened = false;
  private opened: Promise<void>;
  private markOpened!: () => void;
  private failOpened!: (e: DistrisocksError) => void;

  constructor(options: ClientOptions) {
    super();
    if (!options.userId) throw new Error("options.userId is required");
    this.userId = options.userId;
    this.opts = {
      autoAck: options.autoAck ?? true,
      ackDelayMs: options.ackDelayMs ?? 10,
      retryMs: options.retryMs ?? 1000,
      refreshBeforeMs: options.refreshBeforeMs ?? 30_000,
    };
    this.sync = options.sync ?? true;
    this.storage = options.cursorStorage ?? new MemoryCursorStorage();
    this.outbox = new Outbox(options.outboxCapacity ?? 10_000);
    this.requests = new Requests(options.requestTimeoutMs ?? 10_000);
    this.opened = new Promise((resolve, reject) => {
      this.markOpened = resolve;
      this.failOpened = reject;
    });
    const Ws = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    if (!Ws) throw new Error("no WebSocket: pass options.WebSocket (Node 20: run with --experimental-websocket)");
    this.session = new Session(options.token, this.opts.refreshBeforeMs, (frame) => this.write(frame));
    this.conn = new Connection(options.url, options.token, Ws, this.hooks(), options.backoff, options.openTimeoutMs);
  }

  /** Opens the connection; resolves once it is open (it keeps reconnecting after that), rejects
   * when the client stops before it ever opened (`signed_out`, `user_deleted`, `disconnected`,
   * `closed`). */
  async connect(): Promise<void> {
    this.conn.start();
    return this.opened;
  }

  /** Closes for good: pending sends and requests are rejected with `closed`. */
  close(): void {
    this.conn.stop();
    this.session.stop();
    clearTimeout(this.retryTimer);
    this.outbox.failAll("closed", "the client was closed");
    this.requests.failAll("closed", "the client was closed");
  }

  /** Ends the current socket as a network failure would; the client reconnects (for tests and "retry now" buttons). */
  reconnect(): void {
    this.conn.drop();
  }

  get connected(): boolean {
    return this.conn.socket !== undefined;
  }

  /** The device's cursor: it holds every position of its user's stream up to this one. */
  get position(): number {
    return this.cursor?.pos ?? 0;
  }

  /** Sends once, whatever happens to the connection: resolves with the stored message's id
   * and place, rejects only on a final refusal (`payload_too_large`, `unknown_recipient`, …). */
  send(req: SendRequest): Promise<f.Accepted> {
    if ((req.to === undefined) === (req.conversationId === undefined)) {
      return Promise.reject(new DistrisocksError("invalid_frame", "a send names `to` or `conversationId`, not both"));
    }
    const clientMsgId = req.clientMsgId ?? crypto.randomUUID();
    const frame: Record<string, string> = { type: "send", payload: req.payload, client_msg_id: clientMsgId };
    if (req.to !== undefined) frame.reciever_id = req.to;
    else frame.conversation_id = req.conversationId!;
    const p = this.outbox.add(clientMsgId, JSON.stringify(frame));
    this.flushOutbox();
    return p;
  }

  /** This user has read `conversationId` up to `seq`; kept and sent on reconnect when offline. */
  read(conversationId: string, seq: number): void {
    this.pendingReads.set(conversationId, Math.max(seq, this.pendingReads.get(conversationId) ?? 0));
    this.flushReads();
  }

  /** Typing state, live only: dropped while disconnected. */
  typing(conversationId: string, active = true): void {
    this.write(JSON.stringify({ type: "typing", conversation_id: conversationId, active }));
  }

  /** Queues a request answered by a frame of its own (requests.ts). */
  protected request<T>(frame: object, match: (x: f.ServerFrame) => T | undefined): Promise<T> {
    const p = this.requests.add({ frame: JSON.stringify(frame), match });
    this.requests.pump((t) => this.write(t));
    return p;
  }

  /** Writes a frame on the open socket; false when there is none. */
  private write(frame: string): boolean {
    const ws = this.conn.socket;
    if (!ws) return false;
    ws.send(frame);
    return true;
  }

  private flushOutbox(): void {
    if (!this.conn.socket) return;
    for (const frame of this.outbox.due(Date.now())) this.write(frame);
    const at = this.outbox.nextHold();
    clearTimeout(this.retryTimer);
    if (at !== undefined) this.retryTimer = setTimeout(() => this.flushOutbox(), Math.max(0, at - Date.now()));
  }

  private flushReads(): void {
    for (const [conversationId, seq] of this.pendingReads) {
      if (!this.write(JSON.stringify({ type: "read", conversation_id: conversationId, seq }))) return;
      this.pendingReads.delete(conversationId);
    }
  }

  private hooks() {
    return {
      query: async (token: string | null) => {
        const q = new URLSearchParams();
        if (token !== null) q.set("token", token);
        else q.set("user_id", this.userId);
        if (this.sync) {
          this.cursor ??= new Cursor((await this.storage.load(this.userId)) ?? 0);
          q.set("since", String(this.cursor.pos));
        }
        return q;
      },
      opened: (_ws: WebSocket, token: string | null) => {
        this.session.opened(token);
        this.flushOutbox();
        this.flushReads();
        if (this.everOpened) this.askMissedStatuses();
        this.everOpened = true;
        this.requests.pump((t) => this.write(t));
        this.markOpened();
      },
      frame: (text: string) => this.onFrame(f.parseServerFrame(text, this.userId)),
      ended: (code: number, reason: string, next: Reconnect) => {
        this.session.ended();
        this.outbox.disconnected();
        this.requests.disconnected();
        this.emit("close", { code, reason, reconnect: next });
        if (next === "never") {
          const why =
            code === 4010 ? "user_deleted" : code === 4012 ? "disconnected" : code === 0 ? "signed_out" : "closed";
          const text = reason || `closed with ${code}`;
          this.outbox.failAll(why === "signed_out" ? "closed" : why, text);
          this.requests.failAll("closed", text);
          this.failOpened(new DistrisocksError(why, text));
        }
      },
      state: (s: ConnectionState) => this.emit("state", s),
    };
  }

  private onFrame(x: f.ServerFrame): void {
    if (this.requests.offer(x)) {
      this.requests.pump((t) => this.write(t));
      if (x.type !== "group") return;
    }
    switch (x.type) {
      case "message":
        return this.onMessage(x.message);
      case "accepted":
        this.hold(x.accepted.pos);
        this.outbox.accepted(x.accepted);
        // A repeat's answer carries the message's current status, which may be past NONE.
        return this.onStatus({ id: x.accepted.id, status: x.accepted.status }, x.accepted.status === "NONE");
      case "status":
        return this.onStatus(x.status, false);
      case "group":
        if (x.group.pos !== undefined && this.cursor?.holds(x.group.pos)) return;
        this.hold(x.group.pos);
        return this.emit("group", x.group);
      case "read":
        return this.emit("read", x.read);
      case "typing":
        return this.emit("typing", x.typing);
      case "token_accepted":
        return this.session.accepted(x.expiresAt);
      case "history_truncated":
        if (this.cursor?.skipTo(x.throughPos)) this.session.saveCursor(() => this.saveCursor());
        return this.emit("truncated", { throughPos: x.throughPos });
      case "error":
        return this.onError(x.error);
      default:
        return;
    }
  }

  /** After a reconnect: status frames sent while this device was away are gone, so it asks
   * for its messages still shown below DELIVERED (the newest 256). A failure is let be: the
   * next reconnect asks again. */
  private askMissedStatuses(): void {
    const ids: string[] = [];
    for (const [id, s] of this.statuses.entries()) if (s === "NONE" || s === "SENT") ids.push(id);
    if (ids.length === 0) return;
    const frame = { type: "statuses", ids: ids.slice(-256) };
    this.request(frame, (x) => (x.type === "statuses" ? x.statuses : undefined)).then(
      (found) => found.forEach((st) => this.onStatus(st, false)),
      () => undefined,
    );
  }

  private onStatus(st: f.StatusEvent, quiet: boolean): void {
    if (!f.isForward(this.statuses.get(st.id), st.status)) return;
    this.statuses.set(st.id, st.status);
    if (!quiet) this.emit("status", st);
  }

  private onMessage(m: f.Message): void {
    const mine = !m.carbon && (m.group ? m.senderId !== this.userId : m.recipientId === this.userId);
    const repeat = this.seen.has(m.id) || (m.pos !== undefined && this.cursor?.holds(m.pos) === true);
    if (!repeat) {
      this.seen.set(m.id, true);
      this.hold(m.pos);
      this.emit("message", m);
    }
    // A repeat is acked again: the first ack may have been lost with its connection.
    if (mine && this.opts.autoAck) this.session.ack(m.id, this.opts.ackDelayMs);
  }

  private onError(e: f.ServerError): void {
    if (e.clientMsgId !== undefined) {
      const still = this.outbox.refused(e.clientMsgId, e.code, e.message, Date.now(), this.opts.retryMs);
      if (still !== undefined) {
        if (still) this.flushOutbox();
        return;
      }
    }
    // A refused refresh (`invalid_token`) changes nothing: the connection ends at its expiry
    // (4011) and the reconnect asks the token provider again.
    this.emit("error", new DistrisocksError(e.code, e.message));
  }

  /** A position this device now holds; the cursor is saved when it moves. */
  private hold(pos: number | undefined): void {
    if (pos === undefined || !this.cursor) return;
    if (this.cursor.add(pos)) this.session.saveCursor(() => this.saveCursor());
  }

  private saveCursor(): Promise<void> {
    return this.cursor ? this.storage.save(this.userId, this.cursor.pos) : Promise.resolve();
  }
}
