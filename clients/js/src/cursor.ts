/**
 * The device's sync cursor (PROTOCOL.md, "Protocol v2"): the highest stream position up to
 * which the device holds *every* position. Live frames arrive out of `pos` order, so the
 * highest position seen is not a safe cursor; this keeps the positions above the cursor and
 * advances only over a contiguous run. A hole that stays open is filled by the next sync.
 */

/** Where a device keeps its cursor between runs (per user: a page may sign in as another). */
export interface CursorStorage {
  load(userId: string): Promise<number | null>;
  save(userId: string, pos: number): Promise<void>;
}

/** Keeps the cursor for the life of the process: a fresh page syncs from the beginning. */
export class MemoryCursorStorage implements CursorStorage {
  private readonly cursors = new Map<string, number>();

  async load(userId: string): Promise<number | null> {
    return this.cursors.get(userId) ?? null;
  }

  async save(userId: string, pos: number): Promise<void> {
    this.cursors.set(userId, pos);
  }
}

/** `localStorage` (or any object with its two methods), under `<prefix><user>`. */
export class LocalCursorStorage implements CursorStorage {
  constructor(
    private readonly storage: Pick<Storage, "getItem" | "setItem"> = globalThis.localStorage,
    private readonly prefix = "distrisocks.cursor.",
  ) {}

  async load(userId: string): Promise<number | null> {
    const v = this.storage.getItem(this.prefix + userId);
    const n = v === null ? NaN : Number(v);
    return Number.isSafeInteger(n) && n >= 0 ? n : null;
  }

  async save(userId: string, pos: number): Promise<void> {
    this.storage.setItem(this.prefix + userId, String(pos));
  }
}

/** IndexedDB, one object store of `user → pos`; for pages that keep their messages there too. */
export class IndexedDbCursorStorage implements CursorStorage {
  private db: Promise<IDBDatabase> | undefined;

  constructor(
    private readonly name = "distrisocks",
    private readonly factory: IDBFactory = globalThis.indexedDB,
  ) {}

  async load(userId: string): Promise<number | null> {
    const v = await this.request("readonly", (s) => s.get(userId));
    return typeof v === "number" ? v : null;
  }

  async save(userId: string, pos: number): Promise<void> {
    await this.request("readwrite", (s) => s.put(pos, userId));
  }

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise((resolve, reject) => {
      const req = this.factory.open(this.name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore("cursors");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return this.db;
  }

  private async request(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest): Promise<unknown> {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const req = op(db.transaction("cursors", mode).objectStore("cursors"));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
}

/** The positions a device holds, reduced to its cursor. */
export class Cursor {
  private above = new Set<number>();

  constructor(private at = 0) {}

  /** Every position up to this one is held. */
  get pos(): number {
    return this.at;
  }

  /** Whether `pos` is already held (a repeat, across reconnects). */
  holds(pos: number): boolean {
    return pos <= this.at || this.above.has(pos);
  }

  /** Records a held position; true when the cursor moved. */
  add(pos: number): boolean {
    if (pos <= this.at) return false;
    this.above.add(pos);
    const before = this.at;
    while (this.above.delete(this.at + 1)) this.at++;
    return this.at !== before;
  }

  /** Retention deleted everything up to `pos` (`history_truncated`): nothing to wait for there. */
  skipTo(pos: number): boolean {
    if (pos <= this.at) return false;
    for (const p of this.above) if (p <= pos) this.above.delete(p);
    this.at = pos;
    while (this.above.delete(this.at + 1)) this.at++;
    return true;
  }

  /** Positions held above the cursor, waiting for a hole below them to fill. */
  get pending(): number {
    return this.above.size;
  }
}
