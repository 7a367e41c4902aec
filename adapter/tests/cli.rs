//! The `ewii-adapter` CLI as an admin uses it: init, add/list/remove/test,
//! catalog, failure paths, and the credential store's guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{TOKEN, TestHome};
use serde_json::Value;

#[tokio::test]
async fn admin_workflow_and_masked_listing() {
    let t = TestHome::new();
    t.init();
    let shop = t.attach_shop("shop").await;
    // A secret in the URL (query parameter) must never be shown or stored in clear.
    let url = format!("sqlite://{}", shop.display());
    t.ok(&[
        "add-database",
        "other",
        "--driver",
        "sqlite",
        "--url",
        &url,
        "--read-write",
        "--max-rows",
        "5",
    ]);
    let secret_url = format!("sqlite://{}?secret=TopSecretValue123", shop.display());
    t.ok(&[
        "add-database",
        "masked",
        "--driver",
        "sqlite",
        "--url",
        &secret_url,
        "--no-verify",
    ]);

    let listing = t.ok(&["list-databases"]);
    assert!(
        listing.contains("shop") && listing.contains("other"),
        "{listing}"
    );
    assert!(
        !listing.contains("TopSecretValue123"),
        "secret printed: {listing}"
    );
    assert!(listing.contains("secret=***"), "{listing}");

    let json: Value = serde_json::from_str(&t.ok(&["list-databases", "--json"])).unwrap();
    let other = json
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "other")
        .unwrap();
    assert_eq!(other["read_only"], false);
    assert_eq!(other["limits"]["max_rows"], 5);
    assert!(!other["url"].as_str().unwrap().contains("TopSecretValue123"));

    let raw = std::fs::read(t.store()).unwrap();
    let text = String::from_utf8_lossy(&raw);
    for plain in ["TopSecretValue123", "shop.db", "sqlite://"] {
        assert!(
            !text.contains(plain),
            "credential store holds '{plain}' in clear"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(t.store()).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // `masked` has a URL the driver cannot open: it is left out, with a warning.
    let out = t.run(&["catalog", "--json"]);
    assert!(out.status.success());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("database 'masked' cannot be opened"),
        "{warning}"
    );
    assert!(
        !warning.contains("TopSecretValue123"),
        "secret in a warning: {warning}"
    );
    let catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = catalog
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"shop_query") && names.contains(&"other_query"),
        "{names:?}"
    );
    let other_query = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "other_query")
        .unwrap();
    assert_eq!(
        other_query["annotations"]["destructiveHint"], true,
        "read-write query must be marked destructive"
    );

    let tested = t.ok(&["test-database", "shop"]);
    assert!(
        tested.contains("read-only, enforced by the engine"),
        "{tested}"
    );

    t.ok(&["remove-database", "other"]);
    let listing = t.ok(&["list-databases"]);
    assert!(
        !listing.contains("other") && listing.contains("masked"),
        "{listing}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let t = TestHome::new();
    // Before init.
    let err = t.fails(&["list-databases"]);
    assert!(err.contains("ewii-adapter init"), "{err}");
    t.init();
    let err = t.fails(&["init", "--workspace-id", "ws-test"]);
    assert!(err.contains("already exists"), "{err}");
    t.attach_shop("shop").await;
    let before = std::fs::read(t.store()).unwrap();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "add-database",
                "shop",
                "--driver",
                "sqlite",
                "--url",
                "sqlite:///x.db",
                "--no-verify",
            ],
            "already attached",
        ),
        (
            vec![
                "add-database",
                "Bad Name",
                "--driver",
                "sqlite",
                "--url",
                "sqlite:///x.db",
            ],
            "invalid database name",
        ),
        (
            vec![
                "add-database",
                "missing",
                "--driver",
                "sqlite",
                "--url",
                "sqlite:///nonexistent/x.db",
            ],
            "Nothing was saved",
        ),
        (
            vec![
                "add-database",
                "mem",
                "--driver",
                "sqlite",
                "--url",
                "sqlite::memory:",
            ],
            "in-memory",
        ),
        (vec!["remove-database", "nope"], "no database named 'nope'"),
        (vec!["test-database", "nope"], "no database named 'nope'"),
    ];
    for (args, want) in cases {
        let err = t.fails(&args);
        assert!(
            err.contains(want),
            "`{}`: expected '{want}' in: {err}",
            args.join(" ")
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "error is not one line: {err}"
        );
    }
    let err = t.fails(&["add-database", "x", "--driver", "nosuch", "--url", "x"]);
    assert!(err.contains("possible values"), "{err}");

    // A wrong token: one clear line, store untouched.
    let out = t
        .command()
        .env("EWII_ENROLLMENT_TOKEN", "not-the-right-token-at-all")
        .args(["list-databases"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not open the credential store"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = t
        .command()
        .env_remove("EWII_ENROLLMENT_TOKEN")
        .args(["list-databases"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("EWII_ENROLLMENT_TOKEN"));

    assert_eq!(
        std::fs::read(t.store()).unwrap(),
        before,
        "a refused command changed the store"
    );
}

#[tokio::test]
async fn token_file_and_password_stdin() {
    let t = TestHome::new();
    let token_file = t.dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let out = t
        .command()
        .env_remove("EWII_ENROLLMENT_TOKEN")
        .args([
            "--enrollment-token-file",
            token_file.to_str().unwrap(),
            "init",
            "--workspace-id",
            "ws-test",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The file-read token and the env token are the same token.
    t.ok(&["list-databases"]);

    // --password-stdin needs a user in the URL; the password never shows.
    let mut child = t
        .command()
        .args([
            "add-database",
            "x",
            "--driver",
            "sqlite",
            "--url",
            "sqlite:///x.db",
            "--password-stdin",
            "--no-verify",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"pw-from-stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a user name"));
}

/// kill -9 at random moments of `add-database` never tears the store: it
/// always opens, holding the old or the new content.
#[tokio::test]
async fn kill_9_during_writes_never_tears_the_store() {
    let t = TestHome::new();
    t.init();
    let shop = t.dir.path().join("shop.db");
    common::make_shop_db(&shop).await;
    let url = format!("sqlite://{}", shop.display());
    let mut committed = 0usize;
    for i in 0..16u64 {
        let name = format!("db{i}");
        let mut child = t
            .command()
            .args(["add-database", &name, "--driver", "sqlite", "--url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the whole life of the process (key
        // derivation, check, encryption, write, rename).
        tokio::time::sleep(Duration::from_millis(10 + i * 17 % 250)).await;
        let _ = child.kill();
        let _ = child.wait();
        let listed: Value = serde_json::from_str(&t.ok(&["list-databases", "--json"]))
            .expect("store must always open after kill -9");
        let n = listed.as_array().unwrap().len();
        assert!(
            n == committed || n == committed + 1,
            "store went from {committed} to {n} databases"
        );
        committed = n;
    }
    // Leftover temporaries are cleaned by the next write and never read.
    t.ok(&["add-database", "final", "--driver", "sqlite", "--url", &url]);
    let leftovers: Vec<_> = std::fs::read_dir(t.home())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn non_loopback_listen_is_refused_without_allow_network() {
    let t = TestHome::new();
    t.init();
    let err = t.fails(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(
        err.contains("loopback only") && err.contains("--allow-network"),
        "{err}"
    );
}

#[test]
fn help_teaches_the_first_run() {
    let t = TestHome::new();
    let help = t.ok(&["--help"]);
    assert!(
        help.contains("Typical first run") && help.contains("add-database"),
        "{help}"
    );
    let help = t.ok(&["add-database", "--help"]);
    assert!(
        help.contains("--password-stdin") && help.contains("--read-write"),
        "{help}"
    );
}

/// Against the real PostgreSQL and MariaDB servers of
/// `scripts/test-databases.sh`: connection problems are one line that says
/// what to do, and a failed check saves nothing.
#[tokio::test]
async fn real_server_connection_errors_are_one_line_and_save_nothing() {
    let servers = [
        (
            "EWII_TEST_POSTGRES_URL",
            "postgres",
            "postgres://ewii:ewii@",
            "check the user name and password",
            "cannot reach a PostgreSQL server",
        ),
        (
            "EWII_TEST_MARIADB_URL",
            "mariadb",
            "mysql://ewii:ewii@",
            "password",
            "127.0.0.1:1",
        ),
    ];
    let t = TestHome::new();
    t.init();
    let mut tested = 0;
    for (var, driver, prefix, wrong_pw_hint, unreachable_hint) in servers {
        let Ok(url) = std::env::var(var) else {
            assert!(std::env::var_os("CI").is_none(), "{var} must be set in CI");
            println!("SKIPPED: {var} is not set");
            continue;
        };
        tested += 1;
        let before = std::fs::read(t.store()).unwrap();
        let wrong = url.replacen(prefix, &prefix.replace("ewii:ewii", "ewii:wrong-pw-123"), 1);
        let scheme = prefix.split("://").next().unwrap();
        let unreachable = format!("{scheme}://ewii:ewii@127.0.0.1:1/x");
        for (bad, want) in [
            (wrong.as_str(), wrong_pw_hint),
            (unreachable.as_str(), unreachable_hint),
        ] {
            let err = t.fails(&["add-database", "bad", "--driver", driver, "--url", bad]);
            assert!(
                err.contains(want) && err.contains("Nothing was saved"),
                "{driver}: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(!err.contains("wrong-pw-123"), "password in error: {err}");
        }
        assert_eq!(
            std::fs::read(t.store()).unwrap(),
            before,
            "a failed check saved something"
        );

        // --no-verify saves; test-database then reports the problem in one line.
        t.ok(&[
            "add-database",
            "later",
            "--driver",
            driver,
            "--url",
            &wrong,
            "--no-verify",
        ]);
        let err = t.fails(&["test-database", "later"]);
        assert!(
            err.contains(wrong_pw_hint) && err.trim().lines().count() == 1,
            "{err}"
        );
        t.ok(&["remove-database", "later"]);

        // The real thing works, and warns that the test account can write.
        t.ok(&["add-database", driver, "--driver", driver, "--url", &url]);
        let out = t.ok(&["test-database", driver]);
        assert!(out.contains("enforced by the engine"), "{out}");
        assert!(
            out.contains("warning:")
                && (out.contains("can write") || out.contains("write privileges")),
            "{out}"
        );
    }
    println!("tested {tested} server(s)");
}
