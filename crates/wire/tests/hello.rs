//! The hello helpers on real async streams: bounds, deadline, and nothing swallowed after the hello.

use std::time::Duration;

use shoal_wire::{
    ClientHello, DaemonHello, Error, HELLO_MAX_LEN, LineCodec, Role, read_client_hello,
    read_daemon_hello,
};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Framed, FramedRead};

fn daemon_hello() -> DaemonHello {
    DaemonHello {
        version: "0.1.0".into(),
        pid: 10,
        nonce: "n".into(),
        key: "k".into(),
        routed_frames: false,
        custody: false,
    }
}

/// Read a client hello from `input` (then EOF); render the outcome.
async fn check(input: &[u8], expected: &str) {
    let mut framed = FramedRead::new(input, LineCodec::new());
    let rendered = match read_client_hello(&mut framed, Duration::from_secs(2)).await {
        Ok(hello) => format!("{hello:?}"),
        Err(error) => format!("error: {error}"),
    };
    assert_eq!(rendered, expected);
}

#[tokio::test]
async fn bad_hellos_are_typed_errors() {
    check(
        b"",
        "error: receive the client hello: the peer closed the connection first",
    )
    .await;
    check(
        &vec![b'{'; HELLO_MAX_LEN + 2],
        "error: read the client hello: the line exceeds 4096 bytes",
    )
    .await;
    check(
        b"\xff\xfe\n",
        "error: read the client hello: read a message: the line is not valid UTF-8 (first bad byte at offset 0)",
    )
    .await;
    check(
        b"GET / HTTP/1.1\r\n",
        r#"error: read the client hello: expected a shoal client-hello line, got "GET / HTTP/1.1""#,
    )
    .await;
    check(
        br#"{"shoal":"client-hello","protocol":3}"#,
        "error: agree on a wire protocol: this side speaks protocol 1, the peer speaks 3; \
         stop the older one (`shoal stop`) or use matching shoal versions",
    )
    .await;
    // Blank lines before the hello are tolerated, like anywhere else on the wire.
    check(
        b"\r\n{\"shoal\":\"client-hello\",\"protocol\":1,\"role\":\"control\",\"pid\":2,\"label\":\"cli\"}\n",
        r#"ClientHello { role: Control, pid: 2, host_pid: None, label: "cli", env_differs: [], routed_frames: false, custody: false }"#,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out() {
    let (client, _server) = tokio::io::duplex(64);
    let mut framed = Framed::new(client, LineCodec::new());
    let error = read_daemon_hello(&mut framed, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::HelloTimeout { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "receive the daemon hello within 2s: the peer sent no complete line"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hello_without_newline_times_out() {
    let (client, mut server) = tokio::io::duplex(8192);
    server
        .write_all(br#"{"shoal":"daemon-hello""#)
        .await
        .unwrap();
    let mut framed = Framed::new(client, LineCodec::new());
    let error = read_daemon_hello(&mut framed, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::HelloTimeout { .. }), "{error}");
}

#[tokio::test]
async fn bytes_after_the_hello_are_kept_and_the_limit_restored() {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let big_result = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"text":"{}"}}}}"#,
        "x".repeat(100_000)
    );
    // One write: the hello and what follows arrive in the same read.
    let mut bytes = daemon_hello().to_line().as_bytes().to_vec();
    bytes.push(b'\n');
    bytes.extend_from_slice(big_result.as_bytes());
    bytes.push(b'\n');
    server.write_all(&bytes).await.unwrap();
    drop(server);

    let mut framed = Framed::new(client, LineCodec::new());
    let hello = read_daemon_hello(&mut framed, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(hello, daemon_hello());
    assert_eq!(
        framed.codec().max_line_len(),
        shoal_wire::DEFAULT_MAX_LINE_LEN
    );
    let next = std::future::poll_fn(|context| {
        futures_core::Stream::poll_next(std::pin::Pin::new(&mut framed), context)
    })
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(next.as_bytes(), big_result.as_bytes());
}

#[tokio::test]
async fn client_hello_round_trip() {
    let hello = ClientHello {
        role: Role::Session,
        pid: 1,
        host_pid: Some(2),
        label: "codex".into(),
        env_differs: Vec::new(),
        routed_frames: false,
        custody: false,
    };
    let mut bytes = hello.to_line().as_bytes().to_vec();
    bytes.push(b'\n');
    let mut framed = FramedRead::new(&bytes[..], LineCodec::new());
    assert_eq!(
        read_client_hello(&mut framed, Duration::from_secs(2))
            .await
            .unwrap(),
        hello
    );
}
