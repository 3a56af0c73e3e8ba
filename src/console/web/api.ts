/**
 * The console's one way to the API. Tokens live only in this module's memory:
 * never in localStorage, sessionStorage or a cookie, so a reload signs out and
 * no other script or site can read or ride on them. The refresh token is
 * rotated as the API does it (every use returns a new one); sign-out revokes
 * the session server-side.
 */

export interface Me {
  userId: string;
  email: string;
  name: string;
  roles: string[];
  status: string;
}

interface Tokens {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

export interface Problem {
  status: number;
  code?: string;
  title?: string;
  detail?: string;
  errors?: { field: string; rule: string }[];
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
  }
  get status(): number {
    return this.problem.status;
  }
}

let tokens: Tokens | undefined;
let refreshing: Promise<boolean> | undefined;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
let onSignedOut: (reason: string) => void = () => undefined;

export function whenSignedOut(fn: (reason: string) => void): void {
  onSignedOut = fn;
}

function keep(t: Tokens): void {
  tokens = t;
  clearTimeout(refreshTimer);
  // Refresh ahead of expiry, so a live chart never sees its token lapse.
  refreshTimer = setTimeout(() => void refresh(), Math.max(5, t.expiresIn * 0.8) * 1000);
}

function forget(reason: string): void {
  const had = tokens !== undefined;
  tokens = undefined;
  clearTimeout(refreshTimer);
  if (had) onSignedOut(reason);
}

async function problemOf(res: Response): Promise<Problem> {
  try {
    const body = (await res.json()) as Problem;
    return { ...body, status: res.status };
  } catch {
    return { status: res.status, title: res.statusText };
  }
}

/** Rotates the refresh token once, however many requests ask at the same time. */
function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const current = tokens;
    if (!current) return false;
    try {
      const res = await fetch('/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refreshToken: current.refreshToken }),
      });
      if (!res.ok) {
        forget('your session ended: sign in again');
        return false;
      }
      keep((await res.json()) as Tokens);
      return true;
    } catch {
      return false;
    } finally {
      refreshing = undefined;
    }
  })();
  return refreshing;
}

export function authHeader(): Record<string, string> {
  return tokens ? { authorization: `Bearer ${tokens.accessToken}` } : {};
}

async function send(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(path, {
    method,
    headers: { ...authHeader(), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

/** JSON in and out; a problem answer throws ApiError. A 401 refreshes the session once and retries. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res = await send(method, path, body);
  if (res.status === 401 && tokens && (await refresh())) res = await send(method, path, body);
  if (!res.ok) throw new ApiError(await problemOf(res));
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('content-type') ?? '';
  return (type.includes('json') ? await res.json() : await res.text()) as T;
}

export const get = <T>(path: string) => api<T>('GET', path);

export async function signIn(email: string, password: string): Promise<Me> {
  const res = await fetch('/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (!res.ok) throw new ApiError(await problemOf(res));
  keep((await res.json()) as Tokens);
  return get<Me>('/users/me');
}

export async function signOut(): Promise<void> {
  const t = tokens;
  if (!t) return;
  try {
    // Revokes the access token's jti and the refresh token's family.
    await send('POST', '/auth/logout', { refreshToken: t.refreshToken });
  } finally {
    forget('signed out');
  }
}

/**
 * Server-sent events with the bearer token: EventSource cannot send an
 * Authorization header, so this reads the stream with fetch. Resumes after a
 * drop with Last-Event-ID, as the API supports.
 */
export function subscribe(
  path: string,
  onEvent: (event: string, data: string) => void,
  signal: AbortSignal,
  onState: (state: 'open' | 'closed' | 'error', detail?: string) => void = () => undefined,
): void {
  let lastId: string | undefined;
  const run = async (attempt: number): Promise<void> => {
    try {
      let res = await fetch(path, {
        headers: { ...authHeader(), ...(lastId ? { 'last-event-id': lastId } : {}) },
        signal,
      });
      if (res.status === 401 && (await refresh()))
        res = await fetch(path, {
          headers: { ...authHeader(), ...(lastId ? { 'last-event-id': lastId } : {}) },
          signal,
        });
      if (!res.ok || !res.body) {
        const p = await problemOf(res);
        onState('error', p.detail ?? `HTTP ${res.status}`);
        return;
      }
      onState('open');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      let ended = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
            else if (line.startsWith('id: ')) lastId = line.slice(4);
          }
          if (event === 'end') ended = true;
          if (data.length) onEvent(event, data.join('\n'));
        }
      }
      onState('closed');
      // The server ends a stream when the token lapses: with a fresh one, carry on from the last id.
      if (ended && !signal.aborted && tokens && attempt < 5) return run(attempt + 1);
    } catch (e) {
      if (!signal.aborted) onState('error', e instanceof Error ? e.message : String(e));
    }
  };
  void run(0);
}
