import { useRef } from 'preact/hooks';
import { get } from '../api';
import { ErrorBox, Loading, Section, Status, num, useData } from '../ui';

interface Health {
  status: string;
  components: Record<string, { status: string; [k: string]: unknown }>;
}
interface ProjectionRow {
  name: string;
  status: string;
  lagEvents: number | null;
  lagSeconds: number;
}

/** Prometheus text: the sum of every series of one metric (all label sets). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

interface Sample {
  at: number;
  appended: number;
  sagaSteps: number;
  sagaFailures: number;
}

/** Health of each component, events per second, projection lag, saga throughput and failures: refreshed every 2 s. */
export function Overview() {
  const previous = useRef<Sample | undefined>(undefined);
  const { data, error } = useData(
    async () => {
      const [healthRes, metrics, projections] = await Promise.all([
        fetch('/health').then((r) => r.json() as Promise<Health>),
        get<string>('/metrics'),
        get<{ projections: ProjectionRow[] }>('/admin/projections'),
      ]);
      const head = Number(healthRes.components.eventStore?.headPosition ?? 0);
      const now: Sample = {
        at: performance.now(),
        appended: metricSum(metrics, 'es_events_appended_total'),
        sagaSteps: metricSum(metrics, 'saga_steps_total'),
        sagaFailures: metricSum(metrics, 'saga_failures_total'),
      };
      const before = previous.current;
      previous.current = now;
      const secs = before ? (now.at - before.at) / 1000 : 0;
      const rate = (a: number, b: number | undefined) =>
        before && secs > 0 && b !== undefined ? (a - b) / secs : null;
      return {
        health: healthRes,
        projections: projections.projections,
        head,
        // Positions are sparse (transaction-based), so the rate comes from the append counter, not the head.
        eventsPerSecond: rate(now.appended, before?.appended),
        sagaStepsPerSecond: rate(now.sagaSteps, before?.sagaSteps),
        sagaFailures: now.sagaFailures,
        sagaSteps: now.sagaSteps,
      };
    },
    [],
    2000,
  );
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="the overview" />;
  const maxLag = Math.max(0, ...data.projections.map((p) => p.lagSeconds));
  return (
    <>
      <h1>Overview</h1>
      <ErrorBox error={error} />
      <div class="tiles">
        <div class="tile" data-testid="overall">
          <span>Platform</span>
          <Status value={data.health.status} />
        </div>
        <div class="tile">
          <span>Events/s appended here</span>
          <b data-testid="events-per-second">{num(data.eventsPerSecond, 1)}</b>
          <small>head {data.head}</small>
        </div>
        <div class="tile">
          <span>Max projection lag</span>
          <b>{num(maxLag, 1)} s</b>
        </div>
        <div class="tile">
          <span>Saga steps/s</span>
          <b>{num(data.sagaStepsPerSecond, 1)}</b>
          <small>{data.sagaSteps} in all</small>
        </div>
        <div class="tile">
          <span>Saga failures</span>
          <b data-testid="saga-failures">{data.sagaFailures}</b>
        </div>
      </div>
      <Section title="Components">
        <table>
          <thead>
            <tr>
              <th>Component</th>
              <th>Status</th>
              <th>Detail</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(data.health.components).map(([name, c]) => {
              const { status, ...detail } = c;
              return (
                <tr key={name} data-testid={`component-${name}`}>
                  <td>{name}</td>
                  <td>
                    <Status value={status} />
                  </td>
                  <td class="detail">
                    {Object.entries(detail)
                      .map(([k, v]) => `${k}: ${typeof v === 'number' ? Math.round(v * 100) / 100 : JSON.stringify(v)}`)
                      .join(' · ')}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </Section>
      <Section title="Projection lag">
        <table>
          <thead>
            <tr>
              <th>Projection</th>
              <th>Status</th>
              <th>Lag (events)</th>
              <th>Lag (s)</th>
            </tr>
          </thead>
          <tbody>
            {data.projections.map((p) => (
              <tr key={p.name}>
                <td>
                  <a href={`#/projections/${p.name}`}>{p.name}</a>
                </td>
                <td>
                  <Status value={p.status} />
                </td>
                <td>{num(p.lagEvents)}</td>
                <td>{num(p.lagSeconds, 1)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}
