//! A real OAuth authorization server for the hub's OAuth suites: npm
//! `oidc-provider` (OpenID Certified) on Node 22, pinned in
//! `conformance/toolchain.sh`, installed into the cache by
//! `conformance/oauth/install.sh` and run from
//! `conformance/oauth/authorization-server.mjs` on a free loopback port.
//!
//! Tokens come from its real endpoints: client credentials
//! ([`AuthorizationServer::client_credentials`]) and the authorization
//! code flow with PKCE, login and consent automated over HTTP
//! ([`AuthorizationServer::authorization_code`]). Nothing here mints a
//! token; the keys it signs with are its own ([`signing_key`] makes one
//! with `jose`), so a test can rotate them by restarting it
//! ([`AuthorizationServer::restart_with_keys`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};

use crate::process::{Launch, RunningProcess, free_loopback_port, wait_for_tcp};

/// The fixture script.
const SCRIPT: &str = include_str!("../oauth/authorization-server.mjs");

/// How long the server may take to start.
const START: Duration = Duration::from_secs(30);

/// What `install.sh` installed, once per run.
struct Toolchain {
    node: PathBuf,
    /// The npm project holding oidc-provider (and the fixture script).
    project: PathBuf,
    /// The official Python SDK's venv python.
    python: PathBuf,
}

/// Node and the npm project holding oidc-provider, installed once per run.
fn toolchain() -> (PathBuf, PathBuf) {
    let t = installed();
    (t.node.clone(), t.project.clone())
}

/// The python of the venv with the official MCP SDK (`mcp` 1.x), for the
/// discovery test (`conformance/oauth/sdk_discovery.py`).
pub fn sdk_python() -> PathBuf {
    installed().python.clone()
}

fn installed() -> &'static Toolchain {
    static TOOLCHAIN: std::sync::OnceLock<Toolchain> = std::sync::OnceLock::new();
    TOOLCHAIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oauth/install.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed (Node 22 and oidc-provider are installed from npm): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| PathBuf::from(v.trim()))
                .unwrap_or_else(|| panic!("install.sh printed no `{name}` line: {text}"))
        };
        let node = field("node ");
        let modules = field("modules ");
        let python = field("python ");
        // ESM resolves packages next to the script, not through
        // NODE_PATH: the script runs from the npm project.
        let project = modules
            .parent()
            .expect("node_modules has a parent")
            .to_path_buf();
        std::fs::write(project.join("ewii-authorization-server.mjs"), SCRIPT)
            .expect("write the fixture script into the npm project");
        Toolchain {
            node,
            project,
            python,
        }
    })
}

/// A new private RS256 signing key (JWK) with key id `kid`, made by `jose`.
pub fn signing_key(kid: &str) -> Value {
    let (node, project) = toolchain();
    let out = Command::new(node)
        .arg(project.join("ewii-authorization-server.mjs"))
        .args(["genkey", kid])
        .current_dir(&project)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "genkey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JWK")
}

/// A client of the server: oidc-provider client metadata plus
/// `ewii_ttl` (access token lifetime, seconds) and `ewii_format`
/// (`jwt` or `opaque`).
pub fn service_client(id: &str, ttl: u64, format: &str) -> Value {
    json!({
        "client_id": id,
        "client_secret": format!("{id}-secret"),
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "ewii_ttl": ttl,
        "ewii_format": format,
    })
}

/// A web client for the authorization code flow (PKCE required), with
/// redirect URI [`REDIRECT_URI`].
pub fn web_client(id: &str) -> Value {
    json!({
        "client_id": id,
        "client_secret": format!("{id}-secret"),
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [REDIRECT_URI],
    })
}

/// Where the web clients' authorization responses go (nothing listens:
/// the test reads the code off the redirect).
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// The running authorization server.
pub struct AuthorizationServer {
    /// Its issuer identifier (`http://127.0.0.1:PORT`).
    pub issuer: String,
    addr: SocketAddr,
    clients: Vec<Value>,
    process: Option<RunningProcess>,
    http: reqwest::Client,
}

impl AuthorizationServer {
    /// Starts a server signing with `keys` (the first signs) for `clients`.
    pub async fn start(keys: &[Value], clients: Vec<Value>) -> AuthorizationServer {
        crate::agent::install_crypto_provider();
        let port = free_loopback_port().expect("a free loopback port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = AuthorizationServer {
            issuer: format!("http://{addr}"),
            addr,
            clients,
            process: None,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
        };
        server.launch(keys).await;
        server
    }

    async fn launch(&mut self, keys: &[Value]) {
        let (node, project) = toolchain();
        let config = json!({ "port": self.addr.port(), "keys": keys, "clients": self.clients });
        let launch = Launch::program(&node).expect("launch node");
        let config_path = launch.home().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write the server config");
        let mut process = launch
            .arg(project.join("ewii-authorization-server.mjs"))
            .arg("serve")
            .arg(&config_path)
            .spawn()
            .expect("start the authorization server");
        process
            .wait_for_line(START, |l| l.text.starts_with("listening "))
            .await
            .unwrap_or_else(|e| panic!("the authorization server did not start: {e}"));
        wait_for_tcp(self.addr, START)
            .await
            .expect("the authorization server listens");
        self.process = Some(process);
    }

    /// Stops it and starts it again on the same port with `keys` (a key
    /// rotation; its in-memory grants are lost, its clients are not).
    pub async fn restart_with_keys(&mut self, keys: &[Value]) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(5));
        }
        self.launch(keys).await;
    }

    /// An access token by client credentials for `resource` with `scope`;
    /// the error body when the server refuses.
    pub async fn client_credentials(
        &self,
        client: &str,
        scope: &str,
        resource: &str,
    ) -> Result<String, String> {
        let body = format!(
            "grant_type=client_credentials&scope={}&resource={}",
            form(scope),
            form(resource)
        );
        self.token(client, body).await
    }

    /// Revokes `token` at the server (RFC 7009), as `client`.
    pub async fn revoke(&self, client: &str, token: &str) {
        let response = self
            .http
            .post(format!("{}/token/revocation", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", form(token)))
            .send()
            .await
            .expect("revoke");
        assert!(
            response.status().is_success(),
            "revocation: {}",
            response.status()
        );
    }

    async fn token(&self, client: &str, body: String) -> Result<String, String> {
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let value: Value = response.json().await.map_err(|e| e.to_string())?;
        match value.get("access_token").and_then(Value::as_str) {
            Some(t) if status.is_success() => Ok(t.to_owned()),
            _ => Err(value.to_string()),
        }
    }

    /// An access token by the authorization code flow with PKCE (S256) for
    /// `resource` with `scope`: the user `subject` logs in and consents,
    /// over HTTP, as a browser would (cookies carried by hand).
    pub async fn authorization_code(
        &self,
        client: &str,
        subject: &str,
        scope: &str,
        resource: &str,
    ) -> Result<String, String> {
        let verifier = B64URL.encode(
            (0..32)
                .map(|i| (i as u8).wrapping_mul(37).wrapping_add(subject.len() as u8))
                .collect::<Vec<u8>>(),
        );
        let challenge = B64URL.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        ));
        let mut cookies: Vec<(String, String)> = Vec::new();
        let mut url = format!(
            "{}/auth?client_id={client}&response_type=code&redirect_uri={}&scope={}&\
             code_challenge={challenge}&code_challenge_method=S256&resource={}&state=s1",
            self.issuer,
            form(REDIRECT_URI),
            form(scope),
            form(resource)
        );
        // Follow the redirects; answer the login and consent prompts.
        let code = loop {
            if let Some(query) = url.strip_prefix(&format!("{REDIRECT_URI}?")) {
                break query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("code="))
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no code in {url}"))?;
            }
            let (method, target, body) = if url.contains("/interaction/") {
                let prompt: Value = self
                    .send("GET", &url, &mut cookies, None)
                    .await?
                    .1
                    .parse::<Value>()
                    .map_err(|e| e.to_string())?;
                match prompt["prompt"].as_str() {
                    Some("login") => (
                        "POST",
                        format!("{url}/login"),
                        Some(format!("login={}", form(subject))),
                    ),
                    Some("consent") => ("POST", format!("{url}/confirm"), Some(String::new())),
                    other => return Err(format!("unexpected prompt {other:?}")),
                }
            } else {
                ("GET", url.clone(), None)
            };
            let (location, text) = self.send(method, &target, &mut cookies, body).await?;
            url = location.ok_or_else(|| format!("{target} did not redirect: {text}"))?;
            if url.starts_with('/') {
                url = format!("{}{url}", self.issuer);
            }
        };
        let body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}&resource={}",
            form(&code),
            form(REDIRECT_URI),
            form(resource)
        );
        self.token(client, body).await
    }

    /// One request with the cookie jar; the redirect target and the body.
    async fn send(
        &self,
        method: &str,
        url: &str,
        cookies: &mut Vec<(String, String)>,
        body: Option<String>,
    ) -> Result<(Option<String>, String), String> {
        let mut request = match method {
            "POST" => self
                .http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.unwrap_or_default()),
            _ => self.http.get(url),
        };
        if !cookies.is_empty() {
            let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", jar.join("; "));
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        for set in response.headers().get_all("set-cookie") {
            let Some((pair, _)) = set
                .to_str()
                .unwrap_or("")
                .split_once(';')
                .or(Some((set.to_str().unwrap_or(""), "")))
            else {
                continue;
            };
            if let Some((k, v)) = pair.split_once('=') {
                cookies.retain(|(name, _)| name != k);
                cookies.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(|e| e.to_string())?;
        Ok((location, text))
    }
}

/// `application/x-www-form-urlencoded` of one value.
pub fn form(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Drop for AuthorizationServer {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(5));
        }
    }
}
