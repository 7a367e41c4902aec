// A real OAuth 2.1 / OpenID authorization server for the hub's OAuth tests:
// npm `oidc-provider` (OpenID Certified), pinned in conformance/toolchain.sh,
// on loopback. Started by the tests (conformance/src/oauth.rs), never by hand.
//
//   node authorization-server.mjs genkey KID      -> a private RS256 JWK on stdout
//   node authorization-server.mjs serve CONFIG    -> serves; prints "listening URL"
//
// CONFIG (JSON): { "port": P, "keys": [private JWKs, the first signs],
//   "clients": [oidc-provider client metadata, plus "ewii_ttl" (access token
//   seconds) and "ewii_format" ("jwt" | "opaque")] }
//
// Every resource indicator is accepted and becomes the token's audience: the
// hub, not this server, must refuse tokens for another resource. Login and
// consent are automated over HTTP by the test: POST /interaction/UID/login
// with `login=SUBJECT`, then POST /interaction/UID/confirm grants what was
// asked (the session cookie from /auth must be sent along).
import * as http from 'node:http';
import * as fs from 'node:fs';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [mode, arg] = process.argv.slice(2);

if (mode === 'genkey') {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  process.stdout.write(JSON.stringify({ ...jwk, kid: arg, alg: 'RS256', use: 'sig' }));
  process.exit(0);
}
if (mode !== 'serve') {
  console.error('usage: authorization-server.mjs genkey KID | serve CONFIG');
  process.exit(2);
}

const config = JSON.parse(fs.readFileSync(arg, 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const byId = Object.fromEntries(config.clients.map((c) => [c.client_id, c]));
const clients = config.clients.map(({ ewii_ttl, ewii_format, ...c }) => c);
const SCOPES = ['ewii:read', 'ewii:write', 'ewii:admin', 'ewii:deployment:eu', 'ewii:deployment:us'];

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: config.keys },
  scopes: ['openid', 'offline_access', ...SCOPES],
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  // The resource server's lifetime (per client, from CONFIG) for both kinds.
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL || 600,
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    AuthorizationCode: 60,
  },
  clientDefaults: { grant_types: ['authorization_code'], response_types: ['code'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource, client) => {
        const extra = byId[client.clientId] || {};
        return {
          scope: SCOPES.join(' '),
          audience: resource,
          accessTokenTTL: extra.ewii_ttl || 600,
          accessTokenFormat: extra.ewii_format || 'jwt',
          ...(extra.ewii_format === 'opaque' ? {} : { jwt: { sign: { alg: 'RS256' } } }),
        };
      },
    },
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

function form(req) {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
  });
}

async function interaction(req, res) {
  const [, , uid, action] = new URL(req.url, issuer).pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'GET') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ uid, prompt: details.prompt.name, params: details.params }));
    return;
  }
  if (action === 'login') {
    const { login } = await form(req);
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'confirm') {
    const { prompt: { details: missing }, params, session } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.statusCode = 404;
  res.end();
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      console.error('interaction failed', e);
      res.statusCode = 400;
      res.end(String(e));
    });
  } else {
    callback(req, res);
  }
});
server.listen(config.port, '127.0.0.1', () => console.log(`listening ${issuer}`));
process.on('SIGTERM', () => process.exit(0));
