import { randomUUID } from 'node:crypto';
import type { EventToAppend } from '../../src/platform/event-store/event-store';

export function testEvent(type: string, data: Record<string, unknown> = {}, id: string = randomUUID()): EventToAppend {
  return { id, type, data, metadata: { correlationId: 'test', causationId: 'test', actor: 'system:test' } };
}

/** Polls until `check` is true; for tests that watch another process. Never asserts on time. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
