//! Snapshots of every message shoal writes: hellos, control messages, rewritten envelopes, errors.

mod util;

use std::time::Duration;

use serde_json::value::RawValue;
use shoal_wire::{
    BackendState, ClientHello, ControlRequest, ControlResponse, DaemonHello, ErrorCode, Field, Id,
    Readiness, Role, StatusReport, Validation, error_response, notification, request, response,
};
use util::{parse, text};

#[test]
fn hello_lines() {
    let daemon = DaemonHello {
        version: "0.1.0".into(),
        pid: 4242,
        nonce: "5f1c0e9a7b3d2c18".into(),
        key: "2c26b46b68ffc68f".into(),
        routed_frames: true,
        custody: false,
    };
    insta::assert_snapshot!("daemon_hello", text(&daemon.to_line()));
    let session = ClientHello {
        role: Role::Session,
        pid: 4300,
        host_pid: Some(4299),
        label: "claude-code".into(),
        env_differs: Vec::new(),
        routed_frames: true,
        custody: false,
    };
    insta::assert_snapshot!("client_hello_session", text(&session.to_line()));
    let control = ClientHello {
        role: Role::Control,
        pid: 4301,
        host_pid: None,
        label: "shoal status".into(),
        env_differs: Vec::new(),
        routed_frames: false,
        custody: false,
    };
    insta::assert_snapshot!("client_hello_control", text(&control.to_line()));
}

#[test]
fn hello_errors() {
    let errors = [
        br#"{"shoal":"daemon-hello","protocol":2,"version":"9.0.0"}"#.as_slice(),
        br#"{"shoal":"client-hello","protocol":1,"role":"session","pid":1,"label":"x"}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#,
        b"\x00\x01garbage",
        br#"{"shoal":"daemon-hello","protocol":1,"pid":"not a number"}"#,
    ]
    .map(|line| DaemonHello::parse(line).unwrap_err().to_string());
    insta::assert_snapshot!("daemon_hello_errors", errors.join("\n"));
}

#[test]
fn control_messages() {
    let requests = [
        ControlRequest::Status,
        ControlRequest::Stop,
        ControlRequest::Restart,
    ]
    .map(|request| text(&request.to_line()));
    insta::assert_snapshot!("control_requests", requests.join("\n"));
    let report = StatusReport {
        pid: 4242,
        version: "0.1.0".into(),
        key: "2c26b46b68ffc68f".into(),
        root: "/home/me/project".into(),
        backend_argv: vec![
            "npx".into(),
            "-y".into(),
            "@modelcontextprotocol/server-memory".into(),
        ],
        backend_pid: Some(4243),
        backend_state: BackendState::Running,
        backend_restarts: 1,
        n_clients: 3,
        uptime: Duration::from_millis(3_723_004),
        requests_served: 1234,
        rss_bytes: Some(104_857_600),
        env_differs: vec!["DATABASE_URL".into()],
    };
    let responses = [
        ControlResponse::Status(report),
        ControlResponse::Stopping,
        ControlResponse::Restarted {
            backend_pid: Some(5000),
        },
        ControlResponse::Error {
            message: "unsupported control request `drain`".into(),
        },
    ]
    .map(|response| text(&response.to_line()));
    insta::assert_snapshot!("control_responses", responses.join("\n"));
}

#[test]
fn readiness_lines() {
    let lines = [
        Readiness::Ready {
            pid: 4242,
            socket: "/run/user/1000/shoal/2c26b46b68ffc68f/daemon.sock".into(),
        },
        Readiness::Held { pid: Some(4241) },
        Readiness::Held { pid: None },
        Readiness::Error {
            reason: "start the backend `mcp-server`: No such file or directory (os error 2)".into(),
        },
    ]
    .map(|readiness| text(&readiness.to_line()));
    insta::assert_snapshot!("readiness_lines", lines.join("\n"));
}

#[test]
fn rewritten_envelopes() {
    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"progressToken":1}}}"#,
            vec![
                (Field::Id, Id::from_u64(1001)),
                (Field::MetaProgressToken, Id::string("shoal-p-7")),
            ],
        ),
        (
            r#"{"result":{"content":[{"type":"text","text":"ok"}]},"jsonrpc":"2.0","id":1001}"#,
            vec![(Field::Id, Id::parse(br#""client-id-\u00e9""#).unwrap())],
        ),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"shoal-p-7","progress":50,"total":100}}"#,
            vec![(Field::ProgressToken, Id::from_u64(1))],
        ),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1.0,"reason":"user"}}"#,
            vec![(Field::RequestId, Id::from_u64(1001))],
        ),
        (
            r#"{ "jsonrpc" : "2.0" , "method" : "notifications/resources/updated" , "params" : { "uri" : "file:///a" , "_meta" : { "io.modelcontextprotocol/subscriptionId" : 1001 } } }"#,
            vec![(Field::SubscriptionId, Id::string("1"))],
        ),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|(input, edits)| {
            let envelope = parse(input, Validation::Full);
            let edits: Vec<(Field, &Id)> = edits.iter().map(|(field, id)| (*field, id)).collect();
            format!(
                "{input}\n{}\n",
                text(&envelope.rewrite(&edits).unwrap().to_line())
            )
        })
        .collect();
    insta::assert_snapshot!("rewritten_envelopes", rendered.join("\n"));
}

#[test]
fn built_lines() {
    let invalid = [
        r#"{"jsonrpc":"2.0","id":3,"method":"x","params":{"a":}}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
        "[]",
        "17",
    ]
    .map(|input| {
        text(
            &parse(input, Validation::Full)
                .invalid()
                .unwrap()
                .error_response(),
        )
    });
    let params = RawValue::from_string(
        r#"{"protocolVersion":"2025-06-18","capabilities":{"roots":{"listChanged":true}},"clientInfo":{"name":"shoal","version":"0.1.0"}}"#.to_owned(),
    )
    .unwrap();
    let cancel =
        RawValue::from_string(r#"{"requestId":1001,"reason":"client disconnected"}"#.to_owned())
            .unwrap();
    let built = [
        text(&error_response(
            Some(&Id::from_u64(5)),
            ErrorCode::METHOD_NOT_FOUND,
            "Method not found: roots/list",
        )),
        text(&error_response(
            Some(&Id::string("a")),
            ErrorCode::BACKEND_UNAVAILABLE,
            "the backend crash-looped; see `shoal logs`",
        )),
        text(&error_response(
            None,
            ErrorCode::DAEMON_LOST,
            "the shoal daemon went away",
        )),
        text(&request(&Id::from_u64(0), "initialize", Some(&params)).unwrap()),
        text(&notification("notifications/cancelled", Some(&cancel)).unwrap()),
        text(&notification("notifications/initialized", None).unwrap()),
        text(&response(&Id::string("1"), &cancel).unwrap()),
    ];
    insta::assert_snapshot!("error_responses_for_invalid_lines", invalid.join("\n"));
    insta::assert_snapshot!("built_lines", built.join("\n"));
}
