import { useState } from 'preact/hooks';
import { api, get } from '../api';
import { Action, ErrorBox, Loading, Section, Status, time, useData } from '../ui';
import { DeviceTable } from './devices';

interface User {
  userId: string;
  email: string;
  name: string;
  roles: string[];
  status: string;
  registeredAt: string;
}

export function Users({ id }: { id: string | undefined }) {
  if (id) return <UserPage id={id} />;
  return <UserSearch />;
}

function UserSearch() {
  const [q, setQ] = useState('');
  const [query, setQuery] = useState('');
  const { data, error } = useData(
    () => get<{ items: User[] }>(`/admin/users?limit=100${query ? `&q=${encodeURIComponent(query)}` : ''}`),
    [query],
  );
  return (
    <>
      <h1>Users</h1>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          setQuery(q.trim());
        }}
      >
        <label>
          Email or name contains
          <input value={q} onInput={(e) => setQ(e.currentTarget.value)} data-testid="user-search" />
        </label>
        <button type="submit">Search</button>
      </form>
      <ErrorBox error={error} />
      {!data ? (
        <Loading what="users" />
      ) : (
        <table data-testid="users">
          <thead>
            <tr>
              <th>Email</th>
              <th>Name</th>
              <th>Roles</th>
              <th>Status</th>
              <th>Registered</th>
            </tr>
          </thead>
          <tbody>
            {data.items.map((u) => (
              <tr key={u.userId}>
                <td>
                  <a href={`#/users/${u.userId}`}>{u.email}</a>
                </td>
                <td>{u.name}</td>
                <td>{u.roles.join(', ')}</td>
                <td>
                  <Status value={u.status} />
                </td>
                <td>{time(u.registeredAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function UserPage({ id }: { id: string }) {
  const { data, error, reload } = useData(() => get<User>(`/admin/users/${id}`), [id]);
  const devices = useData(() => get<{ items: [] }>(`/devices?ownerId=${id}&limit=200`), [id]);
  const [role, setRole] = useState('');
  if (!data) return error ? <ErrorBox error={error} /> : <Loading what="the user" />;
  return (
    <>
      <p>
        <a href="#/users">← Users</a>
      </p>
      <h1>
        {data.name} <Status value={data.status} />
      </h1>
      <dl class="facts">
        <dt>Email</dt>
        <dd>{data.email}</dd>
        <dt>Id</dt>
        <dd class="mono">{data.userId}</dd>
        <dt>Registered</dt>
        <dd>{time(data.registeredAt)}</dd>
      </dl>
      <Section title="Roles">
        <ul>
          {data.roles.map((r) => (
            <li key={r}>
              {r}{' '}
              <Action
                label={`Revoke ${r}`}
                kind="danger"
                run={() => api('DELETE', `/admin/users/${id}/roles/${encodeURIComponent(r)}`)}
                done={reload}
              />
            </li>
          ))}
        </ul>
        <form class="inline" onSubmit={(e) => e.preventDefault()}>
          <label>
            Role
            <input value={role} onInput={(e) => setRole(e.currentTarget.value)} maxLength={32} />
          </label>
          <Action
            label="Assign role"
            run={() => api('POST', `/admin/users/${id}/roles`, { role: role.trim() })}
            done={() => (setRole(''), reload())}
          />
        </form>
      </Section>
      {data.status === 'active' ? (
        <Section title="Disable">
          <p class="muted">Ends the user's sessions and live streams at once.</p>
          <Action
            label="Disable user"
            kind="danger"
            testid="disable-user"
            run={() =>
              confirm(`Disable ${data.email}?`) ? api('POST', `/admin/users/${id}/disable`) : Promise.resolve()
            }
            done={reload}
          />
        </Section>
      ) : null}
      <Section title="Devices">
        <ErrorBox error={devices.error} />
        {devices.data ? <DeviceTable devices={devices.data.items} /> : null}
      </Section>
    </>
  );
}
