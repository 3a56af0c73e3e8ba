import { ConfigError, loadConfig } from '../../src/config';

describe('configuration', () => {
  it('defaults to embedded services on port 3000 with data under .data', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ PORT: 3000, DATA_DIR: '.data', RUN_PROJECTIONS: true });
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.REDIS_URL).toBeUndefined();
  });

  it('KURRENTDB_URL: unset by default (PostgreSQL store); kurrentdb/esdb schemes only, naming the variable', () => {
    const c = loadConfig({});
    expect(c.KURRENTDB_URL).toBeUndefined();
    expect(c.KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM).toBe(false);
    for (const ok of ['kurrentdb://127.0.0.1:2113?tls=false', 'esdb+discover://a:2113', 'kurrentdb+discover://h'])
      expect(loadConfig({ KURRENTDB_URL: ok }).KURRENTDB_URL).toBe(ok);
    for (const bad of ['postgres://h:5432/db', 'http://h:2113', 'kurrentdb://', 'h:2113']) {
      expect(() => loadConfig({ KURRENTDB_URL: bad })).toThrow(
        /KURRENTDB_URL: must start with kurrentdb:\/\/, kurrentdb\+discover:\/\/, esdb:\/\/ or esdb\+discover:\/\//,
      );
    }
    expect(
      loadConfig({ KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM: 'true' }).KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM,
    ).toBe(true);
    expect(() => loadConfig({ KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM: 'yes' })).toThrow(
      /KURRENTDB_ALLOW_NON_ATOMIC_MULTI_STREAM/,
    );
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).PORT).toBe(3000);
  });

  it('names every bad variable and its rule', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: '70000', REDIS_URL: 'http://x', JWT_HS256_SECRET: 'short', RUN_PROJECTIONS: 'yes' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    for (const v of ['PORT', 'REDIS_URL', 'JWT_HS256_SECRET', 'RUN_PROJECTIONS']) expect(msg).toContain(v);
    expect(msg).toContain('must start with redis://');
    expect(msg).toContain('at least 32 bytes');
  });

  it('TRUST_PROXY: false by default; true, a hop count, or proxy addresses/CIDRs; anything else names the variable', () => {
    expect(loadConfig({}).TRUST_PROXY).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'false' }).TRUST_PROXY).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'TRUE' }).TRUST_PROXY).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '2' }).TRUST_PROXY).toBe(2);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.7,fd00::/8, loopback' }).TRUST_PROXY).toEqual([
      '10.0.0.0/8',
      '192.168.1.7',
      'fd00::/8',
      'loopback',
    ]);
    for (const bad of ['yes', '0', '10.0.0.0/33', 'proxy.internal', ',', '::1/129', '10.0.0.1/8/8']) {
      expect(() => loadConfig({ TRUST_PROXY: bad })).toThrow(/TRUST_PROXY: must be false, true, a hop count/);
    }
  });

  it('identity limits have safe defaults', () => {
    expect(loadConfig({})).toMatchObject({
      LOGIN_MAX_PER_ACCOUNT_ADDRESS: 10,
      LOGIN_MAX_PER_ADDRESS: 50,
      LOGIN_MAX_PER_ACCOUNT: 100,
      LOGIN_KNOWN_ADDRESS_TTL_S: 2_592_000,
      SIGNUP_MAX_PER_ADDRESS: 20,
      SIGNUP_WINDOW_S: 3600,
      ARGON2_SIGNUP_MAX_QUEUE: 50,
      AUTH_BODY_LIMIT_BYTES: 16_384,
      DEVICES_MAX_PER_USER: 100,
    });
  });

  it('auth without a round trip: the revocation mirror’s staleness bound and the login hashing queue, bounded and named when bad', () => {
    expect(loadConfig({})).toMatchObject({ REVOCATION_MAX_STALENESS_MS: 1000, ARGON2_MAX_QUEUE: 100 });
    expect(loadConfig({ REVOCATION_MAX_STALENESS_MS: '250', ARGON2_MAX_QUEUE: '8' })).toMatchObject({
      REVOCATION_MAX_STALENESS_MS: 250,
      ARGON2_MAX_QUEUE: 8,
    });
    for (const bad of ['0', '10', '60001', 'soon', '1.5'])
      expect(() => loadConfig({ REVOCATION_MAX_STALENESS_MS: bad })).toThrow(/REVOCATION_MAX_STALENESS_MS: /);
    for (const bad of ['0', '-1', '10001', 'many'])
      expect(() => loadConfig({ ARGON2_MAX_QUEUE: bad })).toThrow(/ARGON2_MAX_QUEUE: /);
  });
});
