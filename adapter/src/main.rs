//! `ewii-adapter`: attach databases, keep their credentials encrypted, and
//! serve them as MCP tools on localhost.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ewii_adapter::access::ExactOrigin;
use ewii_adapter::admin::{self, AdminError};
use ewii_adapter::local_credential;
use ewii_adapter::serve::{self, HttpOptions};
use ewii_adapter::store::DatabaseEntry;
use ewii_adapter::{Adapter, AdapterHome};
use ewii_driver_core::schema::{StandardTool, ToolName};
use ewii_driver_core::{Limits, SecretString, mask_url};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const AFTER_HELP: &str = "\
Typical first run (the operator gives you a workspace id and an enrolment token):
  export EWII_ADAPTER_HOME=/var/lib/ewii-adapter
  export EWII_ENROLLMENT_TOKEN=...            # or --enrollment-token-file FILE
  ewii-adapter init --workspace-id acme
  ewii-adapter add-database shop --driver postgres --url postgres://reader@db:5432/shop --password-stdin
  ewii-adapter serve --listen 127.0.0.1:7878   # MCP at http://127.0.0.1:7878/mcp
  ewii-adapter local-credential                # the file to give ewii-client (--adapter-credential-file)

Every command that reads the credential store needs the enrolment token: the store is
encrypted with a key derived from it (PBKDF2-HMAC-SHA256, 600 000 rounds, AES-256-GCM).
Databases are read-only unless added with --read-write.

The HTTP endpoint serves only callers that send `Authorization: Bearer <local credential>`:
the credential is the file local-credential in the adapter home (mode 0600, made by init,
or by the first serve of an older home). Anything else gets 401 and nothing runs; a browser
Origin not listed exactly with --allowed-origin gets 403.";

/// Ewii MCP adapter: turns the databases you attach into MCP tools, served on
/// localhost only, with credentials encrypted at rest.
#[derive(Parser)]
#[command(name = "ewii-adapter", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Adapter state directory (config + encrypted credential store).
    #[arg(long, global = true, env = "EWII_ADAPTER_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Read the enrolment token from this file instead of EWII_ENROLLMENT_TOKEN.
    #[arg(long, global = true, value_name = "FILE")]
    enrollment_token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the adapter home and its empty encrypted credential store.
    Init {
        /// The workspace id the operator gave you.
        #[arg(long, value_name = "ID")]
        workspace_id: String,
    },
    /// Attach a database; its tools appear live in a running `serve`.
    #[command(name = "add-database")]
    AddDatabase(AddDatabase),
    /// List attached databases (passwords masked).
    #[command(name = "list-databases")]
    ListDatabases {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Detach a database; its tools disappear live from a running `serve`.
    #[command(name = "remove-database")]
    RemoveDatabase {
        /// The database name.
        name: String,
    },
    /// Connect to an attached database and report version and effective mode.
    #[command(name = "test-database")]
    TestDatabase {
        /// The database name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the MCP tools this deployment advertises.
    Catalog {
        /// Machine-readable output (the tool descriptors).
        #[arg(long)]
        json: bool,
    },
    /// Serve MCP: streamable HTTP on loopback or a unix socket, or stdio.
    Serve(ServeArgs),
    /// Print where the local credential is (the file ewii-client is given
    /// with --adapter-credential-file); create it if missing, or replace it.
    #[command(name = "local-credential")]
    LocalCredential {
        /// Replace it with a new random one. Restart `serve` and give the
        /// client the new file; the old credential stops working.
        #[arg(long)]
        rotate: bool,
        /// Print the credential itself instead of its path (to hand to a
        /// secret manager; it then is on your terminal).
        #[arg(long)]
        show: bool,
        /// Machine-readable output: path, created, rotated (and the
        /// credential with --show).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DriverName {
    Sqlite,
    Postgres,
    Mysql,
    Mariadb,
    Mssql,
    Oracle,
    Mongodb,
}

impl DriverName {
    fn as_str(self) -> &'static str {
        match self {
            DriverName::Sqlite => "sqlite",
            DriverName::Postgres => "postgres",
            DriverName::Mysql => "mysql",
            DriverName::Mariadb => "mariadb",
            DriverName::Mssql => "mssql",
            DriverName::Oracle => "oracle",
            DriverName::Mongodb => "mongodb",
        }
    }
}

#[derive(Args)]
struct AddDatabase {
    /// Name in the catalog: lowercase letters, digits, '_' or '-'; tools are
    /// named NAME_query, NAME_list_tables…
    name: String,
    /// The database engine.
    #[arg(long, value_enum)]
    driver: DriverName,
    /// Connection URL, e.g. sqlite:///var/lib/app/shop.db or
    /// postgres://reader@db:5432/shop. Stored encrypted, never printed.
    #[arg(long)]
    url: String,
    /// Read the password from standard input (keeps it out of shell history).
    #[arg(long)]
    password_stdin: bool,
    /// Allow writes and DDL (default: read-only, enforced by the engine).
    #[arg(long)]
    read_write: bool,
    /// Most rows one call returns.
    #[arg(long, value_name = "N")]
    max_rows: Option<u32>,
    /// Most bytes of row data one call returns.
    #[arg(long, value_name = "N")]
    max_bytes: Option<u64>,
    /// Statement time limit in seconds (cancelled on the server when hit).
    #[arg(long, value_name = "SECS")]
    timeout_secs: Option<u64>,
    /// Save without connecting first.
    #[arg(long)]
    no_verify: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Loopback address for MCP streamable HTTP at /mcp (default from
    /// adapter.toml or EWII_ADAPTER_LISTEN, else 127.0.0.1:7878).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["unix", "stdio"])]
    listen: Option<SocketAddr>,
    /// Serve MCP streamable HTTP on a unix socket (mode 0600) instead.
    #[arg(long, value_name = "PATH", conflicts_with = "stdio")]
    unix: Option<PathBuf>,
    /// Serve MCP over stdin/stdout (for a local MCP client that launches us).
    #[arg(long)]
    stdio: bool,
    /// Allow a non-loopback --listen address (only on an internal network).
    #[arg(long)]
    allow_network: bool,
    /// Extra accepted Host header value (repeatable), e.g. a compose service name.
    #[arg(long, value_name = "HOST")]
    allowed_host: Vec<String>,
    /// A browser Origin to accept, matched exactly on scheme, host and port
    /// (repeatable), e.g. http://localhost:6274. None by default: requests
    /// with any other Origin get 403. Wildcards are refused.
    #[arg(long, visible_alias = "allow-origin", value_name = "ORIGIN")]
    allowed_origin: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    init_logging(serving);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EWII_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Logs go to stderr: stdout carries MCP in --stdio mode and data otherwise.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn home(global: &Global) -> AdapterHome {
    let dir = global.home.clone().unwrap_or_else(|| {
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("ewii-adapter")
    });
    AdapterHome::new(dir)
}

fn token(global: &Global) -> Result<SecretString> {
    let raw = if let Some(file) = &global.enrollment_token_file {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the enrolment token file {}", file.display()))?
    } else if let Ok(t) = std::env::var("EWII_ENROLLMENT_TOKEN") {
        t
    } else {
        bail!(
            "no enrolment token: set EWII_ENROLLMENT_TOKEN or pass --enrollment-token-file FILE \
             (the token the operator issued for this deployment)"
        );
    };
    let token = SecretString::new(raw.trim());
    if token.expose().is_empty() {
        bail!("the enrolment token is empty");
    }
    Ok(token)
}

/// A spinner on an interactive terminal, nothing otherwise.
fn spinner(message: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

fn finish(bar: Option<indicatif::ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

async fn run(cli: Cli) -> Result<()> {
    let home = home(&cli.global);
    match cli.command {
        Command::Init { workspace_id } => {
            let token = token(&cli.global)?;
            let bar = spinner("Deriving the store key (600 000 PBKDF2 rounds)…");
            let r = admin::init(&home, &workspace_id, &token);
            finish(bar);
            r?;
            println!(
                "Initialised adapter home {} for workspace '{workspace_id}'.\nNext: ewii-adapter \
                 add-database NAME --driver DRIVER --url URL",
                home.dir().display()
            );
        }
        Command::AddDatabase(a) => add_database(&home, &cli.global, a).await?,
        Command::ListDatabases { json } => {
            let (_, contents) = unlock(&home, &cli.global)?;
            if json {
                let list: Vec<_> = contents
                    .databases
                    .iter()
                    .map(|(name, e)| {
                        json!({
                            "name": name,
                            "driver": e.driver,
                            "read_only": e.read_only,
                            "url": mask_url(e.url.expose()),
                            "limits": e.limits,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if contents.databases.is_empty() {
                println!(
                    "No database attached. Add one with: ewii-adapter add-database NAME --driver DRIVER --url URL"
                );
            } else {
                println!(
                    "{:<20} {:<10} {:<10} {:>8} URL",
                    "NAME", "DRIVER", "MODE", "MAX_ROWS"
                );
                for (name, e) in &contents.databases {
                    println!(
                        "{:<20} {:<10} {:<10} {:>8} {}",
                        name,
                        e.driver,
                        if e.read_only {
                            "read-only"
                        } else {
                            "read-write"
                        },
                        e.limits.max_rows,
                        mask_url(e.url.expose())
                    );
                }
            }
        }
        Command::RemoveDatabase { name } => {
            let token = token(&cli.global)?;
            admin::remove_database(&home, &token, &name)?;
            println!(
                "Removed database '{name}'. A running adapter drops its tools within a second."
            );
        }
        Command::TestDatabase { name, json } => {
            let (_, contents) = unlock(&home, &cli.global)?;
            let entry = contents.databases.get(&name).ok_or_else(|| {
                anyhow!("no database named '{name}' is attached; `ewii-adapter list-databases` shows what is")
            })?;
            let bar = spinner(&format!("Connecting to '{name}'…"));
            let report = admin::check(&entry.to_config(&name)).await;
            finish(bar);
            let report = report.map_err(|e| anyhow!("database '{name}' failed its check: {e}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"name": name, "ok": true, "report": report})
                    )?
                );
            } else {
                println!(
                    "OK: '{name}' answers ({}); mode: {}",
                    report.server_version,
                    if entry.read_only {
                        if report.engine_read_only {
                            "read-only, enforced by the engine"
                        } else {
                            "read-only (engine not enforcing!)"
                        }
                    } else {
                        "read-write"
                    }
                );
                for w in &report.warnings {
                    println!("warning: {w}");
                }
            }
        }
        Command::Catalog { json } => {
            let (_, contents) = unlock(&home, &cli.global)?;
            let (tools, failed) = admin::catalog(&contents).await;
            for (name, e) in &failed {
                eprintln!("warning: database '{name}' cannot be opened and is left out: {e}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&tools)?);
            } else if tools.is_empty() {
                println!("No tools: attach a database with ewii-adapter add-database.");
            } else {
                println!("{:<40} {:<10} TITLE", "TOOL", "HINTS");
                for t in &tools {
                    let hints = if t.annotations.destructive_hint {
                        "writes"
                    } else {
                        "read-only"
                    };
                    println!("{:<40} {:<10} {}", t.name, hints, t.title);
                }
            }
        }
        Command::Serve(s) => serve_cmd(&home, &cli.global, s).await?,
        Command::LocalCredential { rotate, show, json } => {
            // The home must exist: a credential without a store serves nothing.
            home.load_config().map_err(AdminError::from)?;
            let (credential, created) = if rotate {
                (local_credential::rotate(&home)?, false)
            } else {
                local_credential::load_or_create(&home)?
            };
            let path = home.local_credential_path();
            if json {
                let mut out = json!({
                    "path": path,
                    "created": created,
                    "rotated": rotate,
                });
                if show {
                    out["credential"] = json!(credential.expose());
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if show {
                println!("{}", credential.expose());
            } else {
                println!("{}", path.display());
                if rotate || created {
                    eprintln!(
                        "{} the local credential. Give this file to ewii-client \
                         (--adapter-credential-file or EWII_ADAPTER_CREDENTIAL_FILE){}",
                        if rotate { "Replaced" } else { "Created" },
                        if rotate {
                            " and restart `ewii-adapter serve`: the old credential stops working"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

fn unlock(
    home: &AdapterHome,
    global: &Global,
) -> Result<(
    ewii_adapter::store::StoreKey,
    ewii_adapter::store::StoreContents,
)> {
    let token = token(global)?;
    let bar = spinner("Unlocking the credential store…");
    let r = admin::unlock(home, &token);
    finish(bar);
    Ok(r?)
}

async fn add_database(home: &AdapterHome, global: &Global, a: AddDatabase) -> Result<()> {
    let token = token(global)?;
    let config = home.load_config().map_err(AdminError::from)?;
    let url = if a.password_stdin {
        let mut pw = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut pw)
            .context("cannot read the password from standard input")?;
        let pw = pw.trim_end_matches(['\n', '\r']);
        if pw.is_empty() {
            bail!("--password-stdin was given but standard input was empty");
        }
        admin::url_with_password(&a.url, pw)?
    } else {
        SecretString::new(a.url.clone())
    };
    let defaults = config.defaults;
    let entry = DatabaseEntry {
        driver: a.driver.as_str().to_owned(),
        url,
        read_only: !a.read_write,
        limits: Limits {
            max_rows: a.max_rows.unwrap_or(defaults.max_rows),
            max_bytes: a.max_bytes.unwrap_or(defaults.max_bytes),
            timeout: a
                .timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.timeout),
        },
    };
    let bar = (!a.no_verify)
        .then(|| spinner(&format!("Checking '{}'…", a.name)))
        .flatten();
    let report = admin::add_database(home, &token, &a.name, entry.clone(), !a.no_verify).await;
    finish(bar);
    let report = report?;
    // A document database (MongoDB) offers the document tools, the others the SQL tools.
    let documents = entry.driver == "mongodb";
    let tools: Vec<String> = StandardTool::ALL
        .iter()
        .filter(|t| t.is_document_tool() == documents)
        .filter_map(|t| ToolName::new(&a.name, *t).ok().map(|n| n.to_string()))
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "name": a.name,
                "driver": entry.driver,
                "read_only": entry.read_only,
                "url": mask_url(entry.url.expose()),
                "verified": report.is_some(),
                "check": report,
            }))?
        );
    } else {
        println!(
            "Added database '{}' ({}, {}{}).",
            a.name,
            entry.driver,
            if entry.read_only {
                "read-only"
            } else {
                "read-write"
            },
            report
                .as_ref()
                .map(|r| format!(", {}", r.server_version))
                .unwrap_or_else(|| ", not verified".into())
        );
        if let Some(r) = &report {
            for w in &r.warnings {
                println!("warning: {w}");
            }
        }
        println!(
            "Tools: {} (a running adapter picks them up within a second)",
            tools.join(", ")
        );
    }
    Ok(())
}

async fn serve_cmd(home: &AdapterHome, global: &Global, s: ServeArgs) -> Result<()> {
    let config = home.load_config().map_err(AdminError::from)?;
    let allowed_origins = config
        .serve
        .allowed_origins
        .iter()
        .chain(&s.allowed_origin)
        .map(|o| ExactOrigin::parse(o))
        .collect::<Result<Vec<_>, _>>()
        .context("--allowed-origin or adapter.toml [serve] allowed_origins")?;
    // stdio needs none: only the process that launched us holds the pipes.
    let credential = if s.stdio {
        None
    } else {
        let (credential, created) = local_credential::load_or_create(home)?;
        let path = home.local_credential_path();
        if created {
            tracing::info!(
                path = %path.display(),
                "created the local credential (this home predates it): give this file to \
                 ewii-client with --adapter-credential-file"
            );
        } else {
            tracing::info!(path = %path.display(), "callers must present the local credential");
        }
        Some(credential)
    };
    let (key, contents) = unlock(home, global)?;
    let (adapter, change) = Adapter::new(contents.configs()).await;
    for (name, e) in &change.failed {
        tracing::warn!(database = %name, error = %e, "database left out of the catalog");
    }
    let tools = adapter.tools().await.len();
    let cancel = CancellationToken::new();
    let watcher = serve::watch_store(adapter.clone(), home.store_path(), key, cancel.clone());
    spawn_signal_handler(cancel.clone());
    let opts = HttpOptions {
        credential,
        allowed_hosts: config
            .serve
            .allowed_hosts
            .iter()
            .chain(&s.allowed_host)
            .cloned()
            .collect(),
        allowed_origins,
        ..HttpOptions::default()
    };
    let result = if s.stdio {
        tracing::info!(tools, "serving MCP on stdio");
        serve::serve_stdio(adapter.clone(), cancel.clone()).await
    } else if let Some(path) = &s.unix {
        let listener = serve::bind_unix(path)?;
        println!(
            "ewii-adapter: serving {tools} tools over MCP on unix:{}",
            path.display()
        );
        serve::serve_unix(adapter.clone(), listener, path, &opts, cancel.clone()).await
    } else {
        let addr = match s.listen {
            Some(a) => a,
            None => std::env::var("EWII_ADAPTER_LISTEN")
                .ok()
                .or(config.serve.listen.clone())
                .unwrap_or_else(|| "127.0.0.1:7878".into())
                .parse()
                .context(
                    "invalid listen address (EWII_ADAPTER_LISTEN or adapter.toml serve.listen)",
                )?,
        };
        serve::check_listen_addr(addr, s.allow_network)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        println!("ewii-adapter: serving {tools} tools over MCP at http://{bound}/mcp");
        serve::serve_tcp(adapter.clone(), listener, &opts, cancel.clone()).await
    };
    cancel.cancel();
    let _ = watcher.await;
    adapter.close().await;
    Ok(result?)
}

fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    cancel.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
}
