//! `ewii demo --once` from a user's point of view.
#![allow(clippy::unwrap_used, missing_docs)]

#[test]
fn demo_once_prints_tools_and_a_query_result_and_exits_zero() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ewii"))
        .args(["demo", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("agent ← 5 tools"), "{stdout}");
    for tool in [
        "shop_query",
        "shop_list_tables",
        "shop_describe_table",
        "shop_explain",
    ] {
        assert!(stdout.contains(tool), "{tool} missing:\n{stdout}");
    }
    // The deterministic sample data gives the same top country every run.
    assert!(stdout.contains("agent ← 5 rows"), "{stdout}");
    assert!(
        stdout.contains("country | orders | revenue_eur"),
        "{stdout}"
    );
    assert!(stdout.contains("SE      | 61"), "{stdout}");
}
