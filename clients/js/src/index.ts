export { DistrisocksClient, type ClientOptions, type ClientEvents, type SendRequest } from "./client.js";
export { type ConnectionState, type TokenProvider, type WebSocketCtor } from "./connection.js";
export { Backoff, reconnectFor, type BackoffOptions, type Reconnect } from "./backoff.js";
export { Cursor, MemoryCursorStorage, LocalCursorStorage, IndexedDbCursorStorage, type CursorStorage } from "./cursor.js";
export { DistrisocksError } from "./errors.js";
export { expiryOf } from "./session.js";
export * from "./frames.js";
