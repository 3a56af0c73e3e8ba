-- Sales: the saga runner's checkpoint, and the sandbox payment provider's own books
-- (kept like a remote provider keeps them, so its idempotency survives our crashes).

CREATE TABLE saga_checkpoints (
  name text PRIMARY KEY,
  position bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_payments (
  idempotency_key text PRIMARY KEY,
  order_id uuid NOT NULL,
  method text NOT NULL,
  amount_cents bigint NOT NULL,
  currency text NOT NULL,
  status text NOT NULL CHECK (status IN ('captured', 'declined', 'pending')),
  provider_ref text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  answered_at timestamptz
);
CREATE INDEX sandbox_payments_order_idx ON sandbox_payments (order_id);

CREATE TABLE sandbox_refunds (
  idempotency_key text PRIMARY KEY,
  order_id uuid NOT NULL,
  payment_ref text NOT NULL,
  amount_cents bigint NOT NULL,
  currency text NOT NULL,
  provider_ref text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_refunds_order_idx ON sandbox_refunds (order_id);
