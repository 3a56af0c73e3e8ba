import { KeyedPipeline } from '../../src/platform/processing/keyed-pipeline';

/** The pipelined processor's core (issue 13): keys in parallel, one key in order, the checkpoint at the lowest unfinished position. */

function deferred() {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
/** A task with nothing to wait for. */
const sync = (f: () => void) => () => {
  f();
  return Promise.resolve();
};
/** Lets every queued microtask and promise callback run. */
const settle = () => new Promise((r) => setImmediate(r));

it('a slow key holds back only the checkpoint, never the other keys; one key runs in order', async () => {
  const safes: number[] = [];
  const p = new KeyedPipeline(10, { concurrency: 8, maxPending: 100, onSafe: (s) => safes.push(s) });
  const slow = deferred();
  const ran: string[] = [];
  await p.push(11, 'a', async () => {
    await slow.promise;
    ran.push('a11');
  });
  await p.push(
    12,
    'b',
    sync(() => {
      ran.push('b12');
    }),
  );
  await p.push(
    13,
    'a',
    sync(() => {
      ran.push('a13');
    }),
  );
  await p.push(
    14,
    'c',
    sync(() => {
      ran.push('c14');
    }),
  );
  p.mark(20);
  await settle();
  expect(ran).toEqual(['b12', 'c14']);
  expect(p.safe).toBe(10); // 11 is not finished: nothing after it may be checkpointed
  slow.resolve();
  await settle();
  expect(ran).toEqual(['b12', 'c14', 'a11', 'a13']);
  expect(p.safe).toBe(20);
  expect(safes.at(-1)).toBe(20);
  expect(p.pending).toBe(0);
});

it('at most `concurrency` keys run at once, and push waits while `maxPending` events are unfinished', async () => {
  const p = new KeyedPipeline(0, { concurrency: 2, maxPending: 3 });
  const gates = [deferred(), deferred(), deferred()];
  let running = 0;
  let most = 0;
  const task = (i: number) => async () => {
    running++;
    most = Math.max(most, running);
    await gates[i]!.promise;
    running--;
  };
  await p.push(1, 'a', task(0));
  await p.push(2, 'b', task(1));
  let queued = false;
  const third = p.push(3, 'c', task(2)).then(() => {
    queued = true;
  });
  await settle();
  expect(running).toBe(2);
  expect(queued).toBe(false); // 3 unfinished: the reader waits
  gates[0]!.resolve();
  await settle();
  await third;
  expect(queued).toBe(true);
  gates[1]!.resolve();
  gates[2]!.resolve();
  await settle();
  expect(most).toBe(2);
  expect(p.safe).toBe(3);
});

it('a task that throws fails the pipeline: nothing more starts, the checkpoint stays below it, close waits for running tasks', async () => {
  const p = new KeyedPipeline(0, { concurrency: 4, maxPending: 100 });
  const other = deferred();
  let otherDone = false;
  let laterRan = false;
  await p.push(1, 'x', async () => {
    await other.promise;
    otherDone = true;
  });
  await p.push(2, 'y', () => Promise.reject(new Error('boom')));
  await p.push(
    3,
    'y',
    sync(() => {
      laterRan = true;
    }),
  );
  await expect(p.failed).resolves.toThrow('boom');
  const closed = p.close().then(() => 'closed');
  await settle();
  expect(otherDone).toBe(false);
  other.resolve();
  expect(await closed).toBe('closed');
  expect(otherDone).toBe(true);
  expect(laterRan).toBe(false);
  expect(p.safe).toBe(1);
});

it('work without a position (a parked key resumed) holds no checkpoint back but keeps its key in order', async () => {
  const p = new KeyedPipeline(0, { concurrency: 4, maxPending: 100 });
  const gate = deferred();
  const ran: string[] = [];
  await p.push(undefined, 'k', async () => {
    await gate.promise;
    ran.push('resume');
  });
  await p.push(
    5,
    'k',
    sync(() => {
      ran.push('live');
    }),
  );
  await p.push(
    6,
    'j',
    sync(() => {
      ran.push('other');
    }),
  );
  await settle();
  expect(ran).toEqual(['other']);
  expect(p.safe).toBe(0);
  gate.resolve();
  await settle();
  expect(ran).toEqual(['other', 'resume', 'live']);
  expect(p.safe).toBe(6);
});
