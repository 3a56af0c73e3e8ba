import { useEffect, useState } from 'preact/hooks';
import { get, subscribe, type Me } from '../api';
import { TimeChart, type Point } from '../chart';
import { ErrorBox, Loading, Section, Status, isNotFound, time, useData } from '../ui';

interface Device {
  deviceId: string;
  ownerId: string;
  name: string;
  status: string;
  registeredAt: string;
}
interface Metric {
  metric: string;
  value: number;
  ts: string;
}
interface DeadLetter {
  id: number;
  topic: string;
  payload: string;
  payloadSize: number;
  truncated: boolean;
  code: string;
  reason: string;
  receivedAt: string;
}

export function Devices({ id, me }: { id: string | undefined; me: Me }) {
  if (id) return <DevicePage id={id} me={me} />;
  return <DeviceList />;
}

function DeviceList() {
  const { data, error } = useData(() => get<{ items: Device[] }>('/devices?limit=200'), [], 5000);
  return (
    <>
      <h1>Devices</h1>
      <ErrorBox error={error} />
      {!data ? <Loading what="devices" /> : <DeviceTable devices={data.items} />}
    </>
  );
}

export function DeviceTable({ devices }: { devices: Device[] }) {
  if (devices.length === 0) return <p class="muted">No devices.</p>;
  return (
    <table data-testid="devices">
      <thead>
        <tr>
          <th>Name</th>
          <th>Device id</th>
          <th>Status</th>
          <th>Registered</th>
        </tr>
      </thead>
      <tbody>
        {devices.map((d) => (
          <tr key={d.deviceId}>
            <td>
              <a href={`#/devices/${d.deviceId}`}>{d.name}</a>
            </td>
            <td class="mono">{d.deviceId}</td>
            <td>
              <Status value={d.status} />
            </td>
            <td>{time(d.registeredAt)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function DevicePage({ id, me }: { id: string; me: Me }) {
  const { data, error } = useData(() => get<{ metrics: Metric[] }>(`/devices/${id}/metrics`), [id], 3000);
  const [metric, setMetric] = useState<string | undefined>(undefined);
  const chosen = metric ?? data?.metrics[0]?.metric;
  if (!data) {
    if (!error) return <Loading what="the device" />;
    return (
      <>
        <h1>Device {id}</h1>
        <p class="error" role="alert" data-testid="no-access">
          {isNotFound(error) || (error as { status?: number }).status === 403
            ? 'This device does not exist, or it is not yours.'
            : ''}
        </p>
        <ErrorBox error={error} />
      </>
    );
  }
  return (
    <>
      <p>
        <a href="#/devices">← Devices</a>
      </p>
      <h1>Device {id}</h1>
      <ErrorBox error={error} />
      <Section title="Latest values">
        {data.metrics.length === 0 ? (
          <p class="muted" data-testid="no-metrics">
            No readings yet.
          </p>
        ) : (
          <table data-testid="latest">
            <thead>
              <tr>
                <th>Metric</th>
                <th>Value</th>
                <th>At</th>
              </tr>
            </thead>
            <tbody>
              {data.metrics.map((m) => (
                <tr key={m.metric} data-metric={m.metric}>
                  <td>
                    <button type="button" class="link" onClick={() => setMetric(m.metric)}>
                      {m.metric}
                    </button>
                  </td>
                  <td class="value">{m.value}</td>
                  <td>{time(m.ts)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      {chosen ? <Live device={id} metric={chosen} key={`live-${chosen}`} /> : null}
      {chosen ? <History device={id} metric={chosen} key={`history-${chosen}`} /> : null}
      {me.roles.includes('admin') ? <DeadLetters device={id} /> : null}
    </>
  );
}

/** The last hour, then every reading as it arrives over the live stream (SSE). */
function Live({ device, metric }: { device: string; metric: string }) {
  const [points, setPoints] = useState<Point[]>([]);
  const [state, setState] = useState('connecting');
  useEffect(() => {
    const abort = new AbortController();
    const base = `/devices/${device}/metrics/${metric}`;
    void (async () => {
      try {
        const now = Date.now();
        const r = await get<{ points: { ts: string; value: number }[] }>(
          `${base}?from=${now - 3_600_000}&to=${now + 60_000}&limit=1000`,
        );
        if (abort.signal.aborted) return;
        setPoints(r.points.map((p) => ({ x: Date.parse(p.ts) / 1000, y: p.value })));
      } catch {
        /* the stream below still shows what arrives */
      }
      subscribe(
        `${base}/stream`,
        (event, data) => {
          if (event !== 'reading') return;
          const r = JSON.parse(data) as { value: number; ts: string };
          const x = Date.parse(r.ts) / 1000;
          setPoints((ps) => {
            if (ps.some((p) => p.x === x && p.y === r.value)) return ps;
            return [...ps, { x, y: r.value }].sort((a, b) => a.x - b.x).slice(-2000);
          });
        },
        abort.signal,
        (s, detail) => setState(detail ? `${s}: ${detail}` : s),
      );
    })();
    return () => abort.abort();
  }, [device, metric]);
  return (
    <Section title={`Live: ${metric}`}>
      <p class="muted">
        Stream <span data-testid="stream-state">{state}</span>
      </p>
      <TimeChart points={points} label={metric} testid="live-chart" />
    </Section>
  );
}

const BUCKETS = ['raw', '1m', '5m', '1h', '1d'] as const;
const AGGS = ['avg', 'min', 'max', 'count', 'sum'] as const;
const localInput = (d: Date) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);

function History({ device, metric }: { device: string; metric: string }) {
  const [bucket, setBucket] = useState<(typeof BUCKETS)[number]>('5m');
  const [agg, setAgg] = useState<(typeof AGGS)[number]>('avg');
  const [from, setFrom] = useState(() => localInput(new Date(Date.now() - 86_400_000)));
  const [to, setTo] = useState(() => localInput(new Date(Date.now() + 3_600_000)));
  const { data, error } = useData(() => {
    const q = new URLSearchParams({
      from: String(new Date(from).getTime()),
      to: String(new Date(to).getTime()),
      limit: '5000',
    });
    if (bucket !== 'raw') {
      q.set('bucket', bucket);
      q.set('agg', agg);
    }
    return get<{ points: { ts?: string; bucket?: string; value: number }[] }>(
      `/devices/${device}/metrics/${metric}?${q.toString()}`,
    );
  }, [device, metric, bucket, agg, from, to]);
  const points: Point[] = (data?.points ?? []).map((p) => ({
    x: Date.parse((p.ts ?? p.bucket)!) / 1000,
    y: p.value,
  }));
  return (
    <Section title={`History: ${metric}`}>
      <form class="inline" onSubmit={(e) => e.preventDefault()}>
        <label>
          Bucket
          <select value={bucket} onChange={(e) => setBucket(e.currentTarget.value as typeof bucket)}>
            {BUCKETS.map((b) => (
              <option key={b} value={b}>
                {b}
              </option>
            ))}
          </select>
        </label>
        <label>
          Aggregate
          <select value={agg} disabled={bucket === 'raw'} onChange={(e) => setAgg(e.currentTarget.value as typeof agg)}>
            {AGGS.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label>
          From
          <input type="datetime-local" value={from} onChange={(e) => setFrom(e.currentTarget.value)} />
        </label>
        <label>
          To
          <input type="datetime-local" value={to} onChange={(e) => setTo(e.currentTarget.value)} />
        </label>
      </form>
      <ErrorBox error={error} />
      <TimeChart
        points={points}
        label={`${metric} ${bucket === 'raw' ? 'raw' : `${agg} per ${bucket}`}`}
        testid="history-chart"
        range={[new Date(from).getTime() / 1000, new Date(to).getTime() / 1000]}
      />
    </Section>
  );
}

function DeadLetters({ device }: { device: string }) {
  const { data, error } = useData(
    () => get<{ items: DeadLetter[] }>(`/admin/dead-letters?deviceId=${device}&limit=50`),
    [device],
    5000,
  );
  return (
    <Section title="Dead letters">
      <ErrorBox error={error} />
      {!data ? null : data.items.length === 0 ? (
        <p class="muted">None.</p>
      ) : (
        <table data-testid="dead-letters">
          <thead>
            <tr>
              <th>Received</th>
              <th>Topic</th>
              <th>Code</th>
              <th>Reason</th>
              <th>Payload</th>
            </tr>
          </thead>
          <tbody>
            {data.items.map((d) => (
              <tr key={d.id}>
                <td>{time(d.receivedAt)}</td>
                <td class="mono">{d.topic}</td>
                <td>{d.code}</td>
                <td>{d.reason}</td>
                <td class="mono">
                  {d.payload.slice(0, 200)}
                  {d.truncated || d.payload.length > 200 ? '…' : ''}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}
