/**
 * The new-key e-mail (spec §3.3): creating a sub-account sends its key to its Email through the
 * SMTP server configured with EMAIL_*. A local smtp-server on 127.0.0.1 stands in for the relay.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';

interface Mail {
  from: string;
  to: string[];
  raw: string;
}

let mock: MockUpstream;
let gw: TestGateway;
let smtp: SMTPServer;
const mails: Mail[] = [];

beforeAll(async () => {
  smtp = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const from = session.envelope.mailFrom;
        mails.push({
          from: from === false ? '' : from.address,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  const { port } = smtp.server.address() as AddressInfo;
  mock = await startMockUpstream();
  gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    EMAIL_SMTP: '127.0.0.1',
    EMAIL_PORT: String(port),
    EMAIL_TLS: 'false',
    EMAIL_SENDER: 'noreply@example.com',
    XAI_SERVICE: 'gateway.example.com',
  });
});

afterAll(async () => {
  await gw.stop();
  removeDir(gw.dataDir);
  await mock.close();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

/** Undoes quoted-printable soft line breaks so a long line can be searched. */
function unfold(raw: string): string {
  return raw.replace(/=\r?\n/g, '');
}

/** The text of a single-part mail as its reader sees it (quoted-printable or base64, UTF-8). */
function bodyText(raw: string): string {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split);
  const body = raw.slice(split + 4);
  expect(head).toMatch(/^Content-Type: text\/plain; charset=utf-8/im);
  const encoding = /^Content-Transfer-Encoding: (\S+)/im.exec(head)?.[1]?.toLowerCase();
  if (encoding === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (encoding === 'quoted-printable') {
    const bytes = unfold(body).replace(/=([0-9A-F]{2})/g, (_, hex: string) => `%${hex}`);
    return decodeURIComponent(bytes.replace(/%(?![0-9A-F]{2})/g, '%25'));
  }
  return body;
}

describe('new-key e-mail', () => {
  it('sends the new key to the child’s Email, once, from EMAIL_SENDER', async () => {
    const res = await call(gw, '/x-users', {
      body: { Name: 'mailkid', Email: 'mailkid@example.com', CreditGranted: 25 },
    });
    expect(res.status).toBe(200);
    const key = ((await res.json()) as { User: { SecretKey: string } }).User.SecretKey;
    const mail = await waitFor(() => mails.find((m) => m.to.includes('mailkid@example.com')));
    expect(mail.from).toBe('noreply@example.com');
    const text = unfold(mail.raw);
    expect(text).toContain(key);
    expect(text).toContain('gateway.example.com');
    expect(text).toMatch(/^Subject: .*API key/im);
    // Nothing else went out, and the key never reached the logs.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(mails.filter((m) => unfold(m.raw).includes(key))).toHaveLength(1);
    expect(gw.logs.join('\n')).not.toContain(key);
  });

  it('greets an account named in another script by its name (测试账号), in UTF-8', async () => {
    const res = await call(gw, '/x-users', {
      body: { Name: '测试账号', Email: 'ceshi@example.com', CreditGranted: 25 },
    });
    expect(res.status).toBe(200);
    const key = ((await res.json()) as { User: { SecretKey: string } }).User.SecretKey;
    const mail = await waitFor(() => mails.find((m) => m.to.includes('ceshi@example.com')));
    const text = bodyText(mail.raw);
    expect(text).toContain('Hello 测试账号,');
    expect(text).toContain(key);
  });

  it('a refused creation sends nothing', async () => {
    const count = mails.length;
    const res = await call(gw, '/x-users', {
      body: { Name: 'mailkid', Email: 'other@example.com', CreditGranted: 25 },
    });
    expect(res.status).toBe(409);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(mails.length).toBe(count);
  });
});
