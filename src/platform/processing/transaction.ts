import type { Pool, PoolClient } from 'pg';

/** The schema read models live in; a rebuild writes into a shadow schema instead (see rebuild.ts). */
export const LIVE_SCHEMA = 'public';
export const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

/**
 * Runs fn in a transaction on a pooled connection. Two ways to save round trips:
 * `fnBegins`: fn's first query must itself start the transaction (BEGIN; ...);
 * `beforeCommit`: SQL without parameters sent with the COMMIT, as one query (it runs
 * first; if it fails, nothing after it runs and the transaction is rolled back).
 */
export async function inTransaction<T>(
  pool: Pool,
  fn: (c: PoolClient) => Promise<T>,
  options: { fnBegins?: boolean; beforeCommit?: (c: PoolClient) => string } = {},
): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    if (!options.fnBegins) await c.query('BEGIN');
    const out = await fn(c);
    await c.query(options.beforeCommit ? `${options.beforeCommit(c)}; COMMIT` : 'COMMIT');
    return out;
  } catch (e) {
    // A connection that cannot even roll back is not given back to the pool.
    await c.query('ROLLBACK').catch((re: unknown) => {
      broken = re instanceof Error ? re : new Error(String(re));
    });
    throw e;
  } finally {
    c.release(broken);
  }
}

/** Failures of the database connection or of concurrency control: worth a retry, never a reason to park an event. */
export function isTransient(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') {
    // 08 connection exception, 40001 serialization failure, 40P01 deadlock, 53 insufficient resources,
    // 57P01-57P03 server shutting down / not accepting connections.
    if (/^(08|53|57P0[123]$|40001$|40P01$)/.test(code)) return true;
    if (/^E(CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN)$/.test(code)) return true;
  }
  return /Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|not queryable/i.test(
    e.message,
  );
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
