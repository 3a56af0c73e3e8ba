/** Who asked for a command, and how to recognise it when it is sent again. */
export interface CommandContext {
  /** Ties the request, its events and its logs together. */
  readonly correlationId: string;
  /** The request or event that caused the command. */
  readonly causationId: string;
  /** `user:<id>`, `device:<id>`, `admin:token`, `system:<component>`. */
  readonly actor: string;
  /** From the `Idempotency-Key` header or the MQTT message id. */
  readonly idempotencyKey?: string;
  /** The client's address (HTTP: after TRUST_PROXY), for per-address limits; never stored in an event. */
  readonly clientAddress?: string;
  /** The clock, injected: deciders never read time themselves. */
  readonly now: Date;
}

/** What every command answers: the global position it wrote, for read-your-writes. */
export interface CommandResult {
  readonly position: number;
  readonly revision: number;
  /** True when the idempotency key matched an earlier command: nothing new was stored. */
  readonly duplicate: boolean;
}
