/**
 * Names of the endpoint families that the gateway refuses by default because it cannot meter
 * their spend, and that an operator may enable (globally with ENDPOINTS_ENABLED, or per account
 * with `AllowEndpoints`). Kept apart from the endpoint table so the config loader can validate
 * names without importing the table.
 */
export const ENABLEABLE_FAMILIES = [
  'fine_tuning',
  'vector_stores',
  'containers',
  'videos',
  'realtime_client_secrets',
] as const;

export type EnableableFamily = (typeof ENABLEABLE_FAMILIES)[number];

export function isEnableableFamily(name: string): name is EnableableFamily {
  return (ENABLEABLE_FAMILIES as readonly string[]).includes(name);
}
