import { createHash } from 'node:crypto';
import type { Pool } from 'pg';

/**
 * The payment port: how the saga charges and refunds. A real provider plugs
 * in behind the same interface; every call carries an idempotency key per
 * order and step, so a call repeated after a crash charges or refunds once.
 */
export interface ChargeRequest {
  readonly orderId: string;
  readonly amountCents: number;
  readonly currency: string;
  readonly method: string;
  readonly idempotencyKey: string;
}

export type ChargeOutcome =
  | { readonly status: 'captured'; readonly providerRef: string }
  | { readonly status: 'declined'; readonly reason: string }
  /** No answer yet: the provider reports later through `onResult`, or never. */
  | { readonly status: 'pending' };

export interface RefundRequest {
  readonly orderId: string;
  readonly providerRef: string;
  readonly amountCents: number;
  readonly currency: string;
  readonly idempotencyKey: string;
}

export type ResultListener = (orderId: string, outcome: Exclude<ChargeOutcome, { status: 'pending' }>) => Promise<void>;

export interface PaymentPort {
  readonly name: string;
  charge(request: ChargeRequest): Promise<ChargeOutcome>;
  refund(request: RefundRequest): Promise<{ providerRef: string }>;
  /** Where answers that arrive later (a provider's webhook) are delivered. */
  onResult(listener: ResultListener): void;
}

/** Test payment methods of the sandbox, like a real provider's test cards. */
export const SANDBOX_METHODS = {
  captured: 'card',
  declined: 'card-declined',
  noResponse: 'card-no-response',
} as const;

/**
 * The built-in sandbox provider for development and tests. It keeps its own
 * books in PostgreSQL tables (as a remote provider would on its side), so its
 * idempotency survives our crashes: `card` is captured, `card-declined` is
 * declined, `card-no-response` never answers until an operator calls
 * `capturePending` (POST /admin/sandbox/payments/:orderId/capture), which
 * delivers the capture as a late webhook would. Any other method is captured.
 * An operator may switch an outage on for one order (PUT
 * /admin/sandbox/payments/:orderId/outage): its charges and refunds fail, as
 * a provider that is down for one customer would, until it is switched off.
 */
export class SandboxPaymentProvider implements PaymentPort {
  readonly name = 'sandbox';
  private listener: ResultListener | undefined;

  constructor(private readonly pool: Pool) {}

  onResult(listener: ResultListener): void {
    this.listener = listener;
  }

  async charge(r: ChargeRequest): Promise<ChargeOutcome> {
    const status =
      r.method === SANDBOX_METHODS.declined
        ? 'declined'
        : r.method === SANDBOX_METHODS.noResponse
          ? 'pending'
          : 'captured';
    // One round trip: the outage check, the charge recorded once per key, and the charge's row (the
    // new one, or the one a repeat finds). A row a concurrent repeat inserted while this statement
    // ran is not in its snapshot: read again then.
    const res = await this.pool.query<{ outage: boolean; status: string | null; provider_ref: string | null }>(
      `WITH o AS (SELECT EXISTS (SELECT 1 FROM sandbox_payment_outages WHERE order_id = $2) AS outage),
            ins AS (INSERT INTO sandbox_payments (idempotency_key, order_id, method, amount_cents, currency, status, provider_ref)
                    SELECT $1, $2, $3, $4, $5, $6, $7 FROM o WHERE NOT o.outage
                    ON CONFLICT (idempotency_key) DO NOTHING RETURNING status, provider_ref),
            found AS (SELECT status, provider_ref FROM ins
                      UNION ALL SELECT status, provider_ref FROM sandbox_payments WHERE idempotency_key = $1 LIMIT 1)
       SELECT o.outage, f.status, f.provider_ref FROM o LEFT JOIN found f ON NOT o.outage`,
      [r.idempotencyKey, r.orderId, r.method, r.amountCents, r.currency, status, ref('ch', r.idempotencyKey)],
    );
    if (res.rows[0]!.outage) throw new SandboxOutageError(r.orderId);
    const row =
      res.rows[0]!.status === null
        ? (
            await this.pool.query<{ status: string; provider_ref: string }>(
              'SELECT status, provider_ref FROM sandbox_payments WHERE idempotency_key = $1',
              [r.idempotencyKey],
            )
          ).rows[0]!
        : { status: res.rows[0]!.status, provider_ref: res.rows[0]!.provider_ref! };
    if (row.status === 'captured') return { status: 'captured', providerRef: row.provider_ref };
    if (row.status === 'declined')
      return { status: 'declined', reason: 'the card was declined (sandbox test card card-declined)' };
    return { status: 'pending' };
  }

  async refund(r: RefundRequest): Promise<{ providerRef: string }> {
    await this.failDuringOutage(r.orderId);
    const providerRef = ref('re', r.idempotencyKey);
    await this.pool.query(
      `INSERT INTO sandbox_refunds (idempotency_key, order_id, payment_ref, amount_cents, currency, provider_ref)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING`,
      [r.idempotencyKey, r.orderId, r.providerRef, r.amountCents, r.currency, providerRef],
    );
    return { providerRef };
  }

  /** Switches the outage of one order on (true) or off; answers whether it was on before. */
  async setOutage(orderId: string, on: boolean): Promise<boolean> {
    const res = on
      ? await this.pool.query(
          'INSERT INTO sandbox_payment_outages (order_id) VALUES ($1) ON CONFLICT (order_id) DO NOTHING',
          [orderId],
        )
      : await this.pool.query('DELETE FROM sandbox_payment_outages WHERE order_id = $1', [orderId]);
    return on ? res.rowCount === 0 : res.rowCount === 1;
  }

  private async failDuringOutage(orderId: string): Promise<void> {
    const res = await this.pool.query('SELECT 1 FROM sandbox_payment_outages WHERE order_id = $1', [orderId]);
    if (res.rowCount) throw new SandboxOutageError(orderId);
  }

  /** Captures a payment left pending and delivers the result. Returns false when the order has no pending or captured sandbox payment. */
  async capturePending(orderId: string): Promise<boolean> {
    const res = await this.pool.query<{ provider_ref: string }>(
      `UPDATE sandbox_payments SET status = 'captured', answered_at = now()
       WHERE order_id = $1 AND status IN ('pending', 'captured') RETURNING provider_ref`,
      [orderId],
    );
    const row = res.rows[0];
    if (!row) return false;
    await this.listener?.(orderId, { status: 'captured', providerRef: row.provider_ref });
    return true;
  }

  /** The sandbox's books for one order (tests and operators compare them with the events). */
  async books(orderId: string): Promise<{ charges: Record<string, unknown>[]; refunds: Record<string, unknown>[] }> {
    const [charges, refunds] = await Promise.all([
      this.pool.query(
        'SELECT idempotency_key AS "idempotencyKey", method, amount_cents AS "amountCents", status, provider_ref AS "providerRef" FROM sandbox_payments WHERE order_id = $1',
        [orderId],
      ),
      this.pool.query(
        'SELECT idempotency_key AS "idempotencyKey", payment_ref AS "paymentRef", amount_cents AS "amountCents", provider_ref AS "providerRef" FROM sandbox_refunds WHERE order_id = $1',
        [orderId],
      ),
    ]);
    return { charges: charges.rows as Record<string, unknown>[], refunds: refunds.rows as Record<string, unknown>[] };
  }
}

/** What the sandbox answers for an order whose outage is on (a provider that is down: 503, a timeout). */
export class SandboxOutageError extends Error {
  constructor(readonly orderId: string) {
    super(`sandbox payment provider: outage switched on for order ${orderId} (503 Service Unavailable)`);
    this.name = 'SandboxOutageError';
  }
}

const ref = (kind: string, key: string) => `sbx_${kind}_${createHash('sha256').update(key).digest('hex').slice(0, 20)}`;
