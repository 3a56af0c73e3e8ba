import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';

/** Loads once (and again when `deps` change); `every` ms refreshes it in place, without a reload. */
export function useData<T>(
  load: () => Promise<T>,
  deps: unknown[],
  every?: number,
): { data: T | undefined; error: unknown; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [tick, setTick] = useState(0);
  const live = useRef(true);
  useEffect(() => {
    live.current = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const d = await load();
        if (!live.current) return;
        setData(d);
        setError(undefined);
      } catch (e) {
        if (live.current) setError(e);
      }
      if (every && live.current) timer = setTimeout(() => void run(), every);
    };
    void run();
    return () => {
      live.current = false;
      clearTimeout(timer);
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  if (error instanceof ApiError) {
    const p = error.problem;
    return (
      <div class="error" role="alert" data-testid="error">
        <strong>
          {p.status} {p.code ?? p.title}
        </strong>
        : {p.detail ?? p.title}
        {p.errors?.length ? (
          <ul>
            {p.errors.map((f) => (
              <li key={f.field}>
                {f.field}: {f.rule}
              </li>
            ))}
          </ul>
        ) : null}
      </div>
    );
  }
  return (
    <div class="error" role="alert" data-testid="error">
      {error instanceof Error ? error.message : JSON.stringify(error)}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <p class="muted">Loading {what}…</p>;
}

export function Section({ title, children, id }: { title: string; children: ComponentChildren; id?: string }) {
  return (
    <section aria-labelledby={id} class="card">
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

export function Status({ value }: { value: string }) {
  return (
    <span class={`status status-${value}`} data-status={value}>
      {value}
    </span>
  );
}

export const time = (t: string | number | Date | null | undefined) =>
  t === null || t === undefined ? '—' : new Date(t).toLocaleString(undefined, { hour12: false });

export const num = (n: number | null | undefined, digits = 0) =>
  n === null || n === undefined || Number.isNaN(n) ? '—' : n.toFixed(digits);

export function Json({ value }: { value: unknown }) {
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}

/** A button that runs an action, shows it running, and reports its error. */
export function Action({
  label,
  run,
  done,
  testid,
  kind,
}: {
  label: string;
  run: () => Promise<unknown>;
  done?: (result: unknown) => void;
  testid?: string;
  kind?: 'danger';
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  return (
    <span class="action">
      <button
        type="button"
        class={kind}
        disabled={busy}
        data-testid={testid}
        onClick={() => {
          setBusy(true);
          setError(undefined);
          run()
            .then((r) => done?.(r))
            .catch((e: unknown) => setError(e))
            .finally(() => setBusy(false));
        }}
      >
        {busy ? `${label}…` : label}
      </button>
      <ErrorBox error={error} />
    </span>
  );
}

export const isNotFound = (e: unknown) => e instanceof ApiError && e.status === 404;
