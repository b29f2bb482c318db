/**
 * The distriSocks client: the core (core.ts: connection, outbox, acks, cursor, statuses,
 * token refresh) and the requests the server answers with a frame of their own: presence,
 * group membership and receipts (one in flight at a time, requests.ts).
 */

import { ClientCore } from "./core.js";
import type * as f from "./frames.js";

export type { ClientOptions, ClientEvents, SendRequest } from "./core.js";

export class DistrisocksClient extends ClientCore {
  presence(userIds: string[]): Promise<f.PresenceEntry[]> {
    return this.request({ type: "presence", user_ids: userIds }, (x) => (x.type === "presence" ? x.users : undefined));
  }

  groupCreate(members: string[], conversationId?: string): Promise<f.GroupEvent> {
    const frame = { type: "group_create", members, ...(conversationId ? { conversation_id: conversationId } : {}) };
    return this.request(frame, this.groupAnswer(["created"], conversationId));
  }

  groupAdd(conversationId: string, members: string[]): Promise<f.GroupEvent> {
    return this.request({ type: "group_add", conversation_id: conversationId, members }, this.groupAnswer(["added"], conversationId));
  }

  groupRemove(conversationId: string, members: string[]): Promise<f.GroupEvent> {
    const frame = { type: "group_remove", conversation_id: conversationId, members };
    return this.request(frame, this.groupAnswer(["removed", "left"], conversationId));
  }

  groupLeave(conversationId: string): Promise<f.GroupEvent> {
    return this.request({ type: "group_leave", conversation_id: conversationId }, this.groupAnswer(["left"], conversationId));
  }

  groupMembers(conversationId: string): Promise<string[]> {
    return this.request({ type: "group_members", conversation_id: conversationId }, (x) =>
      x.type === "group_members" && x.conversationId === conversationId ? x.members : undefined,
    );
  }

  receipts(id: string): Promise<f.Receipts> {
    return this.request({ type: "receipts", id }, (x) => (x.type === "receipts" && x.receipts.id === id ? x.receipts : undefined));
  }

  private groupAnswer(events: string[], conversationId?: string) {
    return (x: f.ServerFrame): f.GroupEvent | undefined =>
      x.type === "group" &&
      x.group.by === this.userId &&
      events.includes(x.group.event) &&
      (conversationId === undefined || x.group.conversationId === conversationId)
        ? x.group
        : undefined;
  }
}
