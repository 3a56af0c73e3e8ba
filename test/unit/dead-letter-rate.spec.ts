import { DeadLetterRate } from '../../src/telemetry/dead-letters';

/** The per-device dead-letter window: counts, the one "first over" per window, a fresh window, devices apart. */
describe('DeadLetterRate', () => {
  it('lets `max` through per window, marks the next one first-over, the rest over; a new window starts afresh', () => {
    let now = 1_000;
    const rate = new DeadLetterRate(2, 60_000, () => now);
    expect(['a', 'a', 'a', 'a'].map((k) => rate.take(k))).toEqual(['within', 'within', 'first-over', 'over']);
    expect(rate.take('b')).toBe('within'); // another device has its own window
    now += 59_999;
    expect(rate.take('a')).toBe('over');
    now += 1;
    expect(['a', 'a', 'a'].map((k) => rate.take(k))).toEqual(['within', 'within', 'first-over']);
  });

  it('forgets ended windows, so many devices over time do not pile up', () => {
    let now = 0;
    const rate = new DeadLetterRate(1, 1000, () => now);
    for (let i = 0; i < 5000; i++) {
      now = i * 10; // 100 devices per window
      rate.take(`d${i}`);
    }
    const size = (rate as unknown as { windows: Map<string, unknown> }).windows.size;
    expect(size).toBeLessThan(1100);
  });
});
