//! Bulk throughput through a tunnel (the app-layer records: AEAD, framing,
//! a signed receipt per message) against a raw quinn stream with the same
//! TLS and transport configuration, both on loopback in this process.
//!
//! Direction: client to hub, the way a large query result travels. The
//! tunnel case is one request the hub opens with [`HubTunnel::request`]; the
//! client answers with `total / message` reply messages of `message` bytes.
//! The raw case writes the same bytes on one bidirectional quinn stream
//! from the client and reads them at the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use ewii_quic::quinn;
use ewii_quic::{
    Accepted, ClientQuicConfig, Dialer, HubCertVerifier, HubListener, HubTunnel, InMemoryTrust,
    KeyMaterial, ListenerConfig, SvidVerifier, TrustBundle,
};
use ewii_test_pki::{Leaf, TestCa};
use ewii_wire::handshake::ClientConfig;
use ewii_wire::receipt::Reply;

const HUB_NAME: &str = "localhost";
const DEPLOYMENT: &str = "spiffe://example.org/ws/acme/dep/eu";
const STEP: Duration = Duration::from_secs(30);

/// One measured transfer.
pub struct Transfer {
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Transfer {
    /// MiB per second.
    pub fn mib_s(&self) -> f64 {
        self.bytes as f64 / (1u64 << 20) as f64 / self.elapsed.as_secs_f64()
    }
}

fn keys(leaf: &Leaf) -> KeyMaterial {
    KeyMaterial {
        chain: leaf.chain.clone(),
        key: leaf.key(),
    }
}

struct Pki {
    hub_ca: TestCa,
    workspace: TestCa,
    hub: Leaf,
    svid: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let hub_ca = TestCa::new("hub ca");
        let hub = hub_ca.server(HUB_NAME);
        let workspace = TestCa::new("workspace acme");
        let svid = workspace.svid(DEPLOYMENT);
        Pki {
            hub_ca,
            workspace,
            hub,
            svid,
        }
    }

    fn verifier(&self) -> Result<Arc<SvidVerifier>> {
        let bundle = TrustBundle::from_der(self.workspace.certificates())
            .map_err(|e| anyhow!("trust bundle: {e}"))?;
        let trust =
            Arc::new(InMemoryTrust::new().with_bundle("spiffe://example.org/ws/acme", bundle));
        Ok(Arc::new(SvidVerifier::new(trust)))
    }

    fn hub_verifier(&self) -> Result<HubCertVerifier> {
        Ok(HubCertVerifier::new(
            std::slice::from_ref(&self.hub_ca.cert),
            HUB_NAME,
        )?)
    }

    fn client_quic(&self) -> Result<ClientQuicConfig> {
        Ok(ClientQuicConfig::tunnel(
            &keys(&self.svid),
            &self.hub_verifier()?,
        )?)
    }
}

/// Through an established tunnel: `total` bytes in replies of `message` bytes.
pub async fn through_tunnel(total: u64, message: usize) -> Result<Transfer> {
    let pki = Pki::new();
    let config = ListenerConfig::new(keys(&pki.hub), vec![HUB_NAME.into()], pki.verifier()?);
    let listener = Arc::new(HubListener::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        config,
    )?);
    let addr = listener.local_addr();
    let accept = tokio::spawn({
        let listener = listener.clone();
        async move {
            while let Some(accepted) = listener.accept().await {
                if let Accepted::Tunnel(t) = accepted {
                    return Some(t);
                }
            }
            None
        }
    });
    let dialer = Dialer::bind_to(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let app = ClientConfig {
        credentials: keys(&pki.svid)
            .credentials()
            .map_err(|e| anyhow!("credentials: {e}"))?,
        identity: DEPLOYMENT.into(),
        hub_name: HUB_NAME.into(),
        hub_verifier: Arc::new(pki.hub_verifier()?),
    };
    let client = dialer.connect(&pki.client_quic()?, addr, app).await?;
    let hub: HubTunnel = tokio::time::timeout(STEP, accept)
        .await
        .context("no tunnel within 30 s")??
        .ok_or_else(|| anyhow!("the listener stopped"))?;

    let count = total.div_ceil(message as u64);
    let server = tokio::spawn(async move {
        let mut incoming = client
            .next_request()
            .await
            .ok_or_else(|| anyhow!("no request"))??;
        incoming.read().await?;
        let chunk = vec![b'x'; message];
        for _ in 0..count {
            incoming.reply(&chunk).await?;
        }
        incoming.finish().await?;
        // Keep the tunnel open until the hub has read everything.
        Ok::<_, anyhow::Error>(client)
    });
    let start = Instant::now();
    let mut replies = hub.request(None, br#"{"jsonrpc":"2.0","id":1}"#).await?;
    let mut bytes = 0u64;
    while let Some(reply) = replies.recv().await {
        match reply? {
            Reply::Message { message, .. } => bytes += message.len() as u64,
            Reply::Refused(r) => return Err(anyhow!("refused: {r:?}")),
        }
    }
    let elapsed = start.elapsed();
    let client = server.await??;
    client.close("done");
    hub.close("done");
    if bytes != count * message as u64 {
        return Err(anyhow!(
            "received {bytes} bytes, expected {}",
            count * message as u64
        ));
    }
    Ok(Transfer { bytes, elapsed })
}

/// One raw quinn stream with the tunnel's TLS and transport configuration
/// (the hub's server config, the client's tunnel config): `total` bytes
/// written in writes of `message` bytes.
pub async fn raw_quinn(total: u64, message: usize) -> Result<Transfer> {
    let pki = Pki::new();
    let server_config = ewii_quic::config::hub_config(&keys(&pki.hub), pki.verifier()?, false)?;
    let server = quinn::Endpoint::server(server_config, SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = server.local_addr()?;
    let reader = tokio::spawn(async move {
        let conn = server
            .accept()
            .await
            .ok_or_else(|| anyhow!("no connection"))?
            .await?;
        // As the hub does once a peer is authenticated.
        conn.set_receive_window(quinn::VarInt::from_u32(ewii_quic::config::RECEIVE_WINDOW));
        let (_send, mut recv) = conn.accept_bi().await?;
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        while let Some(n) = recv.read(&mut buf).await? {
            bytes += n as u64;
        }
        Ok::<_, anyhow::Error>((bytes, conn, server))
    });
    let client = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let conn = client
        .connect_with(pki.client_quic()?.into_quinn(), addr, HUB_NAME)?
        .await?;
    let count = total.div_ceil(message as u64);
    let chunk = vec![b'x'; message];
    let start = Instant::now();
    let (mut send, _recv) = conn.open_bi().await?;
    for _ in 0..count {
        send.write_all(&chunk).await?;
    }
    send.finish()?;
    let (bytes, server_conn, _server) = reader.await??;
    let elapsed = start.elapsed();
    server_conn.close(0u32.into(), b"done");
    conn.close(0u32.into(), b"done");
    Ok(Transfer { bytes, elapsed })
}

/// Both, `rounds` times each, alternating; the best of each (the least
/// disturbed by the other builds on the machine). Markdown.
pub async fn run(total: u64, message: usize, rounds: usize) -> Result<String> {
    let (mut tunnel, mut raw) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let t = through_tunnel(total, message).await?;
        let r = raw_quinn(total, message).await?;
        eprintln!(
            "round {round}: tunnel {:.0} MiB/s, raw quinn {:.0} MiB/s",
            t.mib_s(),
            r.mib_s()
        );
        tunnel.push(t.mib_s());
        raw.push(r.mib_s());
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (t, r) = (best(&tunnel), best(&raw));
    let verdict = if t >= 0.7 * r { "MET  " } else { "SHORT" };
    Ok(format!(
        "| path | best MiB/s | all rounds (MiB/s) |\n|---|---|---|\n\
         | raw quinn stream (same TLS and transport config) | {r:.0} | {} |\n\
         | tunnel request stream (app-layer records, receipt per message) | {t:.0} | {} |\n\n\
         {} MiB per transfer, {} KiB per message, client → hub on loopback.\n\n\
         ```\n{verdict} issue #14 target: tunnel bulk ≥ 70 % of raw quinn: {:.0} %\n```\n",
        fmt(&raw),
        fmt(&tunnel),
        total >> 20,
        message >> 10,
        100.0 * t / r
    ))
}
