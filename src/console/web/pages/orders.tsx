import { useState } from 'preact/hooks';
import { api, get, type Me } from '../api';
import { Action, ErrorBox, Json, Loading, Section, Status, isNotFound, time, useData } from '../ui';

interface OrderSummary {
  orderId: string;
  customerId: string;
  status: string;
  totals: { currency: string; total: string; quantity: number };
  reason: string | null;
  placedAt: string;
  updatedAt: string;
}
interface Order extends OrderSummary {
  payment: string;
  items: { sku: string; name: string; quantity: number; lineTotal: string }[];
  timeline: { at: string; step: string; compensation: boolean; reason: string | null; detail: unknown }[];
}

/** A parked saga as GET /admin/sagas?state=parked lists it (the order id is its key). */
interface ParkedSaga {
  key: string;
  status?: string;
  eventId?: string;
  eventType?: string;
  error?: string;
  attempts?: number;
  heldEvents?: number;
  parkedAt?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function Orders({ id, me }: { id: string | undefined; me: Me }) {
  if (id) return <OrderPage id={id} me={me} />;
  return <OrderSearch me={me} />;
}

function OrderSearch({ me }: { me: Me }) {
  const admin = me.roles.includes('admin');
  const [query, setQuery] = useState('');
  const [customer, setCustomer] = useState<string | undefined>(undefined);
  const [status, setStatus] = useState('');
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const { data, error } = useData(() => {
    const q = new URLSearchParams({ limit: '100' });
    if (customer) q.set('customerId', customer);
    if (status) q.set('status', status);
    return get<{ items: OrderSummary[] }>(`/orders?${q.toString()}`);
  }, [customer, status]);
  return (
    <>
      <h1>Orders{admin ? ' and sagas' : ''}</h1>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          const v = query.trim();
          setNotice(undefined);
          if (!v) return setCustomer(undefined);
          if (!UUID.test(v)) return setNotice('Enter an order id or a customer id (a UUID).');
          // An order id opens the order; otherwise it is taken as a customer id.
          get(`/orders/${v}`)
            .then(() => (location.hash = `#/orders/${v}`))
            .catch((err: unknown) => {
              if (isNotFound(err) && admin) setCustomer(v);
              else setNotice(isNotFound(err) ? `No order ${v}.` : String(err));
            });
        }}
      >
        <label>
          Order or customer id
          <input
            data-testid="order-search"
            value={query}
            onInput={(e) => setQuery(e.currentTarget.value)}
            placeholder="uuid"
          />
        </label>
        <button type="submit">Search</button>
        <label>
          Status
          <select value={status} onChange={(e) => setStatus(e.currentTarget.value)} data-testid="order-status">
            <option value="">any</option>
            {['placed', 'reserved', 'paid', 'confirmed', 'shipped', 'rejected', 'cancelled'].map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
      </form>
      {notice ? <p class="notice">{notice}</p> : null}
      {customer ? <p>Orders of customer {customer}</p> : null}
      <ErrorBox error={error} />
      {!data ? (
        <Loading what="orders" />
      ) : data.items.length === 0 ? (
        <p class="muted">No orders.</p>
      ) : (
        <table data-testid="orders">
          <thead>
            <tr>
              <th>Order</th>
              <th>Status</th>
              <th>Total</th>
              <th>Customer</th>
              <th>Placed</th>
              <th>Reason</th>
            </tr>
          </thead>
          <tbody>
            {data.items.map((o) => (
              <tr key={o.orderId} data-status={o.status}>
                <td class="mono">
                  <a href={`#/orders/${o.orderId}`}>{o.orderId}</a>
                </td>
                <td>
                  <Status value={o.status} />
                </td>
                <td>
                  {o.totals.total} {o.totals.currency}
                </td>
                <td class="mono">{o.customerId}</td>
                <td>{time(o.placedAt)}</td>
                <td>{o.reason ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {admin ? <ParkedSagas /> : null}
    </>
  );
}

/** Parked sagas, where the API offers them (GET /admin/sagas?state=parked); "not available" otherwise. */
function ParkedSagas() {
  const { data, error, reload } = useData(
    () => get<{ items?: ParkedSaga[] }>('/admin/sagas?state=parked&limit=100'),
    [],
    5000,
  );
  return (
    <Section title="Parked sagas">
      {isNotFound(error) ? (
        <p class="muted" data-testid="parked-sagas-unavailable">
          Not available: this server has no parked-saga listing.
        </p>
      ) : (
        <ErrorBox error={error} />
      )}
      {data?.items && data.items.length === 0 ? <p class="muted">None.</p> : null}
      {data?.items?.length ? (
        <table data-testid="parked-sagas">
          <thead>
            <tr>
              <th>Order</th>
              <th>On event</th>
              <th>Error</th>
              <th>Attempts</th>
              <th>Held events</th>
              <th>Parked</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {data.items.map((s) => (
              <tr key={s.key}>
                <td class="mono">
                  <a href={`#/orders/${s.key}`}>{s.key}</a>
                </td>
                <td>{s.eventId ? <a href={`#/events/${s.eventId}`}>{s.eventType}</a> : s.eventType}</td>
                <td class="error-text">{s.error ?? ''}</td>
                <td>{s.attempts ?? ''}</td>
                <td>{s.heldEvents ?? ''}</td>
                <td>{time(s.parkedAt ?? null)}</td>
                <td>
                  <SagaActions orderId={s.key} onDone={reload} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Section>
  );
}

function SagaActions({ orderId, onDone }: { orderId: string; onDone: () => void }) {
  return (
    <>
      <Action label="Retry saga" run={() => api('POST', `/admin/sagas/${orderId}/retry`)} done={onDone} />{' '}
      <Action label="Skip" kind="danger" run={() => api('POST', `/admin/sagas/${orderId}/skip`)} done={onDone} />
    </>
  );
}

function OrderPage({ id, me }: { id: string; me: Me }) {
  const { data, error } = useData(() => get<Order>(`/orders/${id}`), [id], 3000);
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="the order" />;
  return (
    <>
      <p>
        <a href="#/orders">← Orders</a>
      </p>
      <h1>
        Order <span class="mono">{data.orderId}</span> <Status value={data.status} />
      </h1>
      <dl class="facts">
        <dt>Customer</dt>
        <dd class="mono">{data.customerId}</dd>
        <dt>Total</dt>
        <dd>
          {data.totals.total} {data.totals.currency} ({data.totals.quantity} items)
        </dd>
        <dt>Payment</dt>
        <dd>{data.payment}</dd>
        <dt>Reason</dt>
        <dd data-testid="order-reason">{data.reason ?? '—'}</dd>
      </dl>
      <Section title="Timeline">
        <ol class="timeline" data-testid="timeline">
          {data.timeline.map((t, i) => (
            <li key={i} class={t.compensation ? 'compensation' : 'step'} data-step={t.step}>
              <time>{time(t.at)}</time> <strong>{t.step}</strong>
              {t.compensation ? <span class="badge">compensation</span> : null}
              {t.reason ? <span class="reason"> — {t.reason}</span> : null}
            </li>
          ))}
        </ol>
      </Section>
      {me.roles.includes('admin') ? <Saga orderId={id} /> : null}
    </>
  );
}

function Saga({ orderId }: { orderId: string }) {
  const { data, error, reload } = useData(
    () =>
      get<{
        state: { status?: string } & Record<string, unknown>;
        processedEvents: { type?: string; recordedAt?: string; statusAfter?: string; commands?: unknown[] }[];
        parked?: ParkedSaga | null;
        operatorLog?: Record<string, unknown>[];
      }>(`/admin/sagas/${orderId}`),
    [orderId],
    3000,
  );
  return (
    <Section title="Saga">
      {isNotFound(error) ? (
        <p class="muted">No saga for this order (yet), or not available.</p>
      ) : (
        <ErrorBox error={error} />
      )}
      {data ? (
        <>
          <p>
            State: <Status value={String(data.state.status ?? 'unknown')} />
          </p>
          <table data-testid="saga-steps">
            <thead>
              <tr>
                <th>Handled event</th>
                <th>Status after</th>
                <th>Commands sent</th>
                <th>At</th>
              </tr>
            </thead>
            <tbody>
              {data.processedEvents.map((s, i) => (
                <tr key={i}>
                  <td>{s.type ?? ''}</td>
                  <td>{s.statusAfter ?? ''}</td>
                  <td class="detail">{JSON.stringify(s.commands ?? [])}</td>
                  <td>{time(s.recordedAt ?? null)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {data.parked ? (
            <div data-testid="saga-parked">
              <h3>Parked</h3>
              <p class="error-text">
                On {data.parked.eventType}: {data.parked.error}
              </p>
              <Json value={data.parked} />
              <SagaActions orderId={orderId} onDone={reload} />
            </div>
          ) : null}
          {data.operatorLog?.length ? (
            <>
              <h3>Operator log</h3>
              <Json value={data.operatorLog} />
            </>
          ) : null}
        </>
      ) : null}
    </Section>
  );
}
