import { Client, type PoolClient } from 'pg';

/**
 * A PostgreSQL advisory lock `(class, hashtext(name))` held by a dedicated
 * connection: whoever holds it is the one instance doing that work (running a
 * processor, rebuilding a projection). It is a session lock, so it goes away
 * with its connection, by a clean release or when the holder dies, and a
 * standby elsewhere can take it. Classes come from src/platform/locks.ts.
 *
 * Losing the connection is noticed from the moment it is opened, not only
 * once someone listens: `lost` settles then, even if the lock was taken a
 * moment ago and its holder has not started its work yet (a holder checks
 * `held` before it starts and races `lost` while it works).
 */
export interface SessionLockOptions {
  readonly connectionString: string;
  /** Shows in pg_stat_activity: what holds the lock (`projection:users`, `saga:order-fulfilment`). */
  readonly applicationName: string;
  readonly lockClass: number;
  readonly name: string;
  /** Told when the connection fails while the lock is held or being taken. */
  readonly onLost?: (e: Error) => void;
}

export class SessionLock {
  private live = true;

  private constructor(
    private readonly client: Client,
    /** The backend holding the lock, for fencing checks from other connections. */
    readonly pid: number,
    private readonly options: SessionLockOptions,
    /** Settles (never rejects) when the connection fails; never settles after a clean release. */
    readonly lost: Promise<Error>,
    private readonly markReleased: () => void,
  ) {}

  /** The lock, or undefined when another session holds it. Throws when PostgreSQL cannot be reached. */
  static async tryTake(options: SessionLockOptions): Promise<SessionLock | undefined> {
    const client = new Client({
      connectionString: options.connectionString,
      application_name: options.applicationName,
    });
    let lock: SessionLock | undefined;
    let released = false;
    let reportLost: (e: Error) => void = () => undefined;
    const lost = new Promise<Error>((res) => {
      reportLost = res;
    });
    // Without a listener, losing this idle connection would be an uncaught 'error' event and crash the process.
    client.on('error', (e) => {
      if (released) return;
      if (lock) lock.live = false;
      client.end().catch(() => undefined);
      options.onLost?.(e);
      reportLost(e);
    });
    try {
      await client.connect();
      const res = await client.query<{ ok: boolean; pid: number }>(
        'SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok, pg_backend_pid() AS pid',
        [options.lockClass, options.name],
      );
      const row = res.rows[0];
      if (!row?.ok) {
        released = true;
        await client.end().catch(() => undefined);
        return undefined;
      }
      lock = new SessionLock(client, row.pid, options, lost, () => {
        released = true;
      });
      return lock;
    } catch (e) {
      released = true;
      await client.end().catch(() => undefined);
      throw e;
    }
  }

  /** False once the connection failed or the lock was released. */
  get held(): boolean {
    return this.live;
  }

  /**
   * Fencing: throws `failure` unless this session still holds the lock, checked on `db`
   * (another connection, typically the transaction about to write), so a
   * holder whose lock connection died cannot write over a successor's work.
   */
  async assertHeld(db: PoolClient, failure: string): Promise<void> {
    const held = await db.query(
      `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND classid = $2 AND objid = hashtext($3)::oid
          AND objsubid = 2 AND granted`,
      [this.pid, this.options.lockClass, this.options.name],
    );
    if (held.rowCount === 0) throw new Error(failure);
  }

  /** Ends the connection, which releases the lock. */
  async release(): Promise<void> {
    this.live = false;
    this.markReleased();
    await this.client.end().catch(() => undefined);
  }
}
