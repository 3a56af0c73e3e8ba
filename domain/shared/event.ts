/**
 * The shapes every bounded context shares. Pure types: no I/O, no framework.
 */

/** A domain event as a decider produces it: a stable, past-tense, namespaced type and its data. */
export interface Event<Type extends string = string, Data extends object = Record<string, unknown>> {
  readonly type: Type;
  readonly data: Data;
}

/** A command as a decider receives it. Time and ids come in with the command so `decide` stays pure. */
export interface Command<Type extends string = string, Data extends object = Record<string, unknown>> {
  readonly type: Type;
  readonly data: Data;
}

/**
 * A decider: the write-side model of one stream.
 * `decide` answers a command with the events it causes, or throws a DomainError
 * for invalid input or a broken invariant. Expected business outcomes are events.
 */
export interface Decider<C extends Command, E extends Event, S> {
  readonly initialState: S;
  evolve(state: S, event: E): S;
  decide(command: C, state: S): readonly E[];
  /**
   * An event's identity, when the stream may hold only one event with it (an
   * order's answer on a product's stock): the store derives the event's id
   * from it, so a later decision producing the same identity is stored once,
   * i.e. not at all. Lets a state forget what it only kept to recognise repeats.
   */
  identify?(event: E): string | undefined;
}

/** Folds events into state. */
export function fold<E extends Event, S>(
  decider: Pick<Decider<never, E, S>, 'initialState' | 'evolve'>,
  events: readonly E[],
): S {
  return events.reduce((s, e) => decider.evolve(s, e), decider.initialState);
}
