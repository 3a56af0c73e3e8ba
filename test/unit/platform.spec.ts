import { DomainError, validationError } from '../../domain/shared/errors';
import { UpcasterRegistry } from '../../src/platform/event-store/event-store';
import { ConcurrencyError } from '../../src/platform/event-store/event-store';
import { eventId } from '../../src/platform/commands/command-handling';
import { toProblem } from '../../src/platform/http/problem-details';

describe('deterministic event ids', () => {
  it('are UUIDs that depend on actor, key, stream and index', () => {
    const a = eventId('user:1', 'key', 'stream', 0);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(eventId('user:1', 'key', 'stream', 0)).toBe(a);
    expect(
      new Set([
        a,
        eventId('user:2', 'key', 'stream', 0),
        eventId('user:1', 'key2', 'stream', 0),
        eventId('user:1', 'key', 'stream2', 0),
        eventId('user:1', 'key', 'stream', 1),
      ]).size,
    ).toBe(5);
  });
});

describe('upcasters', () => {
  it('apply version by version and leave unknown types alone', () => {
    const r = new UpcasterRegistry().register(
      { type: 't', fromVersion: 1, upcast: (d) => ({ ...d, b: 1 }) },
      { type: 't', fromVersion: 2, upcast: (d) => ({ ...d, c: 2 }) },
    );
    expect(r.apply('t', 1, { a: 0 })).toEqual({ data: { a: 0, b: 1, c: 2 }, version: 3 });
    expect(r.apply('t', 2, { a: 0 })).toEqual({ data: { a: 0, c: 2 }, version: 3 });
    expect(r.apply('other', 1, { a: 0 })).toEqual({ data: { a: 0 }, version: 1 });
  });
});

describe('problem details', () => {
  it('map error kinds to statuses with stable codes and fields', () => {
    expect(toProblem(validationError('X.BAD', 'bad', [{ field: 'email', rule: 'must be an email' }]))).toMatchObject({
      status: 400,
      code: 'X.BAD',
      title: 'Bad Request',
      type: 'urn:problem:X.BAD',
      errors: [{ field: 'email', rule: 'must be an email' }],
    });
    expect(toProblem(new ConcurrencyError('s', 3, 4))).toMatchObject({
      status: 409,
      code: 'PLATFORM.CONCURRENCY_CONFLICT',
      actual: '4',
    });
    expect(toProblem(new DomainError('rate_limited', 'AUTH.SLOW_DOWN', 'x')).status).toBe(429);
    expect(toProblem(new DomainError('forbidden', 'AUTH.FORBIDDEN', 'x')).status).toBe(403);
  });

  it("never leak an unexpected error's message", () => {
    const p = toProblem(new Error('password=hunter2 at db.internal'));
    expect(p.status).toBe(500);
    expect(JSON.stringify(p)).not.toContain('hunter2');
  });
});
