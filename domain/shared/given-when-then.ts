import { DomainError, type ErrorKind } from './errors';
import { fold, type Command, type Decider, type Event } from './event';

/**
 * Given/when/then for deciders, for Jest specs:
 *
 *   given(userDecider, [registered]).when(assignAdmin).then([roleAssigned]);
 *   given(userDecider, []).when(assignAdmin).thenThrows('IDENTITY.USER_NOT_FOUND', { kind: 'not_found' });
 *
 * The history and the state are deep-frozen, so a decider that mutates them
 * fails; an event whose identity (`identify`) the history holds is dropped, as
 * the store drops it; produced events must survive a JSON round trip unchanged (they are
 * stored as JSON) and fold back with `evolve`.
 */

export interface ExpectedError {
  readonly kind?: ErrorKind;
  /** The names of the failing fields, in order. */
  readonly fields?: readonly string[];
}

export interface Outcome<E extends Event, S> {
  /** The decider answers with exactly these events. */
  then(expected: readonly E[]): void;
  /** The command is accepted and changes nothing (idempotent repeat). */
  thenNothing(): void;
  /** The decider throws a DomainError with this code (and kind / fields when given). Returns it for further checks. */
  thenThrows(code: string, expected?: ExpectedError): DomainError;
  /** The state after the history and the produced events, for checks on evolve. */
  thenState(check: (state: S) => void): void;
}

export function given<C extends Command, E extends Event, S>(decider: Decider<C, E, S>, history: readonly E[] = []) {
  return {
    when(command: C): Outcome<E, S> {
      const frozen = deepFreeze(structuredClone(history));
      // As the store does: an event whose identity the history holds already is not stored again.
      const identify = decider.identify?.bind(decider);
      const known = new Set(identify ? frozen.map((e) => identify(e)).filter((k) => k !== undefined) : []);
      const decide = (): readonly E[] =>
        decider
          .decide(command, deepFreeze(fold(decider, frozen)))
          .filter((e) => !identify || !known.has(identify(e) ?? ''));
      const produced = (): readonly E[] => {
        const events = decide();
        expect(JSON.parse(JSON.stringify(events))).toEqual(events);
        fold(decider, [...frozen, ...events]); // evolve must accept what decide emits
        return events;
      };
      return {
        then(expected) {
          expect(produced()).toEqual(expected);
        },
        thenNothing() {
          expect(produced()).toEqual([]);
        },
        thenThrows(code, expected = {}) {
          let events: readonly E[];
          try {
            events = decide();
          } catch (e) {
            if (!(e instanceof DomainError)) throw e;
            const actual = { code: e.code, kind: e.kind, fields: e.fields.map((f) => f.field) };
            expect(actual).toEqual({
              code,
              kind: expected.kind ?? actual.kind,
              fields: expected.fields ?? actual.fields,
            });
            return e;
          }
          throw new Error(`expected ${code}, but the decider answered ${JSON.stringify(events)}`);
        },
        thenState(check) {
          check(fold(decider, [...frozen, ...produced()]));
        },
      };
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
