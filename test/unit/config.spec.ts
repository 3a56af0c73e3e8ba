import { ConfigError, loadConfig } from '../../src/config';

describe('configuration', () => {
  it('defaults to embedded services on port 3000 with data under .data', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ PORT: 3000, DATA_DIR: '.data', RUN_PROJECTIONS: true });
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.REDIS_URL).toBeUndefined();
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
});
