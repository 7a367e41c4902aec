// An AI agent's view of the hub, with the official TypeScript MCP SDK
// (npm @modelcontextprotocol/sdk): Client + StreamableHTTPClientTransport with
// the agent's bearer, listing tools and running queries through the hub and
// the tunnel. The TypeScript twin of conformance/sdk/python/test_hub_agent.py,
// run by conformance/sdk/run-hub.sh with `node --test`.
//
// Environment (set by run-hub.sh):
//   EWII_TS_SDK_DIR                  npm project holding the pinned SDK (toolchain.sh ts_sdk)
//   EWII_HUB_MCP_URL                 the hub's MCP URL
//   EWII_HUB_AGENT_CREDENTIAL_FILE   file holding the agent's bearer credential
//   EWII_HUB_DEPLOYMENT              the tools' prefix (default: eu)
//   EWII_HUB_POSTGRES                "1" when the PostgreSQL database `crm` is attached
//   EWII_SAMPLE_DATA                 the seeded rows as JSON (sample_data.py json)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';

function env(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run conformance/sdk/run-hub.sh`);
  return value;
}

// The SDK lives in the cache, not beside this file: resolve it from there.
const sdk = createRequire(join(env('EWII_TS_SDK_DIR'), 'package.json'));
const { Client } = sdk('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = sdk('@modelcontextprotocol/sdk/client/streamableHttp.js');
// (The package's exports map hides its own package.json: read the file.)
const SDK_VERSION = JSON.parse(
  readFileSync(join(env('EWII_TS_SDK_DIR'), 'node_modules/@modelcontextprotocol/sdk/package.json'), 'utf8'),
).version;

const MCP_URL = new URL(env('EWII_HUB_MCP_URL'));
const CREDENTIAL = readFileSync(env('EWII_HUB_AGENT_CREDENTIAL_FILE'), 'utf8').split('\n')[0].trim();
const DEPLOYMENT = process.env.EWII_HUB_DEPLOYMENT || 'eu';
const POSTGRES = process.env.EWII_HUB_POSTGRES === '1';
const { customers: CUSTOMERS, accounts: ACCOUNTS } = JSON.parse(readFileSync(env('EWII_SAMPLE_DATA'), 'utf8'));
const TOOL_SUFFIXES = ['query', 'list_schemas', 'list_tables', 'describe_table', 'explain'];
const CATALOG_TIMEOUT_MS = 30_000;

/** Runs fn(client) in a fresh, initialised session with `credential` as the bearer. */
async function withClient(fn, credential = CREDENTIAL) {
  const transport = new StreamableHTTPClientTransport(MCP_URL, {
    requestInit: { headers: { Authorization: `Bearer ${credential}` } },
  });
  const client = new Client({ name: 'ewii-ts-agent', version: '0' });
  await client.connect(transport, { timeout: 30_000 });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** tools/call DEPLOYMENT_DATABASE_query; asserts success and returns structuredContent. */
async function query(database, sql, params) {
  const tool = `${DEPLOYMENT}_${database}_query`;
  const result = await withClient((c) => c.callTool({ name: tool, arguments: { sql, params } }));
  assert.ok(!result.isError, `${tool} failed: ${JSON.stringify(result.content)}`);
  assert.ok(result.structuredContent, `${tool}: no structuredContent in ${JSON.stringify(result)}`);
  return result.structuredContent;
}

const databases = ['shop', ...(POSTGRES ? ['crm'] : [])];

test(`SDK ${SDK_VERSION}: tools/list holds each database's tools`, async () => {
  // The hub fetches the catalog through the tunnel after it comes up: poll briefly.
  const wanted = databases.map((db) => `${DEPLOYMENT}_${db}_query`);
  const deadline = Date.now() + CATALOG_TIMEOUT_MS;
  let tools;
  for (;;) {
    tools = new Map((await withClient((c) => c.listTools())).tools.map((t) => [t.name, t]));
    if (wanted.every((name) => tools.has(name)) || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  for (const db of databases) {
    for (const suffix of TOOL_SUFFIXES) {
      const name = `${DEPLOYMENT}_${db}_${suffix}`;
      assert.ok(tools.has(name), `${name} missing from ${[...tools.keys()]}`);
      assert.equal(tools.get(name).inputSchema.type, 'object', name);
    }
  }
  const stray = [...tools.keys()].filter((name) => !name.startsWith(`${DEPLOYMENT}_`));
  assert.deepEqual(stray, [], 'tools not of the deployment');
});

test('SQLite count through the tunnel', async () => {
  const content = await query('shop', 'SELECT count(*) AS n FROM customers', []);
  assert.deepEqual(content.rows, [[CUSTOMERS.length]]);
  assert.deepEqual(content.columns.map((c) => c.name), ['n']);
});

test('SQLite parameterised query', async () => {
  const content = await query(
    'shop',
    'SELECT id, name FROM customers WHERE country = ? AND id > ? ORDER BY id',
    ['FR', 3],
  );
  assert.deepEqual(
    content.rows,
    CUSTOMERS.filter(([id, , country]) => country === 'FR' && id > 3).map(([id, name]) => [id, name]),
  );
});

test('PostgreSQL parameterised query', { skip: !POSTGRES && 'SKIPPED: no PostgreSQL (EWII_TEST_POSTGRES_URL unset)' }, async () => {
  const content = await query(
    'crm',
    'SELECT id, name, mrr FROM accounts WHERE tier = $1 AND mrr >= $2 ORDER BY mrr DESC',
    ['gold', 100],
  );
  const expected = ACCOUNTS.filter(([, , tier, mrr]) => tier === 'gold' && mrr >= 100)
    .map(([id, name, , mrr]) => [id, name, mrr])
    .sort((a, b) => b[2] - a[2]);
  assert.deepEqual(content.rows, expected);
});

test('a write is refused end to end', async () => {
  const tool = `${DEPLOYMENT}_shop_query`;
  const result = await withClient((c) => c.callTool({ name: tool, arguments: { sql: 'DELETE FROM customers', params: [] } }));
  assert.equal(result.isError, true, `DELETE was not refused: ${JSON.stringify(result)}`);
  assert.ok(result.content.some((block) => block.type === 'text' && block.text), 'the refusal carries no message');
  assert.deepEqual((await query('shop', 'SELECT count(*) AS n FROM customers', [])).rows, [[CUSTOMERS.length]]);
});

test('a wrong bearer is refused with 401', async () => {
  await assert.rejects(
    withClient((c) => c.listTools(), 'ewii_agent_not-a-real-credential'),
    (error) => {
      assert.ok(error.code === 401 || /\b401\b/.test(String(error)), `not a 401: ${error}`);
      return true;
    },
  );
});
