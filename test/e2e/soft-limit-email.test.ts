// End-to-end: crossing the monthly SoftLimit sends one notice per month to BillingEmail.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SMTPServer } from 'smtp-server';
import type { AddressInfo } from 'node:net';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { createChild, updateChild } from '../support/accounts.js';

interface Mail {
  to: string[];
  data: string;
}
const mails: Mail[] = [];
let smtp: SMTPServer;
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  smtp = new SMTPServer({
    authOptional: true,
    secure: false,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, cb) {
      let data = '';
      stream.on('data', (c: Buffer) => (data += c.toString()));
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), data });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  const port = (smtp.server.address() as AddressInfo).port;
  mock = await startMockUpstream();
  gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: 'sk-upstream-email-0000000000000001',
    EMAIL_SMTP: '127.0.0.1',
    EMAIL_PORT: String(port),
    EMAIL_TLS: 'false',
    EMAIL_SENDER: 'noreply@example.com',
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.close();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

it('sends the soft-limit notice to BillingEmail once per month', async () => {
  const key = await createChild(gw, 'spender', 20);
  expect(
    (await updateChild(gw, 'spender', { SoftLimit: 0.000001, BillingEmail: 'billing@example.com' })).status,
  ).toBe(200);
  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hello' }] };
  await gw.client(key).chat.completions.create(chat);
  const notice = await waitFor(() => mails.find((m) => m.to.includes('billing@example.com')), 5000);
  expect(notice.data).toMatch(/soft limit/i);
  await gw.client(key).chat.completions.create(chat);
  await gw.client(key).chat.completions.create(chat);
  await new Promise((r) => setTimeout(r, 300));
  expect(mails.filter((m) => m.to.includes('billing@example.com'))).toHaveLength(1);
  // The month of the notice is persisted, so a restart does not send it again.
  gw = await gw.restart();
  await gw.client(key).chat.completions.create(chat);
  await new Promise((r) => setTimeout(r, 300));
  expect(mails.filter((m) => m.to.includes('billing@example.com'))).toHaveLength(1);
});
