//! The client's last hop (its forwarder, `ewii_client::forward`) against
//! the test adapter, a real `ewii-adapter` served in-process: raw JSON-RPC
//! messages relayed over MCP streamable HTTP on TCP and on a unix socket,
//! the server stream, the allow-list, and the failures an admin has to
//! understand. A scripted stand-in covers what the real adapter never does
//! (oversized replies, 405 on GET, exact headers).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use ewii_client::forward::{AdapterLink, AllowList, Destination, ForwardError, MAX_MESSAGE};
use ewii_conformance::adapter::{CREDENTIAL, TestAdapter, client_credential, link};
use ewii_conformance::raw_mcp::{
    REPLY_WAIT as STEP, call, initialize, initialized, relay, request,
};
use ewii_conformance::stand_in::{
    ScriptedAdapter, http_reply, http_reply_until_close, read_request,
};
use ewii_wire::refusal::RefusalCode;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The shop every adapter here serves.
async fn shop_adapter() -> TestAdapter {
    TestAdapter::sqlite("shop").await
}

/// Sends a raw `DELETE /mcp` for `session` to a TCP adapter, as if the
/// adapter had ended the session on its own (restart, idle expiry).
async fn delete_session_behind_the_links_back(destination: &Destination, session: &str) {
    let Destination::Tcp(addr) = destination else {
        panic!("TCP only")
    };
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "DELETE /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CREDENTIAL}\r\nMcp-Session-Id: {session}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(STEP, s.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 2"), "{response}");
}

/// The whole lifecycle a hub drives through one link.
async fn full_session(destination: Destination) {
    let link = link(destination);
    assert_eq!(link.bytes_out(), 0);
    assert_eq!(link.bytes_in(), 0);
    let (mut sent, mut received) = (0, 0);

    // initialize: the result answers our id and opens a session.
    let init = relay(&link, &initialize(1)).await.unwrap();
    assert_eq!(init.messages.len(), 1, "{:?}", init.messages);
    let reply = &init.messages[0];
    assert_eq!(reply["id"], 1, "{reply}");
    assert_eq!(reply["result"]["serverInfo"]["name"], "ewii-adapter");
    assert_eq!(reply["result"]["protocolVersion"], "2025-06-18");
    assert!(
        reply["result"]["capabilities"]["tools"].is_object(),
        "{reply}"
    );
    assert!(link.session_id().is_some(), "no Mcp-Session-Id captured");
    assert_eq!(link.protocol_version().as_deref(), Some("2025-06-18"));
    sent += init.sent;
    received += init.received;

    // A notification is accepted (202) and answered with nothing.
    let ack = relay(&link, &initialized()).await.unwrap();
    assert!(ack.messages.is_empty(), "{:?}", ack.messages);
    sent += ack.sent;

    let list = relay(&link, &request(2, "tools/list", json!({})))
        .await
        .unwrap();
    assert_eq!(list.messages.len(), 1);
    let mut names: Vec<&str> = list.messages[0]["result"]["tools"]
        .as_array()
        .expect("a tools array")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "shop_describe_table",
            "shop_explain",
            "shop_list_schemas",
            "shop_list_tables",
            "shop_query"
        ]
    );
    sent += list.sent;
    received += list.received;

    let query = request(
        3,
        "tools/call",
        json!({"name": "shop_query", "arguments": {
            "sql": "SELECT id, name FROM customers WHERE country = ? AND id > ? ORDER BY id",
            "params": ["DE", 4]}}),
    );
    let rows = relay(&link, &query).await.unwrap();
    assert_eq!(rows.messages.len(), 1);
    let reply = &rows.messages[0];
    assert_eq!(reply["id"], 3);
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    assert_eq!(
        reply["result"]["structuredContent"]["rows"],
        json!([[6, "Customer 6"], [8, "Customer 8"], [10, "Customer 10"]])
    );
    sent += rows.sent;
    received += rows.received;

    // The counters saw at least the messages (SSE framing comes on top).
    assert!(
        link.bytes_out() >= sent as u64,
        "{} < {sent}",
        link.bytes_out()
    );
    assert!(
        link.bytes_in() >= received as u64,
        "{} < {received}",
        link.bytes_in()
    );

    link.close().await;
    assert_eq!(link.session_id(), None);
    assert_eq!(link.protocol_version(), None);
}

#[tokio::test]
async fn relays_a_session_over_tcp() {
    let adapter = shop_adapter().await;
    full_session(adapter.tcp.clone()).await;
}

#[tokio::test]
async fn relays_a_session_over_a_unix_socket() {
    let adapter = shop_adapter().await;
    full_session(adapter.unix.clone()).await;
}

#[tokio::test]
async fn listen_hears_tools_list_changed_and_ends_with_the_session() {
    let mut adapter = shop_adapter().await;
    let link = link(adapter.tcp.clone());
    assert!(matches!(link.listen().await, Err(ForwardError::NoSession)));
    call(&link, &initialize(1)).await;
    relay(&link, &initialized()).await.unwrap();
    // A request after `initialized` makes sure the adapter processed the
    // notification (it registers the client for change notices then).
    call(&link, &request(2, "tools/list", json!({}))).await;

    let mut server = link.listen().await.unwrap();
    adapter.attach_sqlite("sales").await;
    let notice = tokio::time::timeout(STEP, server.recv())
        .await
        .expect("notifications/tools/list_changed within 10 s")
        .expect("the server stream is open");
    let notice: Value = serde_json::from_slice(&notice).unwrap();
    assert_eq!(
        notice["method"], "notifications/tools/list_changed",
        "{notice}"
    );
    assert!(notice.get("id").is_none(), "{notice}");

    let list = call(&link, &request(3, "tools/list", json!({}))).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"sales_query"), "{names:?}");

    // Closing the session at the adapter ends its server stream.
    link.close().await;
    let end = tokio::time::timeout(STEP, async { while server.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "the server stream outlived the session");
    assert!(matches!(link.listen().await, Err(ForwardError::NoSession)));
}

#[tokio::test]
async fn a_new_initialize_starts_a_new_session() {
    let adapter = shop_adapter().await;
    let link = link(adapter.unix.clone());
    call(&link, &initialize(1)).await;
    relay(&link, &initialized()).await.unwrap();
    let first = link.session_id().unwrap();

    // The hub's client starts over without a reset: the link must not send
    // the old session's headers with the new handshake.
    call(&link, &initialize(7)).await;
    let second = link.session_id().unwrap();
    assert_ne!(first, second);
    relay(&link, &initialized()).await.unwrap();
    call(&link, &request(8, "tools/list", json!({}))).await;

    // `reset` forgets without telling the adapter: requests then carry no
    // session and the adapter asks for one.
    link.reset();
    assert_eq!(link.session_id(), None);
    match relay(&link, &request(9, "tools/list", json!({}))).await {
        Err(ForwardError::Status {
            status,
            body_snippet,
        }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                body_snippet.contains("Session ID is required"),
                "{body_snippet}"
            );
        }
        other => panic!("expected Status 400, got {:?}", other.map(|r| r.messages)),
    }
}

async fn assert_no_connection(listener: &tokio::net::TcpListener) {
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "a refused destination was dialled");
}

#[tokio::test]
async fn the_allow_list_refuses_before_dialling() {
    let adapter = shop_adapter().await;
    let allow = AllowList::new(vec![adapter.tcp.clone()]).unwrap();

    // A refused destination that would accept a connection if dialled.
    let decoy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decoy_destination = Destination::Tcp(decoy.local_addr().unwrap());
    let unix_decoy_path = adapter.dir.path().join("decoy.sock");
    let unix_decoy = tokio::net::UnixListener::bind(&unix_decoy_path).unwrap();

    for refused in [
        "tcp:127.0.0.1:1".parse::<Destination>().unwrap(),
        decoy_destination.clone(),
        Destination::Unix(unix_decoy_path.clone()),
        // The same socket the adapter serves, but not the listed form.
        adapter.unix.clone(),
    ] {
        let e = allow.check(&refused).unwrap_err();
        let text = e.to_string();
        match &e {
            ForwardError::NotAllowed {
                destination,
                allowed,
            } => {
                assert_eq!(destination, &refused);
                assert_eq!(allowed, &vec![adapter.tcp.clone()]);
            }
            other => panic!("expected NotAllowed, got {other:?}"),
        }
        assert!(
            text.contains(&refused.to_string()) && text.contains(&adapter.tcp.to_string()),
            "{text}"
        );
        assert!(matches!(
            allow.link(refused, Some(client_credential())),
            Err(ForwardError::NotAllowed { .. })
        ));
    }
    assert_no_connection(&decoy).await;
    let unix_accepted = tokio::time::timeout(Duration::from_millis(300), unix_decoy.accept()).await;
    assert!(
        unix_accepted.is_err(),
        "a refused unix destination was dialled"
    );

    // The listed destination goes through.
    let link = allow
        .link(adapter.tcp.clone(), Some(client_credential()))
        .unwrap();
    call(&link, &initialize(1)).await;
    assert_eq!(allow.default_destination(), &adapter.tcp);
}

#[tokio::test]
async fn nothing_listening_is_unreachable_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let free = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    for destination in [
        Destination::Tcp(free),
        Destination::Unix(dir.path().join("no-adapter.sock")),
    ] {
        let link = link(destination.clone());
        let e = link
            .send(Bytes::from(serde_json::to_vec(&initialize(1)).unwrap()))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(&e, ForwardError::Unreachable { destination: d, .. } if d == &destination),
            "{e:?}"
        );
        assert!(
            text.contains(&destination.to_string()) && text.contains("ewii-adapter serve"),
            "{text}"
        );
        assert_eq!(link.bytes_out(), 0);
    }
}

#[tokio::test]
async fn adapter_http_errors_become_status() {
    let adapter = shop_adapter().await;
    let link = link(adapter.tcp.clone());

    // Not JSON at all: relayed as is, refused by the adapter.
    let e = link
        .send(Bytes::from_static(b"{not json"))
        .await
        .unwrap_err();
    match e {
        ForwardError::Status {
            status,
            body_snippet,
        } => {
            assert!(status.is_client_error(), "{status}");
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert!(body_snippet.contains("deserialize"), "{body_snippet}");
            assert!(body_snippet.chars().count() <= 201);
        }
        other => panic!("expected Status, got {other:?}"),
    }

    // The adapter forgot the session (restart, expiry): its 404 is told
    // apart, so the hub knows to start a new session.
    call(&link, &initialize(1)).await;
    relay(&link, &initialized()).await.unwrap();
    let session = link.session_id().unwrap();
    delete_session_behind_the_links_back(&adapter.tcp, &session).await;
    match relay(&link, &request(2, "tools/list", json!({}))).await {
        Err(e @ ForwardError::SessionLost) => {
            // The hub sees the code, and matches on nothing else.
            let refused = e.refused();
            assert_eq!(refused.code, RefusalCode::AdapterSessionLost, "{e}");
            assert!(refused.message.contains("start a new session"), "{e}");
        }
        other => panic!("expected SessionLost, got {:?}", other.map(|r| r.messages)),
    }
}

#[tokio::test]
async fn headers_follow_the_transport_rules() {
    let init_result = br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"fake","version":"0"}}}"#;
    let not_found =
        br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"Method not found"}}"#;
    let fake = ScriptedAdapter::start(vec![
        http_reply(
            "200 OK",
            &[
                ("Content-Type", "application/json"),
                ("Mcp-Session-Id", "s-1"),
            ],
            init_result,
        ),
        http_reply("202 Accepted", &[], b""),
        http_reply("405 Method Not Allowed", &[("Allow", "POST")], b""),
        http_reply(
            "404 Not Found",
            &[("Content-Type", "application/json")],
            not_found,
        ),
        http_reply("200 OK", &[], b""),
    ])
    .await;
    let Destination::Tcp(addr) = fake.destination else {
        unreachable!()
    };
    let link = link(fake.destination.clone());

    let reply = call(&link, &initialize(1)).await;
    assert_eq!(reply["result"]["serverInfo"]["name"], "fake");
    assert_eq!(link.session_id().as_deref(), Some("s-1"));
    relay(&link, &initialized()).await.unwrap();
    assert!(matches!(
        link.listen().await,
        Err(ForwardError::NoServerStream)
    ));
    // A 2026-07-28 request names its version in `_meta`; the adapter
    // answers an unknown method with HTTP 404 and an in-band JSON-RPC error,
    // which is relayed rather than turned into a transport error.
    let modern = request(
        5,
        "tools/call",
        json!({"name": "shop_query", "arguments": {},
               "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
    );
    let reply = call(&link, &modern).await;
    assert_eq!(reply["error"]["code"], -32601);
    link.close().await;

    let seen = fake.seen();
    assert_eq!(seen.len(), 5);
    let host = addr.to_string();
    for r in &seen {
        assert_eq!(
            r.header("host").as_deref(),
            Some(host.as_str()),
            "{}",
            r.head
        );
    }

    let init = &seen[0];
    assert_eq!(init.request_line(), "POST /mcp HTTP/1.1");
    assert_eq!(
        init.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        init.header("accept").as_deref(),
        Some("application/json, text/event-stream")
    );
    assert_eq!(init.header("mcp-session-id"), None);
    assert_eq!(init.header("mcp-protocol-version"), None);
    assert_eq!(init.body, serde_json::to_vec(&initialize(1)).unwrap());

    let notification = &seen[1];
    assert_eq!(
        notification.header("mcp-session-id").as_deref(),
        Some("s-1")
    );
    assert_eq!(
        notification.header("mcp-protocol-version").as_deref(),
        Some("2025-06-18")
    );
    assert_eq!(notification.header("mcp-method"), None);

    let get = &seen[2];
    assert_eq!(get.request_line(), "GET /mcp HTTP/1.1");
    assert_eq!(get.header("accept").as_deref(), Some("text/event-stream"));
    assert_eq!(get.header("mcp-session-id").as_deref(), Some("s-1"));

    let call = &seen[3];
    assert_eq!(
        call.header("mcp-protocol-version").as_deref(),
        Some("2026-07-28")
    );
    assert_eq!(call.header("mcp-method").as_deref(), Some("tools/call"));
    assert_eq!(call.header("mcp-name").as_deref(), Some("shop_query"));

    let delete = &seen[4];
    assert_eq!(delete.request_line(), "DELETE /mcp HTTP/1.1");
    assert_eq!(delete.header("mcp-session-id").as_deref(), Some("s-1"));

    // Every request (POST, GET, DELETE) presents the credential, exactly once.
    let bearer = format!("Bearer {CREDENTIAL}");
    for r in &seen {
        let authorizations: Vec<&str> = r
            .head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .collect();
        assert_eq!(authorizations.len(), 1, "{}", r.head);
        assert_eq!(r.header("authorization").as_deref(), Some(bearer.as_str()));
    }
}

#[tokio::test]
async fn an_adapter_with_another_credential_refuses_the_client_clearly() {
    use ewii_adapter::local_credential::LocalCredential;
    use ewii_client::forward::AdapterCredential;
    let theirs = LocalCredential::generate().unwrap();
    let adapter = TestAdapter::sqlite_with("shop", Some(theirs.clone())).await;
    let init = Bytes::from(serde_json::to_vec(&initialize(1)).unwrap());

    for destination in [adapter.tcp.clone(), adapter.unix.clone()] {
        // Our credential is not theirs.
        let e = link(destination.clone())
            .send(init.clone())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(&e, ForwardError::Unauthorized { destination: d, credential_sent: true } if d == &destination),
            "{e:?}"
        );
        assert_eq!(e.refusal_code(), RefusalCode::AdapterUnauthorized);
        for needle in [
            "refused this client's local credential",
            "--adapter-credential-file",
            "ewii-adapter local-credential",
            "not run",
        ] {
            assert!(text.contains(needle), "'{needle}' missing in {text}");
        }
        assert!(!text.contains(CREDENTIAL) && !text.contains(theirs.expose()));

        // No credential at all.
        let e = AdapterLink::new(destination.clone(), None)
            .send(init.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &e,
                ForwardError::Unauthorized {
                    credential_sent: false,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("this client has none"), "{e}");

        // Theirs works: the refusals were about the credential.
        let right = AdapterLink::new(
            destination,
            Some(AdapterCredential::new(theirs.expose()).unwrap()),
        );
        let reply = call(&right, &initialize(1)).await;
        assert_eq!(reply["result"]["serverInfo"]["name"], "ewii-adapter");
        right.close().await;
    }

    // An adapter started without a credential serves no one.
    let closed = TestAdapter::sqlite_with("shop", None).await;
    let e = link(closed.tcp.clone()).send(init).await.unwrap_err();
    assert!(matches!(e, ForwardError::Unauthorized { .. }), "{e:?}");
}

#[test]
fn adapter_credentials_are_checked_and_never_printed() {
    use ewii_client::forward::AdapterCredential;
    let c = AdapterCredential::new(&format!("  {CREDENTIAL}\n")).unwrap();
    assert!(!format!("{c:?}").contains(CREDENTIAL));
    for bad in ["", "   ", "two words", "tab\there", "ünïcode"] {
        assert!(
            matches!(
                AdapterCredential::new(bad),
                Err(ForwardError::InvalidCredential(_))
            ),
            "{bad:?} accepted"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("local-credential");
    let e = AdapterCredential::from_file(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("ewii-adapter local-credential"),
        "{e}"
    );
    std::fs::write(&missing, "not a token at all").unwrap();
    let e = AdapterCredential::from_file(&missing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not hold an adapter credential"), "{e}");
}

#[tokio::test]
async fn oversized_messages_stop_the_stream() {
    let huge = vec![b'a'; MAX_MESSAGE + 1];
    let mut sse =
        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: ".to_vec();
    sse.extend_from_slice(&huge);
    sse.extend_from_slice(b"\n\ndata: {\"never\":\"delivered\"}\n\n");
    let mut json_body = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"".to_vec();
    json_body.extend_from_slice(&huge);
    json_body.extend_from_slice(b"\"}");
    let fake = ScriptedAdapter::start(vec![
        http_reply_until_close("text/event-stream", &sse),
        // Streamed without a length: caught while reading.
        http_reply_until_close("application/json", &json_body),
        // Declared too long: refused before reading.
        http_reply(
            "200 OK",
            &[("Content-Type", "application/json")],
            &json_body,
        ),
    ])
    .await;
    let link = link(fake.destination.clone());
    let ping = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);

    let mut rx = link.send(ping.clone()).await.unwrap();
    let first = tokio::time::timeout(STEP, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&first.unwrap()).unwrap()["method"],
        "notifications/progress"
    );
    let second = tokio::time::timeout(STEP, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(second, Err(ForwardError::TooLarge { limit }) if limit == MAX_MESSAGE));
    assert!(
        tokio::time::timeout(STEP, rx.recv())
            .await
            .unwrap()
            .is_none()
    );

    let mut rx = link.send(ping.clone()).await.unwrap();
    let only = tokio::time::timeout(STEP, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(only, Err(ForwardError::TooLarge { .. })));
    assert!(
        tokio::time::timeout(STEP, rx.recv())
            .await
            .unwrap()
            .is_none()
    );

    assert!(matches!(
        link.send(ping).await,
        Err(ForwardError::TooLarge { .. })
    ));

    // Outgoing, too: refused before anything is dialled.
    let bytes_out = link.bytes_out();
    assert!(matches!(
        link.send(Bytes::from(vec![b' '; MAX_MESSAGE + 1])).await,
        Err(ForwardError::TooLarge { .. })
    ));
    assert_eq!(link.bytes_out(), bytes_out);
}

#[tokio::test]
async fn dropping_the_receiver_hangs_up_on_the_adapter() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = link(Destination::Tcp(listener.local_addr().unwrap()));
    let adapter = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_request(&mut s).await;
        // An open stream that only ever carries keep-alive comments.
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: ping\n\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        // The client hanging up is what ends this read.
        s.read(&mut buf).await.unwrap_or(0)
    });
    let rx = link
        .send(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen"}"#,
        ))
        .await
        .unwrap();
    drop(rx);
    let read = tokio::time::timeout(STEP, adapter)
        .await
        .expect("the connection closes once nobody reads the stream")
        .unwrap();
    assert_eq!(read, 0);
}
