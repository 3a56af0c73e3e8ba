import { useEffect, useState } from 'preact/hooks';
import { api, get } from '../api';
import { Action, ErrorBox, Json, Loading, Section, Status, isNotFound, num, time, useData } from '../ui';

interface ProjectionInfo {
  name: string;
  version: number;
  definedVersion: number;
  checkpoint: number;
  status: string;
  lagEvents: number | null;
  lagSeconds: number;
  activeHere: boolean;
  parked: null | {
    position: number;
    eventId: string | null;
    eventType: string | null;
    error: string | null;
    attempts: number | null;
  };
  updatedAt: string;
}
interface Job {
  id: string;
  state: string;
  progress: { processed?: number; total?: number; percent?: number } | number;
  result: { position: number; events: number } | null;
  failedReason: string | null;
}

export function Projections({ name }: { name: string | undefined }) {
  const { data, error } = useData(() => get<{ projections: ProjectionInfo[] }>('/admin/projections'), [], 2000);
  if (name) return <Projection name={name} />;
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="projections" />;
  return (
    <>
      <h1>Projections</h1>
      <ErrorBox error={error} />
      <table data-testid="projections">
        <thead>
          <tr>
            <th>Name</th>
            <th>Status</th>
            <th>Position</th>
            <th>Lag (events)</th>
            <th>Lag (s)</th>
            <th>Version</th>
          </tr>
        </thead>
        <tbody>
          {data.projections.map((p) => (
            <tr key={p.name} data-testid={`projection-${p.name}`}>
              <td>
                <a href={`#/projections/${p.name}`}>{p.name}</a>
              </td>
              <td>
                <Status value={p.status} />
              </td>
              <td>{p.checkpoint}</td>
              <td>{num(p.lagEvents)}</td>
              <td>{num(p.lagSeconds, 1)}</td>
              <td>
                {p.version}
                {p.definedVersion !== p.version ? ` (defined ${p.definedVersion})` : ''}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Projection({ name }: { name: string }) {
  const { data, error, reload } = useData(
    () => get<ProjectionInfo & { operatorLog: Record<string, unknown>[] }>(`/admin/projections/${name}`),
    [name],
    2000,
  );
  const [jobId, setJobId] = useState<string | undefined>(undefined);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what={name} />;
  return (
    <>
      <p>
        <a href="#/projections">← Projections</a>
      </p>
      <h1>
        {name} <Status value={data.status} />
      </h1>
      <ErrorBox error={error} />
      <dl class="facts">
        <dt>Position</dt>
        <dd data-testid="checkpoint">{data.checkpoint}</dd>
        <dt>Lag</dt>
        <dd>
          {num(data.lagEvents)} events, {num(data.lagSeconds, 1)} s
        </dd>
        <dt>Version</dt>
        <dd data-testid="version">{data.version}</dd>
        <dt>Updated</dt>
        <dd>{time(data.updatedAt)}</dd>
      </dl>
      {data.parked ? <Parked name={name} parked={data.parked} onDone={reload} /> : null}
      <Section title="Rebuild">
        <p class="muted">
          Builds into new tables from the event store while queries keep answering, then swaps them in.
        </p>
        <Action
          label="Start rebuild"
          testid="rebuild"
          run={() => api<{ jobId: string }>('POST', `/admin/projections/${name}/rebuild`)}
          done={(r) => setJobId((r as { jobId: string }).jobId)}
        />
        {jobId ? <RebuildProgress jobId={jobId} onDone={reload} /> : null}
      </Section>
      <Section title="Operator log">
        {data.operatorLog.length === 0 ? (
          <p class="muted">No operator action yet.</p>
        ) : (
          <table data-testid="operator-log">
            <thead>
              <tr>
                <th>When</th>
                <th>Action</th>
                <th>By</th>
                <th>Detail</th>
              </tr>
            </thead>
            <tbody>
              {data.operatorLog.map((l, i) => {
                const { at, action, actor, ...rest } = l as { at?: string; action?: string; actor?: string };
                return (
                  <tr key={i}>
                    <td>{time(at ?? null)}</td>
                    <td>{String(action ?? '')}</td>
                    <td>{String(actor ?? '')}</td>
                    <td class="detail">{JSON.stringify(rest)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </Section>
    </>
  );
}

function Parked({
  name,
  parked,
  onDone,
}: {
  name: string;
  parked: NonNullable<ProjectionInfo['parked']>;
  onDone: () => void;
}) {
  const { data: event, error } = useData(
    async () => (parked.eventId ? get<{ event: unknown }>(`/admin/events/${parked.eventId}`) : undefined),
    [parked.eventId],
  );
  return (
    <Section title="Parked event">
      <div data-testid="parked">
        <dl class="facts">
          <dt>Position</dt>
          <dd>{parked.position}</dd>
          <dt>Event</dt>
          <dd>{parked.eventId ? <a href={`#/events/${parked.eventId}`}>{parked.eventType}</a> : parked.eventType}</dd>
          <dt>Attempts</dt>
          <dd>{parked.attempts}</dd>
          <dt>Error</dt>
          <dd class="error-text" data-testid="parked-error">
            {parked.error}
          </dd>
        </dl>
        {event ? <Json value={event.event} /> : isNotFound(error) ? null : <ErrorBox error={error} />}
        <Action
          label="Retry"
          testid="retry"
          run={() => api('POST', `/admin/projections/${name}/retry`)}
          done={onDone}
        />{' '}
        <Action
          label="Skip"
          kind="danger"
          testid="skip"
          run={() =>
            confirm(`Skip the event at ${parked.position} without applying it?`)
              ? api('POST', `/admin/projections/${name}/skip`)
              : Promise.resolve()
          }
          done={onDone}
        />
      </div>
    </Section>
  );
}

function RebuildProgress({ jobId, onDone }: { jobId: string; onDone: () => void }) {
  const { data, error } = useData(() => get<Job>(`/admin/jobs/${jobId}`), [jobId], 500);
  const finished = data?.state === 'completed' || data?.state === 'failed';
  useEffect(() => {
    if (finished) onDone();
  }, [finished]);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="the rebuild" />;
  const p = typeof data.progress === 'number' ? { percent: data.progress } : data.progress;
  const percent = data.state === 'completed' ? 100 : (p.percent ?? 0);
  return (
    <div class="rebuild" data-testid="rebuild-progress" data-state={data.state}>
      <progress max={100} value={percent} aria-label="rebuild progress" />{' '}
      <span data-testid="rebuild-percent">{percent}%</span> · job {data.id} · {data.state}
      {p.total !== undefined ? ` · ${p.processed ?? 0} of ${p.total} events` : ''}
      {data.state === 'completed' && data.result ? (
        <p class="ok" data-testid="rebuild-swapped">
          Swapped in: caught up at position {data.result.position} ({data.result.events} events).
        </p>
      ) : null}
      {data.failedReason ? <p class="error">{data.failedReason}</p> : null}
    </div>
  );
}
