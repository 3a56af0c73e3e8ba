import 'uplot/dist/uPlot.min.css';
import './console.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { signIn, signOut, whenSignedOut, type Me } from './api';
import { ErrorBox } from './ui';
import { Overview } from './pages/overview';
import { Projections } from './pages/projections';
import { Events } from './pages/events';
import { Devices } from './pages/devices';
import { Orders } from './pages/orders';
import { Users } from './pages/users';

/** Hash routes (#/devices/<id>): one static page serves them all, and a reload stays where it was. */
function useRoute(): string[] {
  const read = () => decodeURIComponent(location.hash.replace(/^#\/?/, '')).split('/').filter(Boolean);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function SignIn({ onIn, notice }: { onIn: (me: Me) => void; notice: string | undefined }) {
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  return (
    <main class="signin">
      <h1>Operator console</h1>
      {notice ? <p class="notice">{notice}</p> : null}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const f = new FormData(e.currentTarget);
          setBusy(true);
          setError(undefined);
          signIn(f.get('email') as string, f.get('password') as string)
            .then(onIn)
            .catch((err: unknown) => setError(err))
            .finally(() => setBusy(false));
        }}
      >
        <label>
          Email
          <input name="email" type="email" autocomplete="username" required autofocus />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

const ADMIN_PAGES = [
  ['overview', 'Overview'],
  ['projections', 'Projections'],
  ['events', 'Events'],
  ['devices', 'Devices'],
  ['orders', 'Orders & sagas'],
  ['users', 'Users'],
] as const;
const USER_PAGES = [
  ['devices', 'Devices'],
  ['orders', 'Orders'],
] as const;

function App() {
  const [me, setMe] = useState<Me | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const route = useRoute();
  useEffect(() => {
    whenSignedOut((reason) => {
      setMe(undefined);
      setNotice(reason);
    });
  }, []);
  if (!me) return <SignIn onIn={(m) => (setMe(m), setNotice(undefined))} notice={notice} />;
  const admin = me.roles.includes('admin');
  const pages = admin ? ADMIN_PAGES : USER_PAGES;
  const page = route[0] ?? pages[0][0];
  const rest = route.slice(1);
  let body;
  switch (page) {
    case 'overview':
      body = <Overview />;
      break;
    case 'projections':
      body = <Projections name={rest[0]} />;
      break;
    case 'events':
      body = <Events path={rest} />;
      break;
    case 'devices':
      body = <Devices id={rest[0]} me={me} />;
      break;
    case 'orders':
      body = <Orders id={rest[0]} me={me} />;
      break;
    case 'users':
      body = <Users id={rest[0]} />;
      break;
    default:
      body = <p>No page {page}.</p>;
  }
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header>
        <strong class="brand">Ops console</strong>
        <nav aria-label="Pages">
          {pages.map(([key, label]) => (
            <a key={key} href={`#/${key}`} aria-current={page === key ? 'page' : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span class="who" data-testid="who">
          {me.email} {admin ? '(admin)' : ''}
        </span>
        <button type="button" data-testid="sign-out" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1} data-page={page}>
        {body}
      </main>
    </>
  );
}

const root = document.getElementById('root')!;
root.textContent = ''; // the static "Loading…" line
render(<App />, root);
