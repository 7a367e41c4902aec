//! `ewii demo --once` from a user's point of view: the real `ewii` binary,
//! the whole kit in one process, the agent's session going through the hub
//! and the tunnel.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use ewii_conformance::process::{Launch, Stream};

/// How long the demo may take, start to finish.
const DEMO: Duration = Duration::from_secs(120);

#[tokio::test]
async fn demo_once_prints_tools_and_a_query_result_and_exits_zero() {
    // A private home and no inherited `EWII_*` setting (`EWII_LOG` above all).
    let mut demo = Launch::binary("ewii")
        .unwrap()
        .args(["demo", "--once"])
        .spawn()
        .unwrap();
    let status = demo.wait_for_exit(DEMO).await.unwrap();
    let stdout = demo.text(Stream::Stdout);
    let stderr = demo.text(Stream::Stderr);
    assert!(status.success(), "demo failed:\n{stdout}\n{stderr}");
    // Enrolment and the tunnel, before the agent.
    assert!(
        stdout.contains("hub: workspace demo, deployment eu, agent assistant"),
        "{stdout}"
    );
    assert!(
        stdout.contains("client: enrolled as spiffe://ewii.local/ws/demo/dep/eu (SVID serial"),
        "{stdout}"
    );
    assert!(stdout.contains("client: tunnel up"), "{stdout}");
    // The adapter is closed to everyone but its client.
    assert!(
        stdout.contains("adapter: serves only callers presenting its local credential"),
        "{stdout}"
    );
    // The agent talks to the hub, which names tools by deployment.
    assert!(stdout.contains("agent ← ewii-hub"), "{stdout}");
    assert!(stdout.contains("agent ← 5 tools"), "{stdout}");
    for tool in [
        "eu_shop_query",
        "eu_shop_list_tables",
        "eu_shop_describe_table",
        "eu_shop_explain",
    ] {
        assert!(stdout.contains(tool), "{tool} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("agent → tools/call eu_shop_query"),
        "{stdout}"
    );
    // The deterministic sample data gives the same top country every run.
    assert!(stdout.contains("agent ← 5 rows"), "{stdout}");
    assert!(
        stdout.contains("country | orders | revenue_eur"),
        "{stdout}"
    );
    assert!(stdout.contains("SE      | 61"), "{stdout}");
    // The call went through the client, which logged it.
    assert!(stdout.contains("client: forwarded"), "{stdout}");
    // No credential in --once mode, and a quiet, clean shutdown.
    assert!(!stdout.contains("ewii_agent_"), "{stdout}");
    assert!(!stdout.contains("ewii_local_"), "{stdout}");
    assert!(!stdout.contains("Bearer"), "{stdout}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    assert!(!stderr.contains("tunnel down"), "{stderr}");
}
