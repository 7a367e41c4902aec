//! The adapter serves only its client (security property 1, issue #12
//! item 8): a real `ewii-adapter serve` over a read-write SQLite database,
//! spoken to with raw HTTP so that every header is the test's choice.
//!
//! - No credential, or a wrong one: 401 with a JSON error that says where
//!   the credential lives, no MCP session, and an INSERT is not executed.
//! - A browser origin is served only when listed exactly: another
//!   `http://localhost` port gets 403, with or without the credential.
//! - The same holds on a unix socket; the credential is made by `init`
//!   (0600), by the first `serve` of an older home, and replaced by
//!   `local-credential --rotate`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{TestHome, install_crypto_provider};
use serde_json::{Value, json};

const INSERT: &str = "INSERT INTO customers (id, name, country) VALUES (1000, 'Mallory', 'XX')";

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "local-credential-test", "version": "1"}}})
}

fn insert_call() -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "shop_query", "arguments": {"sql": INSERT}}})
}

/// One POST to the adapter with exactly the headers given.
async fn post(
    url: &str,
    bearer: Option<&str>,
    origin: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .timeout(Duration::from_secs(20))
        .json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    if let Some(s) = session {
        req = req
            .header("Mcp-Session-Id", s)
            .header("MCP-Protocol-Version", "2025-11-25");
    }
    req.send().await.unwrap()
}

/// The JSON-RPC message in a reply body (plain JSON or one SSE event).
fn reply_message(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC reply in {text:?}"))
    })
}

/// Opens an MCP session with the right credential; returns its id.
async fn session(url: &str, credential: &str) -> String {
    let r = post(url, Some(credential), None, None, &initialize()).await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let notified = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(url, Some(credential), None, Some(&id), &notified).await;
    assert!(r.status().is_success(), "{}", r.status());
    id
}

/// Asserts a 401 that explains itself and creates no session.
async fn assert_unauthorized(r: reqwest::Response, code: &str) {
    assert_eq!(r.status(), 401);
    assert!(
        r.headers().get("mcp-session-id").is_none(),
        "a refused caller got an MCP session"
    );
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"ewii-adapter\""
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    for needle in [
        "local-credential",
        "ewii-adapter local-credential",
        "--adapter-credential-file",
        "Nothing was run",
    ] {
        assert!(message.contains(needle), "'{needle}' missing in {message}");
    }
}

async fn customers(db: &Path) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    n
}

/// A home with a read-write SQLite `shop` (10 customers).
async fn read_write_shop(t: &TestHome) -> std::path::PathBuf {
    t.init();
    let db = t.dir.path().join("shop.db");
    common::make_shop_db(&db).await;
    t.ok(&[
        "add-database",
        "shop",
        "--driver",
        "sqlite",
        "--url",
        &format!("sqlite://{}", db.display()),
        "--read-write",
    ]);
    db
}

#[tokio::test]
async fn without_the_local_credential_nothing_runs() {
    install_crypto_provider();
    let t = TestHome::new();
    let db = read_write_shop(&t).await;
    let (_server, url) = t.serve(&[]);
    let credential = t.credential();
    assert_eq!(customers(&db).await, 10);

    // No credential: no session is made.
    assert_unauthorized(
        post(&url, None, None, None, &initialize()).await,
        "local_credential_required",
    )
    .await;

    // A caller holding a live session id but not the credential cannot
    // use the session: the INSERT is not executed.
    let id = session(&url, &credential).await;
    let r = post(&url, None, None, Some(&id), &insert_call()).await;
    assert_unauthorized(r, "local_credential_required").await;
    let wrong = format!("{credential}x");
    for bad in [
        wrong.as_str(),
        &credential[..credential.len() - 1],
        "ewii_local_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "",
    ] {
        let r = post(&url, Some(bad), None, Some(&id), &insert_call()).await;
        let code = if bad.is_empty() {
            "local_credential_required"
        } else {
            "local_credential_wrong"
        };
        assert_unauthorized(r, code).await;
    }
    // Another scheme carrying the right value is not a bearer.
    let r = reqwest::Client::new()
        .post(&url)
        .header("Authorization", format!("Basic {credential}"))
        .header("Accept", "application/json, text/event-stream")
        .json(&insert_call())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(customers(&db).await, 10, "a refused caller's INSERT ran");

    // With the credential the same call runs: the refusals above were the
    // gate, not a broken call.
    let r = post(&url, Some(&credential), None, Some(&id), &insert_call()).await;
    assert_eq!(r.status(), 200);
    let reply = reply_message(&r.text().await.unwrap());
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    assert_eq!(customers(&db).await, 11);
}

#[tokio::test]
async fn browser_origins_are_served_only_when_listed_exactly() {
    install_crypto_provider();
    let t = TestHome::new();
    read_write_shop(&t).await;
    let allowed = "http://localhost:6274";
    let (_server, url) = t.serve(&["--allowed-origin", allowed]);
    let credential = t.credential();
    let own_port = url.split(':').nth(2).unwrap().split('/').next().unwrap();

    for foreign in [
        "http://localhost:6275".to_owned(),
        format!("http://localhost:{own_port}"),
        format!("http://127.0.0.1:{own_port}"),
        "https://localhost:6274".into(),
        "http://127.0.0.1:6274".into(),
        "http://localhost".into(),
        "null".into(),
        "http://evil.example".into(),
    ] {
        for bearer in [Some(credential.as_str()), None] {
            let r = post(&url, bearer, Some(&foreign), None, &initialize()).await;
            assert_eq!(
                r.status(),
                403,
                "Origin {foreign} (bearer: {})",
                bearer.is_some()
            );
            assert!(r.headers().get("mcp-session-id").is_none());
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("--allowed-origin"),
                "{body}"
            );
        }
    }
    // The listed origin, also in its other spellings, with the credential.
    for same in [allowed, "HTTP://LOCALHOST:6274", "http://localhost:6274/"] {
        let r = post(&url, Some(&credential), Some(same), None, &initialize()).await;
        assert_eq!(r.status(), 200, "listed origin {same} refused");
    }
    // The listed origin still needs the credential.
    assert_unauthorized(
        post(&url, None, Some(allowed), None, &initialize()).await,
        "local_credential_required",
    )
    .await;
    // No Origin at all: a non-browser client.
    let r = post(&url, Some(&credential), None, None, &initialize()).await;
    assert_eq!(r.status(), 200);

    // A wildcard is refused at start-up, before anything is served.
    let err = t.fails(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--allowed-origin",
        "http://localhost:*",
    ]);
    assert!(
        err.contains("wildcards") && err.contains("scheme://host:port"),
        "{err}"
    );
}

#[tokio::test]
async fn the_unix_socket_requires_the_credential_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestHome::new();
    read_write_shop(&t).await;
    let socket = t.dir.path().join("adapter.sock");
    let (_server, _) = t.serve(&["--unix", socket.to_str().unwrap()]);
    let body = initialize().to_string();
    let exchange = |auth: String| {
        let (socket, body) = (socket.clone(), body.clone());
        async move {
            let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
            let req = format!(
                "POST /mcp HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut resp = String::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp))
                .await
                .unwrap()
                .unwrap();
            resp
        }
    };
    // Same uid as the adapter, and still refused: the socket's mode is not
    // the credential.
    let resp = exchange(String::new()).await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("local_credential_required"), "{resp}");
    assert!(
        !resp.to_ascii_lowercase().contains("mcp-session-id"),
        "{resp}"
    );
    let resp = exchange("Authorization: Bearer ewii_local_nope\r\n".into()).await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let resp = exchange(format!("Authorization: Bearer {}\r\n", t.credential())).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn the_credential_is_made_at_init_0600_printed_and_rotated() {
    install_crypto_provider();
    let t = TestHome::new();
    // Before init there is no home to hold a credential.
    let err = t.fails(&["local-credential"]);
    assert!(err.contains("ewii-adapter init"), "{err}");

    read_write_shop(&t).await;
    let file = t.credential_file();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let first = t.credential();
    assert!(
        first.starts_with("ewii_local_") && first.len() >= 11 + 43,
        "{first}"
    );

    // Printing shows the path, not the secret, unless asked.
    let printed = t.ok(&["local-credential"]);
    assert_eq!(printed.trim(), file.display().to_string());
    assert!(!printed.contains(&first));
    assert_eq!(t.ok(&["local-credential", "--show"]).trim(), first);
    let json: Value = serde_json::from_str(&t.ok(&["local-credential", "--json"])).unwrap();
    assert_eq!(json["path"], file.display().to_string());
    assert_eq!(json["created"], false);
    assert!(json.get("credential").is_none(), "{json}");

    // Rotating replaces it; a restarted adapter accepts only the new one.
    let json: Value =
        serde_json::from_str(&t.ok(&["local-credential", "--rotate", "--json", "--show"])).unwrap();
    assert_eq!(json["rotated"], true);
    let second = t.credential();
    assert_ne!(second, first);
    assert_eq!(json["credential"], second);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (_server, url) = t.serve(&[]);
    assert_unauthorized(
        post(&url, Some(&first), None, None, &initialize()).await,
        "local_credential_wrong",
    )
    .await;
    let r = post(&url, Some(&second), None, None, &initialize()).await;
    assert_eq!(r.status(), 200);

    // A credential file others can read is refused, not served with.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = t.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(err.contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn an_older_home_gets_its_credential_on_first_serve() {
    install_crypto_provider();
    let t = TestHome::new();
    read_write_shop(&t).await;
    // A home made before the credential existed.
    std::fs::remove_file(t.credential_file()).unwrap();
    let (_server, url) = t.serve(&[]);
    let file = t.credential_file();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_unauthorized(
        post(&url, None, None, None, &initialize()).await,
        "local_credential_required",
    )
    .await;
    let r = post(&url, Some(&t.credential()), None, None, &initialize()).await;
    assert_eq!(r.status(), 200);
}
