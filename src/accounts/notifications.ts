/**
 * E-mail notices through nodemailer (when EMAIL_* is configured): the new key to a freshly created
 * account, and a once-a-month notice when monthly usage crosses SoftLimit. Sending never blocks or
 * fails a request: errors are logged.
 */
import type { Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import type { Mailer } from '../admin/users-deps.js';
import type { EmailConfig } from '../config/config.js';
import { microsToUsd } from '../billing/money.js';
import type { Account } from './account.js';

export function createMailer(cfg: EmailConfig): Mailer {
  // nodemailer is loaded with the first e-mail: a gateway that sends none keeps its memory.
  let transport: Promise<Transporter> | undefined;
  const connect = async (): Promise<Transporter> => {
    const { default: nodemailer } = await import('nodemailer');
    return nodemailer.createTransport({
      host: cfg.host,
      port: cfg.port,
      secure: cfg.tls,
      ...(cfg.user !== '' && { auth: { user: cfg.user, pass: cfg.pass } }),
    });
  };
  return {
    async send(to, subject, text) {
      transport ??= connect();
      await (await transport).sendMail({ from: cfg.sender, to, subject, text });
    },
  };
}

export function notifySoftLimit(
  mailer: Mailer | undefined,
  account: Account,
  service: string,
  log: Logger,
): void {
  if (mailer === undefined) return;
  const to = account.billingEmail ?? account.email;
  const text = [
    `Hello ${account.alias || account.name},`,
    '',
    `This month's usage of your account "${account.name}" has reached $${microsToUsd(account.month.cost).toFixed(2)},`,
    `above its soft limit of $${microsToUsd(account.softLimit).toFixed(2)} (hard limit $${microsToUsd(account.hardLimit).toFixed(2)}).`,
    'Calls stop when the hard limit is reached.',
    '',
    `— ${service}`,
  ].join('\n');
  mailer
    .send(to, `[${service}] Monthly usage above your soft limit`, text)
    .catch((err: unknown) =>
      log.warn({ err, accountId: account.id }, 'could not send the soft-limit notice'),
    );
}

export function notifyNewKey(
  mailer: Mailer | undefined,
  account: Account,
  key: string,
  service: string,
  log: Logger,
): void {
  if (mailer === undefined) return;
  const text = [
    `Hello ${account.alias || account.name},`,
    '',
    `An API key was created for you on ${service}:`,
    '',
    `  ${key}`,
    '',
    'Use it exactly like an OpenAI key: set the SDK base URL to this service (ending in /v1) and the key as the API key.',
    'Keep it secret; it cannot be shown again.',
    '',
    `— ${service}`,
  ].join('\n');
  mailer
    .send(account.email, `[${service}] Your API key`, text)
    .catch((err: unknown) => log.warn({ err, accountId: account.id }, 'could not send the new-key e-mail'));
}
