import { defaultHttpMaxConnections, openFileLimit } from '../../src/platform/connection-limits';

describe('HTTP_MAX_CONNECTIONS default', () => {
  it('is what the open-file limit leaves after the MQTT connections and 512, at least 64', () => {
    expect(defaultHttpMaxConnections(1000, 20_000)).toBe(18_488);
    expect(defaultHttpMaxConnections(1000, 1024)).toBe(64);
    expect(defaultHttpMaxConnections(1000, undefined)).toBe(4096);
  });

  it('reads the limit of this process on Linux', () => {
    const limit = openFileLimit();
    expect(limit).toBeGreaterThan(0);
    expect(defaultHttpMaxConnections(1000, limit)).toBe(Math.max(64, limit! - 1512));
  });
});
