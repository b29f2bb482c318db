/** A small typed event emitter: `on` returns the function that removes the listener. A
 * listener that throws does not stop the others or the client (the error goes to
 * `reportError`, or the console where there is none). */
export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<(e: never) => void>>();

  on<K extends keyof Events>(type: K, fn: (e: Events[K]) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn as (e: never) => void);
    return () => set.delete(fn as (e: never) => void);
  }

  protected emit<K extends keyof Events>(type: K, e: Events[K]): void {
    for (const fn of this.listeners.get(type) ?? []) {
      try {
        (fn as (e: Events[K]) => void)(e);
      } catch (err) {
        const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
        if (report) report(err);
        else console.error(err);
      }
    }
  }
}
