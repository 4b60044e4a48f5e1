//! Routing rules whose interleavings a real server makes hard to reach on demand. Every rule is
//! also checked end to end against the real daemon and fixture server in `tests/routing.rs`.

use std::path::Path;

use shoal_wire::Line;

use super::{Outputs, Router};
use crate::outbox::Outgoing;

fn line(text: &str) -> Result<Line, shoal_wire::LineError> {
    Line::new(text.as_bytes().to_vec())
}

fn text(message: &Outgoing) -> String {
    let line = match message {
        Outgoing::Line(line) => line.clone(),
        Outgoing::Rewritten(rewritten) => rewritten.to_line(),
    };
    String::from_utf8(line.as_bytes().to_vec()).expect("UTF-8")
}

/// A router whose backend is initialized (the initialize request got id 1).
fn ready_router() -> Router {
    let mut router = Router::new(Path::new("/project"), "0.0.0-test", "test");
    let mut out = Outputs::default();
    router.backend_started(&mut out);
    router.backend_line(
        line(r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"resources":{"subscribe":true}},"serverInfo":{"name":"b","version":"1"}}}"#),
        &mut out,
    );
    router
}

/// The first subscriber leaves while its subscribe is at the backend, and another client waits on
/// that subscribe: the backend is not told to cancel it, and its answer reaches the waiter.
#[test]
fn a_pending_first_subscribe_outlives_its_client() {
    let mut router = ready_router();
    router.client_joined(1);
    router.client_joined(2);
    let subscribe = |id: u32| {
        line(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"resources/subscribe","params":{{"uri":"file:///a"}}}}"#
        ))
    };
    let mut out = Outputs::default();
    router.client_line(1, subscribe(7), &mut out);
    let forwarded: Vec<String> = out.to_backend.iter().map(text).collect();
    let backend_id = forwarded
        .iter()
        .find(|message| message.contains("resources/subscribe"))
        .and_then(|message| message.split(r#""id":"#).nth(1))
        .and_then(|rest| rest.split(',').next())
        .expect("the first subscribe reaches the backend")
        .to_owned();

    let mut out = Outputs::default();
    router.client_line(2, subscribe(9), &mut out);
    assert!(
        out.to_backend.is_empty() && out.to_clients.is_empty(),
        "client 2 waits on the first"
    );

    let mut out = Outputs::default();
    router.client_left(1, &mut out);
    assert!(
        !out.to_backend
            .iter()
            .map(text)
            .any(|message| message.contains("cancelled")),
        "the subscribe others wait on is not cancelled"
    );

    let mut out = Outputs::default();
    router.backend_line(
        line(&format!(
            r#"{{"jsonrpc":"2.0","id":{backend_id},"result":{{}}}}"#
        )),
        &mut out,
    );
    let answers: Vec<(u64, String)> = out
        .to_clients
        .iter()
        .map(|(client, message)| (*client, text(message)))
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].0, 2);
    assert!(
        answers[0].1.contains(r#""id":9"#) && answers[0].1.contains(r#""result":{}"#),
        "{answers:?}"
    );
}
