import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({});
    expect(c.port).toBe(3443);
    expect(c.host).toBe('0.0.0.0');
    expect(c.upstreamOrigin).toBe('https://api.openai.com');
    expect(c.upstreamBasePath).toBe('');
    expect(c.dataDir).toBe('./data');
    expect(c.maxAttempts).toBe(3);
    expect(c.maxBodyBytes).toBe(32 * 1024 * 1024);
    expect(c.userMinBalance).toBe(2_000_000);
    expect(c.userApiMinBalance).toBe(20_000_000);
    expect(c.statsInterval).toBe(100);
    expect(c.heapGrowthPercent).toBe(50);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('accepts a bare host or a URL for OPENAI_API_BASE (cascading to another gateway)', () => {
    expect(loadConfig({ OPENAI_API_BASE: 'api.example.com' }).upstreamOrigin).toBe('https://api.example.com');
    const c = loadConfig({ OPENAI_API_BASE: 'http://127.0.0.1:3443/v1' });
    expect(c.upstreamOrigin).toBe('http://127.0.0.1:3443');
    expect(c.upstreamBasePath).toBe('');
    expect(loadConfig({ OPENAI_API_BASE: 'https://gw.example.com/openai' }).upstreamBasePath).toBe('/openai');
  });

  it('parses INIT_USERS and INIT_KEYS', () => {
    const key = 'sk-Xvs' + 'a'.repeat(45);
    const c = loadConfig({ INIT_USERS: `root:me@example.com:${key}`, INIT_KEYS: 'sk-1, sk-2,,sk-3' });
    expect(c.initUsers).toEqual({ name: 'root', email: 'me@example.com', key });
    expect(c.initKeys).toEqual(['sk-1', 'sk-2', 'sk-3']);
  });

  it('reports every problem at once', () => {
    try {
      loadConfig({
        PORT: 'abc',
        MAX_ATTEMPTS: '0',
        INIT_USERS: 'admin:x',
        MASTER_KEY: 'zz',
        LOG_LEVEL: 'loud',
        TZ: 'Mars/Base',
        DEFAULT_MODEL_PRICE: 'free',
        HEAP_GROWTH_PERCENT: '-5',
      });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems).toHaveLength(8);
      expect((err as Error).message).toContain('PORT');
      expect((err as Error).message).toContain('MASTER_KEY');
    }
  });
});
