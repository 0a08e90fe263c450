/**
 * Secrets at rest. One 32-byte MASTER_KEY is split by HKDF into an AES-256-GCM key (upstream keys
 * are encrypted with a fresh 12-byte nonce per record) and an HMAC pepper (account keys and
 * upstream-key fingerprints are stored only as HMAC-SHA256, so a stolen database reveals nothing).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  randomInt,
  timingSafeEqual,
} from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Secrets {
  encrypt(plain: string): string;
  decrypt(sealed: string): string;
  /** Keyed fingerprint (hex) of a secret; the only form in which keys are looked up. */
  hash(secret: string): string;
  /** Constant-time equality of two fingerprints. */
  equal(a: string, b: string): boolean;
}

export function createSecrets(masterKey: Buffer): Secrets {
  if (masterKey.length !== 32) throw new Error('master key must be 32 bytes');
  const encKey = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'proxyxai/aes-256-gcm/v1', 32));
  const pepper = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'proxyxai/hmac-pepper/v1', 32));
  return {
    encrypt(plain) {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', encKey, nonce);
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return `v1.${Buffer.concat([nonce, cipher.getAuthTag(), body]).toString('base64')}`;
    },
    decrypt(sealed) {
      if (!sealed.startsWith('v1.')) throw new Error('unknown ciphertext version');
      const raw = Buffer.from(sealed.slice(3), 'base64');
      const decipher = createDecipheriv('aes-256-gcm', encKey, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    },
    hash(secret) {
      return createHmac('sha256', pepper).update(secret).digest('hex');
    },
    equal(a, b) {
      const ba = Buffer.from(a, 'hex');
      const bb = Buffer.from(b, 'hex');
      return ba.length === bb.length && timingSafeEqual(ba, bb);
    },
  };
}

export type MasterKeySource = { kind: 'env' } | { kind: 'file'; path: string; created: boolean };

/**
 * Uses MASTER_KEY when set; otherwise loads DATA_DIR/master.key, creating it (0600) on first start.
 * The caller logs a warning for the generated case: the key file must be backed up with the data.
 */
export function resolveMasterKey(
  hex: string | undefined,
  dataDir: string,
): { key: Buffer; source: MasterKeySource } {
  if (hex !== undefined) return { key: Buffer.from(hex, 'hex'), source: { kind: 'env' } };
  const path = join(dataDir, 'master.key');
  if (existsSync(path)) {
    const text = readFileSync(path, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/i.test(text)) throw new Error(`${path} does not hold 64 hexadecimal characters`);
    return { key: Buffer.from(text, 'hex'), source: { kind: 'file', path, created: false } };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  writeFileSync(path, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return { key, source: { kind: 'file', path, created: true } };
}

const ALPHANUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A new account key: `sk-Xvs` + 45 alphanumerics from a CSPRNG (51 characters). */
export function generateAccountKey(): string {
  let out = 'sk-Xvs';
  for (let i = 0; i < 45; i++) out += ALPHANUM[randomInt(ALPHANUM.length)];
  return out;
}
