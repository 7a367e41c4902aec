//! `ewii-client`: the customer-side end of the Ewii tunnel.
//!
//! It dials ONE outbound QUIC connection to the operator's hub, proves its
//! identity with its SPIFFE X.509-SVID, and forwards each MCP request the
//! hub sends to an allow-listed local MCP adapter. It never listens.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ewii_client::client::{Client, ClientError, ClientSettings};
use ewii_client::connlog::ConnectionLog;
use ewii_client::forward::{AdapterCredential, AllowList, Destination};
use ewii_client::identity::{CurrentIdentity, IdentitySource, IdentityStore};
use ewii_quic::{HubCertVerifier, KeyMaterial, read_certificates};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// How enrolment works, and examples (end of `--help`).
const AFTER_HELP: &str = "\
Enrolment:
  The operator creates the deployment on the hub (`ewii-hub deployment create`) and hands you
  its single-use enrolment token (a fresh one: `ewii-hub deployment token`). Start the client
  once with it, in a file (--enrollment-token-file) or in the environment (EWII_ENROLLMENT_TOKEN):
  the client generates its own key (which never leaves the machine), gets its SVID from the hub
  and saves both in --state. From then on it needs no token, and renews its SVID over the tunnel.

Stopping:
  SIGTERM or SIGINT stops an enrolled client for good: it says a signed goodbye over the tunnel
  (the hub revokes the deployment) and deletes svid.pem and svid.key from --state, so starting
  again needs a new enrolment token. If the hub cannot be told, the files are deleted anyway and
  the client says which `ewii-hub revoke` command the operator should run.
  --keep-enrollment-on-stop (EWII_KEEP_ENROLLMENT_ON_STOP=true) keeps the enrolment instead, for
  restarts and upgrades. A --svid/--key identity is always kept. A crash or a lost link changes
  nothing: the client comes back with its saved SVID.

The adapter's local credential:
  ewii-adapter serves only callers that present its local credential (the file
  local-credential in the adapter home; `ewii-adapter local-credential` prints its path).
  Give the client that file with --adapter-credential-file (EWII_ADAPTER_CREDENTIAL_FILE), or
  the value in EWII_ADAPTER_CREDENTIAL. The client sends it to the adapter only, as
  `Authorization: Bearer ...`, never to the hub, and never logs it. A wrong or missing one makes
  the adapter answer 401: the client logs `adapter_unauthorized` and nothing runs.

Exit codes:
  0  stopped (SIGTERM/SIGINT), or --check passed
  1  any other error (configuration, files, network setup)
  2  the enrolment token was refused, or there is none and the client is not enrolled
  3  the hub revoked this client's SVID: it stopped and will not reconnect with it; an enrolled
     SVID and key were moved aside (svid.pem.revoked, svid.key.revoked). Get a new enrolment
     token (`ewii-hub deployment token`) or a new SVID.

Examples:
  ewii-client run --hub hub.example.com:4433 --hub-ca hub-ca.pem \\
      --state /var/lib/ewii-client --enrollment-token-file token.txt \\
      --allow tcp:127.0.0.1:8080 --adapter-credential-file /var/lib/ewii-adapter/local-credential
  ewii-client run --hub hub.example.com:4433 --hub-ca hub-ca.pem \\
      --state /var/lib/ewii-client --allow tcp:127.0.0.1:8080 \\
      --adapter-credential-file /var/lib/ewii-adapter/local-credential   # enrolled already
  ewii-client run ... --svid svid.pem --key svid.key    # an SVID issued elsewhere, never renewed

Logs go to stderr (EWII_LOG=debug for more, EWII_LOG_FORMAT=json for JSON); every forward is
also recorded in STATE/connections.jsonl.";

/// The environment variable holding an enrolment token (the value itself).
const TOKEN_ENV: &str = "EWII_ENROLLMENT_TOKEN";
/// The environment variable holding the adapter's local credential (the
/// value itself; --adapter-credential-file is the file form).
const ADAPTER_CREDENTIAL_ENV: &str = "EWII_ADAPTER_CREDENTIAL";

#[derive(Parser)]
#[command(
    name = "ewii-client",
    version,
    about = "The customer-side end of the Ewii tunnel: one outbound QUIC connection to the hub, \
             forwarding MCP requests to allow-listed local adapters only.",
    long_about = None,
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the hub and forward requests until stopped (SIGINT/SIGTERM).
    #[command(after_help = AFTER_HELP)]
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The hub's QUIC address, HOST:PORT. Repeat it (or give a comma list)
    /// for the replicas of one hub: the client dials one and moves to the
    /// next, with its backoff, when that one fails.
    #[arg(long, env = "EWII_HUB", value_delimiter = ',', required = true)]
    hub: Vec<String>,
    /// PEM file of the CA that issued the hub's certificate. The hub must
    /// prove an identity under it, in TLS and again end to end (and in TLS
    /// at enrolment).
    #[arg(long, env = "EWII_HUB_CA")]
    hub_ca: PathBuf,
    /// The name the hub's certificate must carry (default: HOST of the first
    /// --hub; every replica's certificate must carry it).
    #[arg(long, env = "EWII_HUB_NAME")]
    hub_name: Option<String>,
    /// PEM CA for the TLS layer only, when a TLS-terminating relay sits in
    /// front of the hub. The app layer still requires --hub-ca. Not used
    /// for enrolment: the token is only ever sent to the hub itself.
    #[arg(long, env = "EWII_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Directory for the client's state: its enrolled SVID (svid.pem,
    /// svid.key, bundle.pem) and its connection log.
    #[arg(long, env = "EWII_STATE")]
    state: PathBuf,
    /// An adapter endpoint the hub may reach: unix:/abs/path or
    /// tcp:IP:PORT. Repeat for several; the first is the default. Anything
    /// else is refused and logged.
    #[arg(
        long = "allow",
        env = "EWII_ALLOW",
        value_delimiter = ',',
        required = true
    )]
    allow: Vec<String>,
    /// The adapter's local credential file (`ewii-adapter local-credential`
    /// prints its path), sent to the adapter as a bearer on every request.
    /// Or put the value in EWII_ADAPTER_CREDENTIAL.
    #[arg(long, env = "EWII_ADAPTER_CREDENTIAL_FILE", value_name = "FILE")]
    adapter_credential_file: Option<PathBuf>,
    /// File holding the single-use enrolment token from the operator
    /// (`ewii-hub deployment create` or `ewii-hub deployment token`). Or put
    /// the token in the environment variable EWII_ENROLLMENT_TOKEN. Used
    /// only when --state holds no valid SVID yet.
    #[arg(
        long,
        env = "EWII_ENROLLMENT_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with_all = ["svid", "key"]
    )]
    enrollment_token_file: Option<PathBuf>,
    /// PEM file of an X.509-SVID issued outside enrolment (leaf first, then
    /// any intermediates). Never renewed. Instead of an enrolment token.
    #[arg(long, env = "EWII_SVID", requires = "key")]
    svid: Option<PathBuf>,
    /// PEM file of the --svid's private key.
    #[arg(long, env = "EWII_SVID_KEY", requires = "svid")]
    key: Option<PathBuf>,
    /// Check the configuration (identity, hub CA, allow-list), print it and
    /// exit, without contacting the hub.
    #[arg(long)]
    check: bool,
    /// With --check: print JSON for scripts.
    #[arg(long)]
    json: bool,
    /// On SIGTERM/SIGINT keep the enrolled SVID and the deployment (for a
    /// restart or an upgrade). Without it, stopping an enrolled client
    /// revokes it at the hub and deletes svid.pem and svid.key.
    #[arg(
        long,
        env = "EWII_KEEP_ENROLLMENT_ON_STOP",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    keep_enrollment_on_stop: bool,
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("EWII_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("EWII_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    // One crypto provider for the whole tree.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
        }
    }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<ClientError>() {
                // Something only the operator or the admin can fix: a new
                // token, or a token at all. Restarting will not help.
                Some(ClientError::Refused { .. } | ClientError::NotEnrolled) => {
                    std::process::ExitCode::from(2)
                }
                // The hub revoked the SVID: restarting will not help either.
                Some(ClientError::Revoked { .. }) => std::process::ExitCode::from(3),
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// The hub addresses as one setting (comma-separated), each checked.
fn hub_list(hubs: &[String]) -> Result<String> {
    let hubs: Vec<&str> = hubs
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .collect();
    if hubs.is_empty() {
        bail!("--hub: give the hub's address, HOST:PORT");
    }
    for hub in &hubs {
        hub_host(hub)?;
    }
    Ok(hubs.join(","))
}

fn hub_host(hub: &str) -> Result<String> {
    let (host, port) = hub
        .rsplit_once(':')
        .with_context(|| format!("--hub {hub:?} must be HOST:PORT"))?;
    port.parse::<u16>()
        .with_context(|| format!("--hub {hub:?}: {port:?} is not a port number"))?;
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned())
}

/// Reads a token file: the token, surrounding whitespace trimmed.
fn read_token_file(path: &Path) -> Result<Zeroizing<String>> {
    let raw = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("--enrollment-token-file {}", path.display()))?,
    );
    let token = Zeroizing::new(raw.trim().to_owned());
    if token.is_empty() {
        bail!(
            "--enrollment-token-file {}: the file is empty",
            path.display()
        );
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!(
                file = %path.display(),
                "the enrolment token file is readable by other users; make it 0600 (or delete it once enrolled)"
            );
        }
    }
    Ok(token)
}

/// The adapter's local credential: from --adapter-credential-file or
/// EWII_ADAPTER_CREDENTIAL (exactly one). Without one every adapter call
/// would be refused with 401, so the client does not start; returns where
/// it came from too.
fn adapter_credential(args: &RunArgs) -> Result<(AdapterCredential, String)> {
    let env = std::env::var(ADAPTER_CREDENTIAL_ENV)
        .ok()
        .map(Zeroizing::new)
        .filter(|v| !v.trim().is_empty());
    match (&args.adapter_credential_file, env) {
        (Some(_), Some(_)) => bail!(
            "both --adapter-credential-file and {ADAPTER_CREDENTIAL_ENV} are set: give the \
             adapter credential one way"
        ),
        (Some(file), None) => {
            let credential =
                AdapterCredential::from_file(file).context("--adapter-credential-file")?;
            use std::os::unix::fs::PermissionsExt;
            if std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o007 != 0) {
                tracing::warn!(
                    file = %file.display(),
                    "the adapter credential file is readable by every user; make it 0600 (or \
                     0640 for a group shared with the adapter) and rotate it with \
                     `ewii-adapter local-credential --rotate`"
                );
            }
            Ok((credential, file.display().to_string()))
        }
        (None, Some(value)) => Ok((
            AdapterCredential::new(&value).context(ADAPTER_CREDENTIAL_ENV)?,
            format!("${ADAPTER_CREDENTIAL_ENV}"),
        )),
        (None, None) => bail!(
            "no adapter credential: pass --adapter-credential-file FILE (or set \
             EWII_ADAPTER_CREDENTIAL_FILE), FILE being the adapter's local-credential \
             (`ewii-adapter local-credential` prints its path), or put its value in \
             {ADAPTER_CREDENTIAL_ENV}; the adapter answers every call without it with 401"
        ),
    }
}

/// Where the SVID comes from: --svid/--key, or the state directory (with
/// a token from --enrollment-token-file or EWII_ENROLLMENT_TOKEN to enrol).
fn identity_source(args: &RunArgs) -> Result<IdentitySource> {
    let env_token = std::env::var(TOKEN_ENV)
        .ok()
        .map(Zeroizing::new)
        .map(|t| Zeroizing::new(t.trim().to_owned()))
        .filter(|t| !t.is_empty());
    if let (Some(svid), Some(key)) = (&args.svid, &args.key) {
        if env_token.is_some() {
            bail!(
                "{TOKEN_ENV} is set and so is --svid/--key: use one identity source (unset \
                 {TOKEN_ENV} to use the SVID files, or drop --svid/--key to enrol)"
            );
        }
        let keys = KeyMaterial::from_pem_files(svid, key).context("--svid / --key")?;
        return Ok(IdentitySource::Static(keys));
    }
    let token = match (&args.enrollment_token_file, env_token) {
        (Some(_), Some(_)) => bail!(
            "both --enrollment-token-file and {TOKEN_ENV} are set: give the enrolment token one way"
        ),
        (Some(file), None) => Some(read_token_file(file)?),
        (None, token) => token,
    };
    Ok(IdentitySource::Enrolled {
        state: args.state.clone(),
        token,
    })
}

/// Creates the state directory, owner-only, if it does not exist.
fn create_state_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))
}

async fn run(args: RunArgs) -> Result<()> {
    let hubs = hub_list(&args.hub)?;
    let hub_name = match args.hub_name.clone() {
        Some(n) => n,
        None => hub_host(hubs.split(',').next().unwrap_or_default())?,
    };
    let destinations = args
        .allow
        .iter()
        .map(|a| {
            a.parse::<Destination>()
                .with_context(|| format!("--allow {a}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let allow = AllowList::new(destinations)?;
    let (adapter_credential, credential_source) = adapter_credential(&args)?;
    let hub_ca = read_certificates(&args.hub_ca).context("--hub-ca")?;
    let tls_ca = args
        .tls_ca
        .as_deref()
        .map(read_certificates)
        .transpose()
        .context("--tls-ca")?;
    // The hub CA and name are usable (checked again by the client).
    HubCertVerifier::new(&hub_ca, &hub_name).context("--hub-ca / --hub-name")?;
    if let Some(roots) = &tls_ca {
        HubCertVerifier::new(roots, &hub_name).context("--tls-ca")?;
    }
    let source = identity_source(&args)?;
    create_state_dir(&args.state)?;
    let log_path = args.state.join("connections.jsonl");
    let log = ConnectionLog::open(&log_path)
        .with_context(|| format!("cannot open the connection log {}", log_path.display()))?;
    if args.check {
        return check(
            &args,
            &hub_name,
            &allow,
            &credential_source,
            &log_path,
            source,
        );
    }
    if running_as_root() {
        tracing::warn!(
            "running as root: ewii-client needs no privileges; run it as an unprivileged user"
        );
    }
    let settings = ClientSettings {
        hub: hubs.clone(),
        hub_name,
        hub_ca,
        tls_ca,
        allow: allow.clone(),
        adapter_credential: Some(adapter_credential),
        log: Some(Arc::new(log)),
    };
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        stop.cancel();
    });
    let client = match Client::start(settings, source, &cancel).await {
        Ok(client) => client.revoke_on_stop(!args.keep_enrollment_on_stop),
        Err(ClientError::Cancelled) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let svid = client.svid();
    tracing::info!(
        hub = %hubs,
        identity = client.identity(),
        serial = %svid.serial,
        expires = %svid.expires_at_rfc3339(),
        renews = client.renews(),
        keep_enrollment_on_stop = args.keep_enrollment_on_stop,
        allow = ?allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "starting"
    );
    // `run` logs what a stop did to the identity.
    client.run(cancel).await?;
    Ok(())
}

/// `--check`: what the client would use, without contacting the hub.
fn check(
    args: &RunArgs,
    hub_name: &str,
    allow: &AllowList,
    credential_source: &str,
    log_path: &Path,
    source: IdentitySource,
) -> Result<()> {
    let now = SystemTime::now();
    // (source, identity if any, what happens to a token, a fatal error)
    let (kind, identity, token, fatal): (&str, Option<CurrentIdentity>, Option<&str>, _) =
        match source {
            IdentitySource::Static(keys) => (
                "static",
                Some(CurrentIdentity::from_keys(keys).context("--svid")?),
                None,
                None,
            ),
            IdentitySource::Enrolled { state, token } => {
                let has_token = token.is_some();
                match IdentityStore::new(&state).load() {
                    Ok(Some(id)) => {
                        let expired = id.is_expired(now);
                        let token = match (has_token, expired) {
                            (false, _) => None,
                            (true, false) => Some("ignored (already enrolled)"),
                            (true, true) => Some("will be used to enrol again (the SVID expired)"),
                        };
                        ("enrolled", Some(id), token, None)
                    }
                    Ok(None) if has_token => (
                        "enrolled",
                        None,
                        Some("will be used to enrol when the client runs"),
                        None,
                    ),
                    Ok(None) => (
                        "enrolled",
                        None,
                        None,
                        Some(anyhow::Error::from(ClientError::NotEnrolled)),
                    ),
                    Err(e) if has_token => {
                        tracing::warn!(error = %e, "the saved identity is unusable");
                        (
                            "enrolled",
                            None,
                            Some("will be used to enrol again (the saved identity is unusable)"),
                            None,
                        )
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
    let svid = identity.as_ref().map(|i| i.svid().clone());
    let expired = identity.as_ref().is_some_and(|i| i.is_expired(now));
    let renewed = kind == "enrolled";
    let revoke_on_stop = renewed && !args.keep_enrollment_on_stop;
    if args.json {
        let summary = serde_json::json!({
            "hub": args.hub.join(","),
            "hub_name": hub_name,
            "identity_source": kind,
            "enrolled": kind == "enrolled" && svid.is_some(),
            "identity": svid.as_ref().map(|s| s.spiffe_id.clone()),
            "serial": svid.as_ref().map(|s| s.serial.clone()),
            "expires_at": svid.as_ref().map(|s| s.expires_at_rfc3339()),
            "expired": expired,
            "renewed_automatically": renewed,
            "revoke_on_stop": revoke_on_stop,
            "enrollment_token": token,
            "state": args.state,
            "allow": allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "adapter_credential": credential_source,
            "connection_log": log_path,
        });
        println!("{summary}");
    } else {
        println!(
            "hub:             {} (must prove the name {hub_name})",
            args.hub.join(", ")
        );
        match kind {
            "static" => println!("identity source: --svid/--key (never renewed)"),
            _ => println!(
                "identity source: enrolled, kept in {} (renewed over the tunnel)",
                args.state.display()
            ),
        }
        match &svid {
            Some(s) => {
                println!("identity:        {}", s.spiffe_id);
                println!("serial:          {}", s.serial);
                println!(
                    "expires:         {}{}",
                    s.expires_at_rfc3339(),
                    if expired { " (EXPIRED)" } else { "" }
                );
            }
            None => println!("identity:        not enrolled yet"),
        }
        if let Some(token) = token {
            println!("enrolment token: {token}");
        }
        println!(
            "on stop:         {}",
            if revoke_on_stop {
                "revoke at the hub and delete the SVID (--keep-enrollment-on-stop keeps it)"
            } else {
                "close the tunnel, keep the SVID"
            }
        );
        for d in allow.iter() {
            println!("allow:           {d}");
        }
        println!("adapter credential: {credential_source} (read; sent to the adapter only)");
        println!("connection log:  {}", log_path.display());
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
