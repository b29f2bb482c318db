/**
 * The wire: what the server sends (docs/PROTOCOL.md, "Server → client") as typed values, and
 * the client frames this library writes. Server frames are parsed once, here, so the rest of
 * the client never touches raw JSON.
 */

/** A message's delivery status, "at least this far" (READ: groups only). */
export type Status = "NONE" | "SENT" | "DELIVERED" | "READ";

const RANK: Record<Status, number> = { NONE: 0, SENT: 1, DELIVERED: 2, READ: 3 };

/** Whether `next` is further than `prev` (statuses only move forward). */
export function isForward(prev: Status | undefined, next: Status): boolean {
  return prev === undefined || RANK[next] > RANK[prev];
}

/** A message as a device sees it: addressed to its user, or a carbon of its user's own. */
export interface Message {
  id: string;
  senderId: string;
  /** The recipient user, or the group's id for a group message. */
  recipientId: string;
  payload: string;
  createdAt: string;
  conversationId?: string;
  /** Place in the conversation (display order). */
  seq?: number;
  /** Place in this user's stream (the sync cursor). */
  pos?: number;
  /** Sent by this user from another device: shown, never acked. */
  carbon: boolean;
  /** A group's message (`conversationId` starts with `g:`). */
  group: boolean;
}

/** The server stored a send: its id and place. */
export interface Accepted {
  id: string;
  clientMsgId?: string;
  status: Status;
  conversationId?: string;
  seq?: number;
  pos?: number;
}

export interface StatusEvent {
  id: string;
  status: Status;
}

export interface ReadEvent {
  conversationId: string;
  userId: string;
  seq: number;
}

export interface TypingEvent {
  conversationId: string;
  userId: string;
  active: boolean;
}

export interface GroupEvent {
  id: string;
  conversationId: string;
  event: string;
  by: string;
  members: string[];
  createdAt?: string;
  seq?: number;
  pos?: number;
}

export interface PresenceEntry {
  userId: string;
  online: boolean;
  lastSeen?: string;
}

export interface MemberReceipt {
  userId: string;
  status: Status;
  read: boolean;
}

export interface Receipts {
  id: string;
  conversationId: string;
  seq: number;
  status: Status;
  members: MemberReceipt[];
}

/** An `error` frame. `clientMsgId` ties it to a send, `id` to an ack. */
export interface ServerError {
  code: string;
  message: string;
  clientMsgId?: string;
  id?: string;
}

export type ServerFrame =
  | { type: "message"; message: Message }
  | { type: "accepted"; accepted: Accepted }
  | { type: "status"; status: StatusEvent }
  | { type: "read"; read: ReadEvent }
  | { type: "typing"; typing: TypingEvent }
  | { type: "group"; group: GroupEvent }
  | { type: "group_members"; conversationId: string; members: string[] }
  | { type: "presence"; users: PresenceEntry[] }
  | { type: "receipts"; receipts: Receipts }
  | { type: "statuses"; statuses: StatusEvent[] }
  | { type: "token_accepted"; expiresAt: number }
  | { type: "history_truncated"; throughPos: number }
  | { type: "error"; error: ServerError }
  | { type: "unknown"; raw: unknown };

type Json = Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

/** Parses one text frame; a frame this version does not know is `unknown`, never an error. */
export function parseServerFrame(text: string, me: string): ServerFrame {
  let f: Json;
  try {
    f = JSON.parse(text) as Json;
  } catch {
    return { type: "unknown", raw: text };
  }
  if (f === null || typeof f !== "object") return { type: "unknown", raw: f };
  switch (f.type) {
    case "message":
      return { type: "message", message: message(f, me) };
    case "accepted":
      return {
        type: "accepted",
        accepted: {
          id: String(f.id),
          clientMsgId: str(f.client_msg_id),
          status: f.status as Status,
          conversationId: str(f.conversation_id),
          seq: num(f.seq),
          pos: num(f.pos),
        },
      };
    case "status":
      return { type: "status", status: { id: String(f.id), status: f.status as Status } };
    case "read":
      return {
        type: "read",
        read: { conversationId: String(f.conversation_id), userId: String(f.user_id), seq: Number(f.seq) },
      };
    case "typing":
      return {
        type: "typing",
        typing: { conversationId: String(f.conversation_id), userId: String(f.user_id), active: f.active !== false },
      };
    case "group":
      return { type: "group", group: groupEvent(f) };
    case "group_members":
      return { type: "group_members", conversationId: String(f.conversation_id), members: strings(f.members) };
    case "presence":
      return { type: "presence", users: presence(f.users) };
    case "receipts":
      return { type: "receipts", receipts: receipts(f) };
    case "statuses":
      return {
        type: "statuses",
        statuses: (Array.isArray(f.statuses) ? f.statuses : []).map((x: Json) => ({ id: String(x.id), status: x.status as Status })),
      };
    case "token_accepted":
      return { type: "token_accepted", expiresAt: Number(f.expires_at) };
    case "history_truncated":
      return { type: "history_truncated", throughPos: Number(f.through_pos) };
    case "error":
      return {
        type: "error",
        error: { code: String(f.code), message: String(f.message ?? ""), clientMsgId: str(f.client_msg_id), id: str(f.id) },
      };
    default:
      return { type: "unknown", raw: f };
  }
}

function message(f: Json, me: string): Message {
  const senderId = String(f.sender_id);
  const conversationId = str(f.conversation_id);
  return {
    id: String(f.id),
    senderId,
    recipientId: String(f.reciever_id),
    payload: String(f.message),
    createdAt: String(f.created_at),
    conversationId,
    seq: num(f.seq),
    pos: num(f.pos),
    // A carbon is the user's own message seen from another device; a note to self is not.
    carbon: senderId === me && f.reciever_id !== me,
    group: conversationId?.startsWith("g:") ?? false,
  };
}

function groupEvent(f: Json): GroupEvent {
  return {
    id: String(f.id),
    conversationId: String(f.conversation_id),
    event: String(f.event),
    by: String(f.by),
    members: strings(f.members),
    createdAt: str(f.created_at),
    seq: num(f.seq),
    pos: num(f.pos),
  };
}

function presence(v: unknown): PresenceEntry[] {
  return (Array.isArray(v) ? v : []).map((u: Json) => ({
    userId: String(u.user_id),
    online: u.online === true,
    lastSeen: str(u.last_seen),
  }));
}

function receipts(f: Json): Receipts {
  const members = (Array.isArray(f.members) ? f.members : []).map((m: Json) => ({
    userId: String(m.user_id),
    status: m.status as Status,
    read: m.read === true,
  }));
  return {
    id: String(f.id),
    conversationId: String(f.conversation_id),
    seq: Number(f.seq),
    status: f.status as Status,
    members,
  };
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

/** The direct conversation of two users, as the server names it (PROTOCOL.md, v2). */
export function directConversationId(a: string, b: string): string {
  const enc = new TextEncoder();
  const [lo, hi] = compareBytes(enc.encode(a), enc.encode(b)) <= 0 ? [a, b] : [b, a];
  return `dm:${enc.encode(lo).length}:${lo}:${hi}`;
}

function compareBytes(x: Uint8Array, y: Uint8Array): number {
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}
