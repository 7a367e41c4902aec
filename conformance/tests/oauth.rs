//! The hub as an OAuth 2.1 resource server (issue #18), against a real
//! authorization server (npm `oidc-provider`, OpenID Certified) started on
//! loopback by each test: tokens come from its token endpoint (client
//! credentials, or the authorization code flow with PKCE and consent over
//! HTTP), never from the test. Agent → hub → QUIC tunnel → client →
//! adapter → SQLite shop.
//!
//! Accepted: both grant types for the hub's resource indicator list and
//! call tools; static bearers keep working beside OAuth; a rotated key is
//! fetched on its unknown `kid`; opaque tokens are introspected.
//! Refused, each alone: no token, expired, wrong audience, wrong issuer,
//! bad signature, the old key after its removal, missing scope, a subject
//! mapped to no agent, workspace A's token on workspace B's tools, a
//! disabled agent, a token revoked at the server (introspection). A token
//! with `ewii:read` is fenced exactly like `statements = ["read"]`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime};

use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{agent, call, http_get, mcp_post, text_of, tool_names};
use ewii_conformance::db::Backend;
use ewii_conformance::hub::start_hub;
use ewii_conformance::oauth::{AuthorizationServer, service_client, signing_key, web_client};
use ewii_conformance::site::{Deployed, agent_credential, deploy};
use ewii_driver_core::SecretString;
use ewii_hub::gateway::oauth::OAuthOptions;
use ewii_hub::gateway::serve::RunningHub;
use ewii_hub::state::store::OAuthSettings;
use ewii_hub::state::store::oauth::Introspection;
use serde_json::{Value, json};

fn now() -> SystemTime {
    SystemTime::now()
}

/// One workspace `acme` trusting a real authorization server, with its
/// deployment `eu` connected, and OAuth agents `svc` (client credentials
/// subject `svc`) and `alice` (a user).
struct Site {
    backend: Backend,
    hub: RunningHub,
    auth: AuthorizationServer,
    _eu: Deployed,
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "oauth-test", "version": "0"}}})
}

fn count() -> Value {
    json!({ "sql": "SELECT count(*) AS n FROM customers" })
}

const READ: &str = "ewii:read";

impl Site {
    async fn start(tweak: impl FnOnce(&mut OAuthOptions)) -> Site {
        Site::with_keys(&[signing_key("k1")], tweak).await
    }

    async fn with_keys(keys: &[Value], tweak: impl FnOnce(&mut OAuthOptions)) -> Site {
        let backend = Backend::sqlite().await;
        let store = &backend.store;
        let auth = AuthorizationServer::start(
            keys,
            vec![
                service_client("svc", 600, "jwt"),
                service_client("short", 2, "jwt"),
                service_client("stranger", 600, "jwt"),
                service_client("opaque", 600, "opaque"),
                service_client("hub", 600, "jwt"),
                web_client("web"),
            ],
        )
        .await;
        let hub = start_hub(store, |o| {
            o.oauth.clock_skew = Duration::from_secs(1);
            o.oauth.jwks_min_refresh = Duration::ZERO;
            tweak(&mut o.oauth);
        })
        .await;
        store.create_workspace("acme", None, now()).await.unwrap();
        store
            .set_workspace_oauth("acme", &settings(&auth, &hub), now())
            .await
            .unwrap();
        for (name, subject) in [
            ("svc", "svc"),
            ("alice", "alice"),
            ("short", "short"),
            ("opaque", "opaque"),
        ] {
            store
                .create_oauth_agent("acme", name, subject, None, now())
                .await
                .unwrap();
        }
        let eu = deploy(store, &hub, "acme", "eu", TestAdapter::sqlite("shop").await).await;
        Site {
            backend,
            hub,
            auth,
            _eu: eu,
        }
    }

    fn resource(&self) -> String {
        self.hub.mcp_url()
    }

    async fn token(&self, client: &str, scope: &str) -> String {
        self.auth
            .client_credentials(client, scope, &self.resource())
            .await
            .unwrap_or_else(|e| panic!("a token for {client}: {e}"))
    }

    /// The raw answer to an `initialize` with `bearer`.
    async fn answer(&self, bearer: Option<&str>) -> ewii_conformance::agent::HttpAnswer {
        mcp_post(self.hub.http_addr, bearer, None, &initialize()).await
    }

    async fn refused(&self, bearer: &str, status: u16, error: &str) {
        let a = self.answer(Some(bearer)).await;
        assert_eq!(a.status, status, "{a:?}");
        let challenge = a.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains(&format!(
                "resource_metadata=\"{}\"",
                metadata_url(&self.hub)
            )),
            "{challenge}"
        );
        if !error.is_empty() {
            assert!(
                challenge.contains(&format!("error=\"{error}\"")),
                "{challenge}"
            );
        }
    }

    async fn accepted(&self, bearer: &str) {
        let a = self.answer(Some(bearer)).await;
        assert_eq!(a.status, 200, "{a:?}");
    }
}

fn settings(auth: &AuthorizationServer, hub: &RunningHub) -> OAuthSettings {
    OAuthSettings {
        issuer: auth.issuer.clone(),
        audience: hub.mcp_url(),
        claim: "sub".into(),
        introspection: None,
    }
}

fn metadata_url(hub: &RunningHub) -> String {
    format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        hub.http_addr
    )
}

async fn oauth_audit_fields(backend: &Backend) -> Value {
    let tail = backend.store.audit_tail(1).await.unwrap();
    let r = &tail.last().expect("an audit record").record;
    json!({
        "issuer": r["oauth_issuer"], "subject": r["oauth_subject"],
        "client": r["oauth_client"], "scopes": r["oauth_scopes"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_lists_and_calls_tools_through_the_tunnel() {
    let site = Site::start(|_| {}).await;
    let token = site.token("svc", READ).await;
    let a = agent(&site.resource(), &token).await;
    assert!(tool_names(&a).await.contains(&"eu_shop_query".to_owned()));
    let r = call(&a, "eu_shop_query", count()).await;
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert!(text_of(&r).contains("10"), "{}", text_of(&r));
    assert_eq!(
        oauth_audit_fields(&site.backend).await,
        json!({"issuer": site.auth.issuer, "subject": "svc", "client": "svc", "scopes": READ})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_lists_and_calls_tools_through_the_tunnel() {
    let site = Site::start(|_| {}).await;
    let token = site
        .auth
        .authorization_code("web", "alice", READ, &site.resource())
        .await
        .unwrap();
    let a = agent(&site.resource(), &token).await;
    assert!(tool_names(&a).await.contains(&"eu_shop_query".to_owned()));
    let r = call(&a, "eu_shop_query", count()).await;
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert_eq!(
        oauth_audit_fields(&site.backend).await,
        json!({"issuer": site.auth.issuer, "subject": "alice", "client": "web", "scopes": READ})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_bearers_keep_working_beside_oauth() {
    let site = Site::start(|_| {}).await;
    let credential = agent_credential(&site.backend.store, "acme", "legacy", None).await;
    let a = agent(&site.resource(), &credential).await;
    let r = call(&a, "eu_shop_query", count()).await;
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    // Nothing OAuth in a static bearer's audit record.
    assert_eq!(
        oauth_audit_fields(&site.backend).await,
        json!({"issuer": null, "subject": null, "client": null, "scopes": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_401_pointing_to_the_protected_resource_metadata() {
    let site = Site::start(|_| {}).await;
    let a = site.answer(None).await;
    assert_eq!(a.status, 401, "{a:?}");
    let challenge = a.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let url = metadata_url(&site.hub);
    assert!(
        challenge.contains(&format!("resource_metadata=\"{url}\"")),
        "{challenge}"
    );
    // Both the path-suffixed and the plain well-known form answer.
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let m = http_get(site.hub.http_addr, path).await;
        assert_eq!(m.status, 200, "{m:?}");
        let body = m.body.lines().last().unwrap_or_default();
        let doc: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {m:?}"));
        assert_eq!(doc["resource"], json!(site.resource()));
        assert_eq!(doc["authorization_servers"], json!([site.auth.issuer]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert!(
            doc["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(READ))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refused() {
    let site = Site::start(|_| {}).await;
    // `short` tokens live 2 s; the hub tolerates 1 s of skew, counted in
    // whole seconds: refused from 4 s after issue at the latest.
    let token = site.token("short", READ).await;
    site.accepted(&token).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    site.refused(&token, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_another_resource_is_refused() {
    let site = Site::start(|_| {}).await;
    let other = format!("http://127.0.0.1:{}/mcp", site.hub.http_addr.port() ^ 1);
    let token = site
        .auth
        .client_credentials("svc", READ, &other)
        .await
        .unwrap();
    site.refused(&token, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_of_another_issuer_is_refused() {
    let site = Site::start(|_| {}).await;
    // Another real server, same client id (so the same `sub`), tokens for
    // the hub's resource: the workspace does not trust its issuer.
    let other = AuthorizationServer::start(
        &[signing_key("k1")],
        vec![service_client("svc", 600, "jwt")],
    )
    .await;
    let token = other
        .client_credentials("svc", READ, &site.resource())
        .await
        .unwrap();
    site.refused(&token, 401, "invalid_token").await;
}

/// `token` with its signature's last byte changed.
fn tampered_signature(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == 'A' { 'B' } else { 'A' };
    format!("{rest}.{}", sig.into_iter().collect::<String>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_refused() {
    let site = Site::start(|_| {}).await;
    let token = site.token("svc", READ).await;
    site.accepted(&token).await;
    site.refused(&tampered_signature(&token), 401, "invalid_token")
        .await;
    // A real token's signature over another real token's claims (alice's
    // claims under svc's signature).
    let alice = site
        .auth
        .authorization_code("web", "alice", READ, &site.resource())
        .await
        .unwrap();
    let (h, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let alice_claims = alice.split('.').nth(1).unwrap();
    site.refused(&format!("{h}.{alice_claims}.{sig}"), 401, "invalid_token")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_key_is_fetched_on_its_kid_and_a_removed_key_stops_verifying() {
    let k1 = signing_key("k1");
    let k2 = signing_key("k2");
    // Keys are kept at most 1 s; an unknown kid refetches at once.
    let mut site = Site::with_keys(std::slice::from_ref(&k1), |o| {
        o.jwks_max_age = Duration::from_secs(1)
    })
    .await;
    let old = site.token("svc", READ).await;
    site.accepted(&old).await;
    // Rotation: k2 signs, k1 still published.
    site.auth.restart_with_keys(&[k2.clone(), k1]).await;
    let new = site.token("svc", READ).await;
    assert!(new.starts_with(&kid_header_prefix(&new, "k2")));
    site.accepted(&new).await;
    site.accepted(&old).await;
    // k1 removed at the server: once the hub's copy is older than its
    // max age, tokens signed with k1 are refused.
    site.auth.restart_with_keys(&[k2]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    site.refused(&old, 401, "invalid_token").await;
    site.accepted(&new).await;
}

/// Asserts the token's header names `kid`; returns its header part.
fn kid_header_prefix(token: &str, kid: &str) -> String {
    use base64::Engine as _;
    let h = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], json!(kid), "{header}");
    h.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_before_the_refresh_bound_is_refused_then_accepted() {
    let k1 = signing_key("k1");
    let k2 = signing_key("k2");
    // An unknown kid refetches the keys at most every 2 s.
    let mut site = Site::with_keys(std::slice::from_ref(&k1), |o| {
        o.jwks_min_refresh = Duration::from_secs(2);
    })
    .await;
    site.accepted(&site.token("svc", READ).await).await;
    site.auth.restart_with_keys(&[k2, k1]).await;
    let new = site.token("svc", READ).await;
    // Within the bound: no refetch, refused.
    site.refused(&new, 401, "invalid_token").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    site.accepted(&new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_a_hub_scope_is_insufficient_scope() {
    let site = Site::start(|_| {}).await;
    let token = site.token("svc", "").await;
    site.refused(&token, 403, "insufficient_scope").await;
    let a = site.answer(Some(&token)).await;
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .contains("scope=\"ewii:read\""),
        "{a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_mapped_to_no_agent_is_refused() {
    let site = Site::start(|_| {}).await;
    let token = site.token("stranger", READ).await;
    site.refused(&token, 403, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_the_agent_cuts_its_tokens_off_at_once() {
    let site = Site::start(|_| {}).await;
    let token = site.token("svc", READ).await;
    let a = agent(&site.resource(), &token).await;
    assert_ne!(
        call(&a, "eu_shop_query", count()).await.is_error,
        Some(true)
    );
    site.backend
        .store
        .disable_agent("acme", "svc", now())
        .await
        .unwrap();
    site.refused(&token, 403, "").await;
    // The open session too: its next request is refused.
    let next = tokio::time::timeout(Duration::from_secs(20), a.list_tools(None))
        .await
        .unwrap();
    assert!(next.is_err(), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_of_workspace_a_never_reaches_workspace_b() {
    let site = Site::start(|_| {}).await;
    let store = &site.backend.store;
    // Workspace beta trusts another server; its agent has the same subject.
    let other = AuthorizationServer::start(
        &[signing_key("k1")],
        vec![service_client("svc", 600, "jwt")],
    )
    .await;
    store.create_workspace("beta", None, now()).await.unwrap();
    store
        .set_workspace_oauth(
            "beta",
            &OAuthSettings {
                issuer: other.issuer.clone(),
                ..settings(&site.auth, &site.hub)
            },
            now(),
        )
        .await
        .unwrap();
    store
        .create_oauth_agent("beta", "svc", "svc", None, now())
        .await
        .unwrap();
    let _us = deploy(
        store,
        &site.hub,
        "beta",
        "us",
        TestAdapter::sqlite("shop").await,
    )
    .await;
    // acme's token: acme's tools only; beta's tool is unknown.
    let a = agent(&site.resource(), &site.token("svc", READ).await).await;
    let names = tool_names(&a).await;
    assert!(names.iter().all(|n| n.starts_with("eu_")), "{names:?}");
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        a.call_tool(
            rmcp::model::CallToolRequestParams::new("us_shop_query")
                .with_arguments(count().as_object().unwrap().clone()),
        ),
    )
    .await
    .unwrap();
    let refused = match r {
        Err(e) => e.to_string(),
        Ok(r) => text_of(&r),
    };
    assert!(refused.contains("unknown tool"), "{refused}");
    // beta's token: beta's tools only.
    let b_token = other
        .client_credentials("svc", READ, &site.resource())
        .await
        .unwrap();
    let b = agent(&site.resource(), &b_token).await;
    let names = tool_names(&b).await;
    assert!(
        names.iter().all(|n| n.starts_with("us_")) && !names.is_empty(),
        "{names:?}"
    );
    // The metadata lists both workspaces' issuers.
    let m = http_get(site.hub.http_addr, "/.well-known/oauth-protected-resource").await;
    let doc: Value = serde_json::from_str(m.body.lines().last().unwrap()).unwrap();
    let mut expected = vec![site.auth.issuer.clone(), other.issuer.clone()];
    expected.sort();
    assert_eq!(doc["authorization_servers"], json!(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_scope_is_fenced_exactly_like_a_read_only_toml_policy() {
    let site = Site::start(|_| {}).await;
    let toml = agent_credential(
        &site.backend.store,
        "acme",
        "toml-reader",
        Some("statements = [\"read\"]"),
    )
    .await;
    let by_toml = agent(&site.resource(), &toml).await;
    let by_scope = agent(&site.resource(), &site.token("svc", READ).await).await;
    let write = json!({ "sql": "DELETE FROM customers" });
    let t = call(&by_toml, "eu_shop_query", write.clone()).await;
    let s = call(&by_scope, "eu_shop_query", write).await;
    assert_eq!(t.is_error, Some(true));
    assert_eq!(s.is_error, Some(true));
    assert_eq!(text_of(&t), text_of(&s));
    let record = &site.backend.store.audit_tail(1).await.unwrap()[0].record;
    assert_eq!(record["rule"], json!("statements"), "{record}");
    assert_eq!(record["statement_class"], json!("write"), "{record}");
    // Reads pass for both.
    assert_ne!(
        call(&by_scope, "eu_shop_query", count()).await.is_error,
        Some(true)
    );
    // With ewii:write the same token holder's write reaches the (read-only)
    // database: the fence was the scope.
    let writer = agent(&site.resource(), &site.token("svc", "ewii:write").await).await;
    let w = call(
        &writer,
        "eu_shop_query",
        json!({ "sql": "DELETE FROM customers" }),
    )
    .await;
    assert!(
        !text_of(&w).contains("agent policy rule"),
        "{}",
        text_of(&w)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected_and_revocation_holds_within_the_cache_bound() {
    let site = Site::start(|o| o.introspection_cache = Duration::from_secs(1)).await;
    let mut s = settings(&site.auth, &site.hub);
    // oidc-provider's introspection of a client-credentials token carries
    // no `sub`: the agent is named by `client_id`.
    s.claim = "client_id".into();
    s.introspection = Some(Introspection {
        url: format!("{}/token/introspection", site.auth.issuer),
        client_id: "hub".into(),
        client_secret: SecretString::new("hub-secret"),
    });
    site.backend
        .store
        .set_workspace_oauth("acme", &s, now())
        .await
        .unwrap();
    let token = site.token("opaque", READ).await;
    assert_eq!(token.split('.').count(), 1, "an opaque token: {token}");
    let a = agent(&site.resource(), &token).await;
    let r = call(&a, "eu_shop_query", count()).await;
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert_eq!(
        oauth_audit_fields(&site.backend).await["subject"],
        json!("opaque")
    );
    // A made-up opaque token is refused.
    site.refused("not-a-real-token", 401, "invalid_token").await;
    // Revoked at the server: refused once the cached answer ends (1 s).
    site.auth.revoke("opaque", &token).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    site.refused(&token, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_discovers_everything_from_the_401() {
    let site = Site::start(|_| {}).await;
    // The SDK is given the MCP URL only: resource metadata, authorization
    // server metadata, registration, PKCE and the resource indicator all
    // come from the hub's 401.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oauth/sdk_discovery.py");
    let url = site.resource();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(ewii_conformance::oauth::sdk_python())
            .arg(script)
            .args([url.as_str(), "alice", "eu_shop_query"])
            .output()
            .expect("run the Python SDK")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(
        report["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("eu_shop_query")),
        "{report}"
    );
    assert_ne!(report["result"]["isError"], json!(true), "{report}");
    assert!(report["result"].to_string().contains("10"), "{report}");
    assert_eq!(
        oauth_audit_fields(&site.backend).await["subject"],
        json!("alice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_configures_a_workspace_and_maps_a_subject() {
    let site = Site::start(|_| {}).await;
    let b = &site.backend;
    b.cli_json(&["--json", "workspace", "create", "gamma"]);
    let set = b.cli_json(&[
        "--json",
        "workspace",
        "oauth",
        "set",
        "gamma",
        "--issuer",
        &site.auth.issuer,
        "--audience",
        &site.resource(),
        "--claim",
        "client_id",
    ]);
    assert_eq!(set["claim"], json!("client_id"), "{set}");
    let shown = b.cli_json(&["--json", "workspace", "oauth", "show", "gamma"]);
    assert_eq!(shown["issuer"], json!(site.auth.issuer), "{shown}");
    // gamma names agents by `client_id`: the `stranger` client.
    let created = b.cli_json(&[
        "--json",
        "agent",
        "create",
        "--workspace",
        "gamma",
        "g",
        "--oauth-subject",
        "stranger",
    ]);
    assert_eq!(created["oauth_subject"], json!("stranger"), "{created}");
    assert!(created.get("credential").is_none(), "{created}");
    // The same subject twice in one workspace is refused.
    let err = b.cli_err(&[
        "agent",
        "create",
        "--workspace",
        "gamma",
        "g2",
        "--oauth-subject",
        "stranger",
    ]);
    assert!(err.contains("OAuth subject"), "{err}");
    let token = site.token("stranger", READ).await;
    site.accepted(&token).await;
    b.cli(&["agent", "disable", "--workspace", "gamma", "g"]);
    site.refused(&token, 403, "").await;
    let cleared = b.cli_json(&["--json", "workspace", "oauth", "clear", "gamma"]);
    assert_eq!(cleared["cleared"], json!(true), "{cleared}");
}
