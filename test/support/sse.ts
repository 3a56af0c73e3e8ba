/**
 * A real server-sent-events client over HTTP (fetch + reader), as a browser's
 * EventSource would read a stream: it reads all the time, parses events, and
 * says when the server ended the stream.
 */

export interface SseEvent {
  readonly event: string;
  readonly id?: string;
  readonly data: string;
}

export interface SseClient {
  readonly status: number;
  readonly headers: Headers;
  /** The body when the server answered with something else than a stream (a problem). */
  readonly body: unknown;
  readonly events: SseEvent[];
  /** Everything received, comments included. */
  text(): string;
  /** Resolves when the server ends the stream ('done') or cuts the connection ('error'). */
  readonly ended: Promise<'done' | 'error'>;
  /** Resolves with the first event (already received or still to come) that matches. */
  next(match: (e: SseEvent) => boolean, what: string, timeoutMs?: number): Promise<SseEvent>;
  close(): void;
}

export async function openStream(url: string, headers: Record<string, string>): Promise<SseClient> {
  const ctrl = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ctrl.signal });
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    const raw = await res.text();
    let body: unknown = raw;
    try {
      body = JSON.parse(raw);
    } catch {
      /* not JSON */
    }
    return {
      status: res.status,
      headers: res.headers,
      body,
      events: [],
      text: () => raw,
      ended: Promise.resolve('done'),
      next: () => Promise.reject(new Error(`no stream: ${res.status} ${raw}`)),
      close: () => undefined,
    };
  }
  const events: SseEvent[] = [];
  const listeners = new Set<() => void>();
  let all = '';
  let pending = '';
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const ended = (async (): Promise<'done' | 'error'> => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return 'done';
        const chunk = decoder.decode(value, { stream: true });
        all += chunk;
        pending += chunk;
        let cut: number;
        while ((cut = pending.indexOf('\n\n')) >= 0) {
          const block = pending.slice(0, cut);
          pending = pending.slice(cut + 2);
          const fields: Record<string, string> = {};
          for (const line of block.split('\n')) {
            if (!line || line.startsWith(':')) continue;
            const i = line.indexOf(':');
            const key = i < 0 ? line : line.slice(0, i);
            fields[key] = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          }
          if (fields.data === undefined && fields.event === undefined) continue;
          events.push({
            event: fields.event ?? 'message',
            data: fields.data ?? '',
            ...(fields.id !== undefined ? { id: fields.id } : {}),
          });
        }
        for (const l of [...listeners]) l();
      }
    } catch {
      return 'error';
    } finally {
      for (const l of [...listeners]) l();
    }
  })();
  let finished = false;
  void ended.then(() => {
    finished = true;
  });
  return {
    status: res.status,
    headers: res.headers,
    body: undefined,
    events,
    text: () => all,
    ended,
    next(match, what, timeoutMs = 60_000) {
      return new Promise<SseEvent>((resolve, reject) => {
        const check = () => {
          const hit = events.find(match);
          if (hit) {
            done();
            resolve(hit);
          } else if (finished) {
            done();
            reject(new Error(`stream ended before ${what}: ${all}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${what}; received: ${all.slice(-2000)}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        void ended.then(check);
        check();
      });
    },
    close: () => ctrl.abort(),
  };
}

/** Waits for the stream to end, bounded (a stream that outlives its access fails the test instead of hanging it). */
export async function endOf(stream: SseClient, timeoutMs = 60_000): Promise<'done' | 'error'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      stream.ended,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`the stream did not end within ${timeoutMs} ms; received: ${stream.text().slice(-2000)}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
