/**
 * The `never` check closing every switch over a command or event type: the
 * compiler refuses a type left out, and at run time an unknown type (an event
 * written by newer code) stops the decision instead of being folded wrongly.
 * Takes the command or event itself, or its `type`.
 */
export function unreachable(value: never, what: 'command' | 'event'): never {
  const type: unknown = typeof value === 'object' && value !== null ? (value as { type?: unknown }).type : value;
  throw new Error(`unknown ${what} type ${String(type)}`);
}
