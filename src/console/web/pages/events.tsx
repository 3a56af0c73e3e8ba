import { useState } from 'preact/hooks';
import { get } from '../api';
import { ErrorBox, Json, Loading, Section, time, useData } from '../ui';

export interface StoredEvent {
  id: string;
  streamId: string;
  revision: number;
  position: number;
  type: string;
  data: Record<string, unknown>;
  metadata: { correlationId: string; causationId: string; actor: string; [k: string]: unknown };
  schemaVersion: number;
  recordedAt: string;
}

const PAGE = 50;

export function Events({ path }: { path: string[] }) {
  if (path[0] === 'stream' && path.length > 1) return <Stream streamId={path.slice(1).join('/')} />;
  if (path[0]) return <EventDetail id={path[0]} />;
  return <All />;
}

function StreamForm() {
  const [stream, setStream] = useState('');
  return (
    <form
      class="inline"
      onSubmit={(e) => {
        e.preventDefault();
        if (stream.trim()) location.hash = `#/events/stream/${encodeURIComponent(stream.trim())}`;
      }}
    >
      <label>
        Stream
        <input value={stream} onInput={(e) => setStream(e.currentTarget.value)} placeholder="e.g. order-<id>" />
      </label>
      <button type="submit">Open stream</button>
    </form>
  );
}

function All() {
  // The newest page, or the page before (older) / after (newer) a position: positions are sparse, so page by keys.
  const [page, setPage] = useState<{ before?: number; after?: number }>({});
  const { data, error } = useData(() => {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (page.before !== undefined) q.set('before', String(page.before));
    if (page.after !== undefined) q.set('after', String(page.after));
    return get<{ head: number; events: StoredEvent[] }>(`/admin/events?${q.toString()}`);
  }, [page.before, page.after]);
  const first = data?.events[0]?.position;
  const last = data?.events[data.events.length - 1]?.position;
  return (
    <>
      <h1>Event explorer</h1>
      <StreamForm />
      <ErrorBox error={error} />
      {!data ? (
        <Loading what="$all" />
      ) : (
        <Section title={`$all (head ${data.head})`}>
          <div class="pager">
            <button type="button" disabled={first === undefined} onClick={() => setPage({ before: first! })}>
              ← Older
            </button>
            <button
              type="button"
              disabled={last === undefined || last >= data.head}
              onClick={() => setPage({ after: last! })}
            >
              Newer →
            </button>
            <button type="button" onClick={() => setPage({})}>
              Newest
            </button>
          </div>
          <EventTable events={data.events} />
        </Section>
      )}
    </>
  );
}

function Stream({ streamId }: { streamId: string }) {
  const [from, setFrom] = useState(0);
  const { data, error } = useData(
    () =>
      get<{ streamId: string; events: StoredEvent[] }>(
        `/admin/streams/${encodeURIComponent(streamId)}/events?from=${from}&limit=${PAGE}`,
      ),
    [streamId, from],
  );
  return (
    <>
      <p>
        <a href="#/events">← $all</a>
      </p>
      <h1>Stream {streamId}</h1>
      <StreamForm />
      <ErrorBox error={error} />
      {!data ? (
        <Loading what="the stream" />
      ) : (
        <>
          <div class="pager">
            <button type="button" disabled={from === 0} onClick={() => setFrom(Math.max(0, from - PAGE))}>
              ← Earlier
            </button>
            <button type="button" disabled={data.events.length < PAGE} onClick={() => setFrom(from + PAGE)}>
              Later →
            </button>
          </div>
          <EventTable events={data.events} showStream={false} />
        </>
      )}
    </>
  );
}

export function EventTable({ events, showStream = true }: { events: StoredEvent[]; showStream?: boolean }) {
  if (events.length === 0) return <p class="muted">No events.</p>;
  return (
    <table data-testid="events">
      <thead>
        <tr>
          <th>Position</th>
          {showStream ? <th>Stream</th> : null}
          <th>Rev.</th>
          <th>Type</th>
          <th>Actor</th>
          <th>Recorded</th>
        </tr>
      </thead>
      <tbody>
        {events.map((e) => (
          <tr key={e.id} data-type={e.type}>
            <td>{e.position}</td>
            {showStream ? (
              <td>
                <a href={`#/events/stream/${encodeURIComponent(e.streamId)}`}>{e.streamId}</a>
              </td>
            ) : null}
            <td>{e.revision}</td>
            <td>
              <a href={`#/events/${e.id}`}>{e.type}</a>
            </td>
            <td>{e.metadata.actor}</td>
            <td>{time(e.recordedAt)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

interface Related {
  event: StoredEvent;
  causedBy: StoredEvent | null;
  caused: StoredEvent[];
  correlated: StoredEvent[];
}

/** One event, what caused it and what it caused (causation ids), and everything of its correlation. */
function EventDetail({ id }: { id: string }) {
  const { data, error } = useData(() => get<Related>(`/admin/events/${id}`), [id]);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="the event" />;
  const e = data.event;
  return (
    <>
      <p>
        <a href="#/events">← $all</a> · <a href={`#/events/stream/${encodeURIComponent(e.streamId)}`}>{e.streamId}</a>
      </p>
      <h1 data-testid="event-type">{e.type}</h1>
      <dl class="facts">
        <dt>Id</dt>
        <dd>{e.id}</dd>
        <dt>Position</dt>
        <dd>{e.position}</dd>
        <dt>Stream / revision</dt>
        <dd>
          {e.streamId} @ {e.revision}
        </dd>
        <dt>Recorded</dt>
        <dd>{time(e.recordedAt)}</dd>
        <dt>Actor</dt>
        <dd>{e.metadata.actor}</dd>
        <dt>Correlation</dt>
        <dd>{e.metadata.correlationId}</dd>
        <dt>Causation</dt>
        <dd>{e.metadata.causationId}</dd>
      </dl>
      <Section title="Data">
        <Json value={e.data} />
      </Section>
      <Section title="Caused by">
        {data.causedBy ? (
          <EventTable events={[data.causedBy]} />
        ) : (
          <p class="muted">Not an event: a request, message or job ({e.metadata.causationId}).</p>
        )}
      </Section>
      <Section title="Caused">
        <EventTable events={data.caused} />
      </Section>
      <Section title={`Same correlation (${data.correlated.length})`}>
        <EventTable events={data.correlated} />
      </Section>
      <Section title="Metadata">
        <Json value={e.metadata} />
      </Section>
    </>
  );
}
