//! The routing table (`docs/routing.md`) end to end: real daemons,
//! the real fixture server as the backend, clients on the daemon's socket. One test per row,
//! named after it, plus scenarios 26–34 of `docs/scenarios.md`. The same rules are checked against the router alone
//! in `crates/daemon/src/router/tests.rs`; these prove the wiring.
//!
//! | row | test |
//! |---|---|
//! | `initialize` | `initialize_is_answered_from_cache_and_negotiated_per_client` (31) |
//! | `notifications/initialized` | `initialized_is_swallowed_and_gates_broadcasts` |
//! | `ping` | `ping_is_answered_locally_both_ways` |
//! | any other request | `colliding_ids_come_back_to_their_owner_with_their_type` (26) |
//! | `_meta.progressToken` | `progress_goes_to_its_owner_and_late_progress_is_dropped` (26) |
//! | `notifications/cancelled` C→ | `cancellation_cancels_only_the_owners_request` (27) |
//! | C disconnects | `a_disconnect_cancels_and_releases_everything_the_client_held` |
//! | `resources/subscribe` / `unsubscribe`, `resources/updated` | `subscriptions_are_counted_and_updates_go_to_subscribers` (29) |
//! | `logging/setLevel`, `notifications/message` | `log_levels_are_per_client` (30) |
//! | `notifications/*/list_changed` | `list_changed_reaches_every_ready_client` |
//! | `roots/list` B→, `notifications/roots/list_changed` C→ | `roots_are_the_projects` |
//! | `sampling/createMessage`, `elicitation/create`, answers | `server_requests_reach_one_capable_client` (28) |
//! | `notifications/cancelled` B→ | `the_backend_withdrawing_a_request_reaches_the_client` |
//! | pagination cursors | `cursors_pass_untouched` |
//! | `tasks/*` | `tasks_belong_to_their_creator` |
//! | batch array | `batches_are_split_and_answers_joined` |
//! | `server/discover` | `server_discover_is_refused_so_clients_fall_back` |
//! | malformed / oversized | `bad_input_is_answered_to_its_sender_only` (32) |
//! | after a restart | `a_restart_replays_state_and_announces_only_changed_lists` (29) |
//! | slow client | `a_client_that_stops_reading_is_cut_off_alone` (34) |
//!
//! SCENARIO 33 (nothing lost) is `scenario_33_soak_nothing_lost`, at CI scale by default;
//! `cargo xtask race router` runs it at full scale through `SHOAL_SOAK_ROUNDS`,
//! `SHOAL_SOAK_CLIENTS` and `SHOAL_SOAK_REQUESTS` (see `routing/soak.rs`).
//!
//! Run one: `cargo test -p shoal-daemon --test routing -- tasks`.

#![allow(
    clippy::print_stderr,
    reason = "this is a test runner: the soak reports its seed and tallies on stderr"
)]

mod util;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_testkit::client::{Client, IdStyle};
use shoal_wire::{ControlRequest, ControlResponse, Role};
use util::{
    DaemonProcess, DaemonSpec, Scratch, WAIT, client_on, connect_as, control, session, wait_until,
};

#[path = "routing/soak.rs"]
mod soak;

const SCENARIOS: &[shoal_testkit::scenarios::Scenario] = &[
    (
        "initialize_is_answered_from_cache_and_negotiated_per_client",
        initialize_is_answered_from_cache,
    ),
    (
        "initialized_is_swallowed_and_gates_broadcasts",
        initialized_is_swallowed_and_gates_broadcasts,
    ),
    (
        "ping_is_answered_locally_both_ways",
        ping_is_answered_locally,
    ),
    (
        "colliding_ids_come_back_to_their_owner_with_their_type",
        colliding_ids_come_back_to_their_owner,
    ),
    (
        "progress_goes_to_its_owner_and_late_progress_is_dropped",
        progress_goes_to_its_owner,
    ),
    (
        "cancellation_cancels_only_the_owners_request",
        cancellation_cancels_only_the_owners_request,
    ),
    (
        "a_disconnect_cancels_and_releases_everything_the_client_held",
        a_disconnect_releases_everything,
    ),
    (
        "subscriptions_are_counted_and_updates_go_to_subscribers",
        subscriptions_are_counted,
    ),
    ("log_levels_are_per_client", log_levels_are_per_client),
    (
        "list_changed_reaches_every_ready_client",
        list_changed_reaches_every_ready_client,
    ),
    ("roots_are_the_projects", roots_are_the_projects),
    (
        "server_requests_reach_one_capable_client",
        server_requests_reach_one_capable_client,
    ),
    (
        "the_backend_withdrawing_a_request_reaches_the_client",
        backend_withdrawal_reaches_the_client,
    ),
    ("cursors_pass_untouched", cursors_pass_untouched),
    (
        "tasks_belong_to_their_creator",
        tasks_belong_to_their_creator,
    ),
    (
        "batches_are_split_and_answers_joined",
        batches_are_split_and_joined,
    ),
    (
        "server_discover_is_refused_so_clients_fall_back",
        server_discover_is_refused,
    ),
    (
        "bad_input_is_answered_to_its_sender_only",
        bad_input_is_answered_to_its_sender_only,
    ),
    (
        "a_restart_replays_state_and_announces_only_changed_lists",
        a_restart_replays_state,
    ),
    (
        "a_client_that_stops_reading_is_cut_off_alone",
        a_slow_client_is_cut_off_alone,
    ),
    ("scenario_33_soak_nothing_lost", soak::run),
];

/// How long a scenario may take before it counts as hung; the soak gets more per round when
/// `cargo xtask race router` scales it up.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(240);
const SOAK_DEADLINE_PER_ROUND: Duration = Duration::from_secs(120);

/// For negative checks only ("nothing more arrives"): how long to watch.
const QUIET: Duration = Duration::from_millis(300);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("daemon") {
        return util::daemon_main(&args[1..]);
    }
    let rounds = std::env::var("SHOAL_SOAK_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse::<u32>().ok())
        .unwrap_or(1);
    let deadline = SCENARIO_DEADLINE.max(SOAK_DEADLINE_PER_ROUND * rounds);
    shoal_testkit::scenarios::run(SCENARIOS, deadline, 2)
}

/// A daemon serving the fixture with `args`, for one test.
struct Shared {
    daemon: DaemonProcess,
    socket: PathBuf,
    _scratch: Scratch,
}

impl Shared {
    fn start(name: &str, args: &[&str]) -> Shared {
        let scratch = Scratch::new(name);
        let spec = DaemonSpec::fixture(&scratch, args);
        let daemon = DaemonProcess::start(&spec);
        Shared {
            daemon,
            socket: spec.paths().socket,
            _scratch: scratch,
        }
    }

    /// An initialized session declaring `capabilities`.
    fn client(&self, name: &str, capabilities: Value) -> Client {
        let (stream, _) = connect_as(&self.socket, Role::Session);
        let mut client = client_on(stream, name);
        client
            .initialize(capabilities)
            .unwrap_or_else(|error| panic!("{name}: initialize: {error}"));
        client
    }

    fn session(&self, name: &str) -> Client {
        session(&self.socket, name)
    }
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

fn is_notification(message: &Value, method: &str) -> bool {
    message.get("id").is_none() && message["method"] == method
}

// ---------------------------------------------------------------------------------------------

/// SCENARIO 31 and the `initialize` row: the backend sees one `initialize` however many clients
/// come; each client gets the cached result with a protocol version negotiated for it.
fn initialize_is_answered_from_cache() {
    let shared = Shared::start("init", &[]);
    let mut first = shared.session("first");
    let mut results = Vec::new();
    for (name, version) in [
        ("old", "2024-11-05"),
        ("same", "2025-11-25"),
        ("future", "2099-01-01"),
    ] {
        let (stream, _) = connect_as(&shared.socket, Role::Session);
        let mut client = client_on(stream, name);
        let result = client
            .initialize_with(json!({
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": name, "version": "1"},
            }))
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        results.push((version, result));
    }
    for (asked, result) in &results {
        let expected = match *asked {
            "2099-01-01" => "2025-11-25",
            other => other,
        };
        assert_eq!(
            result["protocolVersion"], expected,
            "asked {asked}: {result}"
        );
        assert_eq!(result["serverInfo"]["name"], "shoal-fixture", "{result}");
        assert_eq!(
            result["capabilities"].get("tasks").is_some(),
            expected == "2025-11-25",
            "tasks only for clients that speak them: {result}"
        );
    }
    let stats = first.stats().expect("stats");
    assert_eq!(stats["initializeCount"], 1, "{stats}");
    assert_eq!(
        stats["clientInfo"]["name"], "shoal",
        "the daemon's own identity: {stats}"
    );
    assert_eq!(stats["protocolVersion"], "2025-11-25", "{stats}");
    let declared = &stats["clientCapabilities"];
    for capability in ["roots", "sampling", "elicitation"] {
        assert!(
            declared.get(capability).is_some(),
            "{capability} declared: {declared}"
        );
    }
    assert_eq!(stats["requestsBeforeInitialized"], 0, "{stats}");
}

/// `notifications/initialized` from clients never reaches the backend, and only clients that sent
/// it receive broadcasts.
fn initialized_is_swallowed_and_gates_broadcasts() {
    let shared = Shared::start("initialized", &[]);
    let mut ready = shared.session("ready");
    let (stream, _) = connect_as(&shared.socket, Role::Session);
    let mut unready = client_on(stream, "unready");
    unready
        .result(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "u", "version": "1"}}),
        )
        .expect("initialize without initialized");
    ready
        .call_tool("notify_list_changed", json!({"kind": "prompts"}))
        .expect("notify");
    ready
        .expect_notification("notifications/prompts/list_changed", WAIT)
        .expect("the ready client hears it");
    unready
        .expect_none("a broadcast before initialized", QUIET, |message| {
            message.get("method").is_some()
        })
        .expect("nothing for a client that is not ready");
    let stats = ready.stats().expect("stats");
    assert_eq!(
        stats["initializedNotifications"], 1,
        "only the daemon's: {stats}"
    );
}

/// `ping` from a client and from the backend is answered by the daemon.
fn ping_is_answered_locally() {
    let shared = Shared::start("ping", &[]);
    let mut client = shared.session("pinger");
    let pong = client.result("ping", json!({})).expect("ping");
    assert_eq!(pong, json!({}));
    let result = client
        .call_tool("ping_client", json!({}))
        .expect("ping_client");
    assert_eq!(
        result["isError"], false,
        "the daemon answered the backend: {result}"
    );
    assert_eq!(
        result["structuredContent"]["response"],
        json!({}),
        "{result}"
    );
    client
        .expect_none("the backend's ping forwarded", QUIET, |message| {
            message["method"] == "ping"
        })
        .expect("clients never see the backend's ping");
    let stats = client.stats().expect("stats");
    assert_eq!(
        stats["methods"].get("ping"),
        None,
        "the backend never saw a ping: {stats}"
    );
}

/// SCENARIO 26, ids: clients that all number from 1, some with strings, each get their own
/// answers back with their own ids, JSON types intact; the backend never sees a duplicate id.
fn colliding_ids_come_back_to_their_owner() {
    let shared = Shared::start("ids", &[]);
    let mut clients: Vec<Client> = (0..6)
        .map(|n| {
            let mut client = shared.session(&format!("c{n}"));
            client.set_next_id(1);
            client.set_id_style(if n % 2 == 0 {
                IdStyle::Number
            } else {
                IdStyle::String
            });
            client
        })
        .collect();
    for round in 0..5 {
        let mut sent = Vec::new();
        for (n, client) in clients.iter_mut().enumerate() {
            let id = client.next_id();
            let body = format!("c{n} round {round}");
            client
                .send_request_with_id(
                    id.clone(),
                    "tools/call",
                    json!({"name": "echo", "arguments": {"text": body}}),
                )
                .expect("send");
            sent.push((id, body));
        }
        for (client, (id, body)) in clients.iter_mut().zip(sent) {
            let response = client.wait_response(&id, WAIT).expect("answer");
            assert_eq!(response.id, id, "the id comes back with its type");
            let result = response.into_result().expect("result");
            assert_eq!(
                text(&result),
                body,
                "{}: someone else's answer",
                client.name()
            );
        }
    }
    for client in &mut clients {
        client
            .expect_none("a message for someone else", QUIET, |message| {
                message.get("id").is_some()
            })
            .expect("no stray answers");
    }
    let stats = clients[0].stats().expect("stats");
    assert_eq!(stats["duplicateIds"], json!([]), "{stats}");
}

/// SCENARIO 26, progress: two clients use the same token (as SDKs do, their request id); each
/// gets exactly its own progress under its own token, and none after its answer.
fn progress_goes_to_its_owner() {
    let shared = Shared::start("progress", &[]);
    let mut a = shared.session("a");
    let mut b = shared.session("b");
    let call = |token: Value| json!({"name": "slow", "arguments": {"ms": 200, "steps": 3, "late": 3}, "_meta": {"progressToken": token}});
    a.send_request_with_id(json!(1), "tools/call", call(json!(1)))
        .expect("a");
    b.send_request_with_id(json!("1"), "tools/call", call(json!("1")))
        .expect("b");
    for (client, token) in [(&mut a, json!(1)), (&mut b, json!("1"))] {
        let id = token.clone();
        client
            .wait_response(&id, WAIT)
            .expect("answer")
            .into_result()
            .expect("result");
        let progress: Vec<Value> = client
            .drain()
            .into_iter()
            .filter(|message| is_notification(message, "notifications/progress"))
            .collect();
        assert_eq!(progress.len(), 3, "{}: {progress:?}", client.name());
        for message in progress {
            assert_eq!(
                message["params"]["progressToken"],
                token,
                "{}: {message}",
                client.name()
            );
        }
        client
            .expect_none("progress after the answer", QUIET, |message| {
                is_notification(message, "notifications/progress")
            })
            .expect("late progress is dropped");
    }
}

/// SCENARIO 27: a client cancelling its request 1 cancels that request only, not the other
/// client's request 1.
fn cancellation_cancels_only_the_owners_request() {
    let shared = Shared::start("cancel", &[]);
    let mut a = shared.session("a");
    let mut b = shared.session("b");
    let wait = |ms: u64| json!({"name": "wait_cancel", "arguments": {"timeout_ms": ms}});
    a.send_request_with_id(json!(1), "tools/call", wait(30_000))
        .expect("a");
    b.send_request_with_id(json!(1), "tools/call", wait(1_500))
        .expect("b");
    let mut observer = shared.session("observer");
    wait_until("both calls in flight at the backend", WAIT, || {
        observer.stats().expect("stats")["inFlight"]
            .as_array()
            .map_or(0, Vec::len)
            == 2
    });
    a.notify(
        "notifications/cancelled",
        json!({"requestId": 1, "reason": "user"}),
    )
    .expect("cancel");
    let result = b
        .wait_response(&json!(1), WAIT)
        .expect("b is answered")
        .into_result()
        .expect("b's result");
    assert_eq!(
        result["isError"], true,
        "b ran to its own timeout: {result}"
    );
    assert!(text(&result).contains("not cancelled"), "{result}");
    a.expect_none("an answer to a cancelled request", QUIET, |message| {
        message.get("id").is_some()
    })
    .expect("a cancelled request is not answered");
    let stats = observer.stats().expect("stats");
    let cancellations = stats["cancellations"].as_array().expect("cancellations");
    assert_eq!(cancellations.len(), 1, "{stats}");
    assert_eq!(cancellations[0]["inFlight"], true, "{stats}");
    assert_eq!(cancellations[0]["reason"], "user", "{stats}");
}

/// A client that disconnects: its in-flight request is cancelled at the backend, its
/// subscription and log level released, and requests routed to it answered with an error.
fn a_disconnect_releases_everything() {
    let shared = Shared::start("disconnect", &[]);
    let mut observer = shared.session("observer");
    let mut leaver = shared.client("leaver", json!({"sampling": {}}));
    leaver
        .result("resources/subscribe", json!({"uri": "fixture://static/1"}))
        .expect("subscribe");
    leaver
        .result("logging/setLevel", json!({"level": "debug"}))
        .expect("level");
    observer
        .result("logging/setLevel", json!({"level": "warning"}))
        .expect("level");
    leaver
        .send_request(
            "tools/call",
            json!({"name": "wait_cancel", "arguments": {}}),
        )
        .expect("wait");
    // The observer asks for sampling; the only capable client is the leaver.
    let sample = observer
        .send_request(
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "hi"}}),
        )
        .expect("sample");
    leaver
        .expect_request("sampling/createMessage", WAIT)
        .expect("routed to the leaver");
    drop(leaver);
    let result = observer
        .wait_response(&sample, WAIT)
        .expect("sample answered")
        .into_result()
        .expect("sample result");
    assert_eq!(result["isError"], true, "{result}");
    assert!(
        result["structuredContent"]["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("disconnected")),
        "the backend got an error naming the disconnect: {result}"
    );
    wait_until("the backend is told", WAIT, || {
        let stats = observer.stats().expect("stats");
        stats["unsubscribeRequests"] == 1 && stats["logLevel"] == "warning"
    });
    let stats = observer.stats().expect("stats");
    let cancellations = stats["cancellations"].as_array().expect("cancellations");
    assert_eq!(cancellations.len(), 1, "{stats}");
    assert_eq!(
        cancellations[0]["reason"], "the client disconnected",
        "{stats}"
    );
    assert_eq!(stats["subscriptions"], json!([]), "{stats}");
}

/// SCENARIO 29 and the subscription rows: counted per URI, only the first subscribe and the last
/// unsubscribe reach the backend, updates only to subscribers.
fn subscriptions_are_counted() {
    let shared = Shared::start("subscriptions", &[]);
    let uri = "fixture://static/2";
    let mut a = shared.session("a");
    let mut b = shared.session("b");
    let mut outsider = shared.session("outsider");
    a.result("resources/subscribe", json!({"uri": uri}))
        .expect("a subscribes");
    b.result("resources/subscribe", json!({"uri": uri}))
        .expect("b subscribes");
    let touch = |client: &mut Client| {
        let result = client
            .call_tool("touch", json!({"uri": uri}))
            .expect("touch");
        assert_eq!(result["structuredContent"]["emitted"], true, "{result}");
    };
    let updated = |message: &Value| {
        is_notification(message, "notifications/resources/updated")
            && message["params"]["uri"] == uri
    };
    touch(&mut outsider);
    a.expect("update", WAIT, updated).expect("a hears it");
    b.expect("update", WAIT, updated).expect("b hears it");
    outsider
        .expect_none("an update to a non-subscriber", QUIET, updated)
        .expect("the outsider hears nothing");
    let stats = outsider.stats().expect("stats");
    assert_eq!(
        stats["subscribeRequests"], 1,
        "only the first subscribe: {stats}"
    );

    a.result("resources/unsubscribe", json!({"uri": uri}))
        .expect("a unsubscribes");
    assert_eq!(outsider.stats().expect("stats")["unsubscribeRequests"], 0);
    touch(&mut outsider);
    b.expect("update", WAIT, updated).expect("b still hears it");
    a.expect_none("an update after unsubscribing", QUIET, updated)
        .expect("a does not");
    b.result("resources/unsubscribe", json!({"uri": uri}))
        .expect("b unsubscribes");
    let stats = outsider.stats().expect("stats");
    assert_eq!(
        stats["unsubscribeRequests"], 1,
        "the last unsubscribe: {stats}"
    );
    assert_eq!(stats["subscriptions"], json!([]), "{stats}");
}

/// SCENARIO 30: each client sees log messages at its own level; the backend runs at the most
/// verbose level any client asked for.
fn log_levels_are_per_client() {
    let shared = Shared::start("levels", &[]);
    let mut chatty = shared.session("chatty");
    let mut quiet = shared.session("quiet");
    chatty
        .result("logging/setLevel", json!({"level": "debug"}))
        .expect("debug");
    quiet
        .result("logging/setLevel", json!({"level": "error"}))
        .expect("error");
    let bad = quiet
        .request("logging/setLevel", json!({"level": "loud"}))
        .expect("answered");
    assert_eq!(
        bad.error().map(|error| error.code),
        Some(-32602),
        "{:?}",
        bad.raw
    );
    let stats = chatty.stats().expect("stats");
    assert_eq!(stats["logLevel"], "debug", "{stats}");
    let log = |client: &mut Client, level: &str, message: &str| {
        client
            .call_tool("log", json!({"level": level, "message": message}))
            .expect("log");
    };
    let logged = |text: &'static str| {
        move |message: &Value| {
            is_notification(message, "notifications/message") && message["params"]["data"] == text
        }
    };
    log(&mut chatty, "info", "an info line");
    log(&mut chatty, "critical", "a critical line");
    chatty
        .expect("info", WAIT, logged("an info line"))
        .expect("chatty sees info");
    chatty
        .expect("critical", WAIT, logged("a critical line"))
        .expect("chatty sees critical");
    quiet
        .expect("critical", WAIT, logged("a critical line"))
        .expect("quiet sees critical");
    quiet
        .expect_none(
            "info for an error-level client",
            QUIET,
            logged("an info line"),
        )
        .expect("quiet does not see info");
    drop(chatty);
    wait_until(
        "the backend drops to the remaining client's level",
        WAIT,
        || quiet.stats().expect("stats")["logLevel"] == "error",
    );
}

/// `list_changed` from the backend reaches every ready client, bursts folded.
fn list_changed_reaches_every_ready_client() {
    let shared = Shared::start("lists", &[]);
    let mut clients: Vec<Client> = (0..3).map(|n| shared.session(&format!("c{n}"))).collect();
    let burst = 5;
    for _ in 0..burst {
        clients[0]
            .call_tool(
                "notify_list_changed",
                json!({"kind": "tools", "variant": 1}),
            )
            .expect("notify");
    }
    for client in &mut clients {
        client
            .expect_notification("notifications/tools/list_changed", WAIT)
            .expect("every ready client hears it");
        // The trailing notification of a folded burst, if any, comes within the window.
        let _ = client.expect_none("more", QUIET, |_| false);
        let heard = 1 + client
            .drain()
            .iter()
            .filter(|message| is_notification(message, "notifications/tools/list_changed"))
            .count();
        assert!(
            heard <= burst,
            "{}: {heard} notifications for {burst} changes",
            client.name()
        );
        let tools = client.result("tools/list", json!({})).expect("tools/list");
        assert!(
            tools["tools"]
                .as_array()
                .expect("tools")
                .iter()
                .any(|tool| tool["name"] == "variant_1"),
            "the last change is visible: {tools}"
        );
    }
}

/// `roots/list` from the backend is answered with the project root; a client's roots change is
/// swallowed.
fn roots_are_the_projects() {
    let shared = Shared::start("roots", &[]);
    let mut client = shared.client("rooted", json!({"roots": {"listChanged": true}}));
    let result = client.call_tool("roots", json!({})).expect("roots");
    let roots = &result["structuredContent"]["response"]["roots"];
    let uri = roots[0]["uri"].as_str().unwrap_or_default();
    assert!(
        uri.starts_with("file:///") && uri.ends_with("/project-roots"),
        "{result}"
    );
    client
        .expect_none("roots/list forwarded to a client", QUIET, |message| {
            message["method"] == "roots/list"
        })
        .expect("clients are not asked");
    client
        .notify("notifications/roots/list_changed", json!({}))
        .expect("notify");
    let stats = client.stats().expect("stats");
    assert_eq!(
        stats["notifications"].get("notifications/roots/list_changed"),
        None,
        "{stats}"
    );
}

/// SCENARIO 28: sampling and elicitation go to one capable client (the one with a request in
/// flight), its answer reaches the backend, and with no capable client the backend gets an error.
fn server_requests_reach_one_capable_client() {
    let shared = Shared::start("sampling", &[]);
    let mut incapable = shared.session("incapable");
    let mut a = shared.client("a", json!({"sampling": {}, "elicitation": {}}));
    let mut b = shared.client("b", json!({"sampling": {}, "elicitation": {}}));

    // Nobody capable is busy: the one that asked last... here `b` asks, so `b` answers.
    for (asker, method, tool, args) in [
        (
            "b",
            "sampling/createMessage",
            "sample",
            json!({"prompt": "p"}),
        ),
        ("a", "elicitation/create", "elicit", json!({"message": "m"})),
    ] {
        let (asking, other) = if asker == "a" {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let id = asking
            .send_request("tools/call", json!({"name": tool, "arguments": args}))
            .expect("call");
        let routed = asking
            .expect_request(method, WAIT)
            .expect("routed to the asker");
        asking
            .respond(&routed["id"], json!({"answer": asker}))
            .expect("respond");
        let result = asking
            .wait_response(&id, WAIT)
            .expect("answer")
            .into_result()
            .expect("result");
        assert_eq!(
            result["structuredContent"]["response"]["answer"], asker,
            "{result}"
        );
        other
            .expect_none("a request meant for another client", QUIET, |message| {
                message["method"] == method
            })
            .expect("only one client is asked");
    }

    // The incapable client's tool needs sampling: the capable client with the latest request in
    // flight is asked.
    let busy = a
        .send_request(
            "tools/call",
            json!({"name": "wait_cancel", "arguments": {"timeout_ms": 5000}}),
        )
        .expect("a busy");
    let id = incapable
        .send_request(
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "for incapable"}}),
        )
        .expect("call");
    let routed = a
        .expect_request("sampling/createMessage", WAIT)
        .expect("a is asked");
    // Answering twice: the backend must see one answer.
    a.respond(&routed["id"], json!({"answer": "from a"}))
        .expect("respond");
    a.respond(&routed["id"], json!({"answer": "again"}))
        .expect("respond again");
    let result = incapable
        .wait_response(&id, WAIT)
        .expect("answer")
        .into_result()
        .expect("result");
    assert_eq!(
        result["structuredContent"]["response"]["answer"], "from a",
        "{result}"
    );
    a.notify("notifications/cancelled", json!({"requestId": busy}))
        .expect("cancel");

    drop(a);
    drop(b);
    let result = incapable
        .call_tool("sample", json!({"prompt": "nobody"}))
        .expect("sample with nobody capable");
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(
        result["structuredContent"]["error"]["code"], -32601,
        "{result}"
    );
    let stats = incapable.stats().expect("stats");
    assert_eq!(
        stats["unexpectedResponses"],
        json!([]),
        "answered once: {stats}"
    );
}

/// `notifications/cancelled` from the backend reaches the client it asked, under the id that
/// client saw.
fn backend_withdrawal_reaches_the_client() {
    let shared = Shared::start("withdraw", &[]);
    let mut client = shared.client("asked", json!({"sampling": {}}));
    let id = client
        .send_request(
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "p"}}),
        )
        .expect("call");
    let routed = client
        .expect_request("sampling/createMessage", WAIT)
        .expect("asked");
    // Cancelling the tool call makes the fixture withdraw its sampling request.
    client
        .notify("notifications/cancelled", json!({"requestId": id}))
        .expect("cancel");
    let withdrawal = client
        .expect_notification("notifications/cancelled", WAIT)
        .expect("the withdrawal");
    assert_eq!(
        withdrawal["params"]["requestId"], routed["id"],
        "{withdrawal}"
    );
}

/// Pagination cursors pass through untouched, both ways.
fn cursors_pass_untouched() {
    let shared = Shared::start("cursors", &["--page-size", "2"]);
    let mut client = shared.session("pager");
    let mut uris = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let params = if cursor.is_null() {
            json!({})
        } else {
            json!({"cursor": cursor})
        };
        let page = client.result("resources/list", params).expect("page");
        uris.extend(
            page["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .map(|r| r["uri"].clone()),
        );
        cursor = page.get("nextCursor").cloned().unwrap_or(Value::Null);
        if cursor.is_null() {
            break;
        }
        assert!(
            cursor
                .as_str()
                .is_some_and(|c| c.starts_with("fixture-cursor-")),
            "{cursor}"
        );
    }
    assert_eq!(uris.len(), 5, "{uris:?}");
}

/// Tasks belong to the client that created them.
fn tasks_belong_to_their_creator() {
    let shared = Shared::start("tasks", &[]);
    let mut owner = shared.session("owner");
    let mut other = shared.session("other");
    let created = owner
        .result(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 300, "steps": 0}, "task": {"ttl": 60000}}),
        )
        .expect("a task");
    let task = created["task"]["taskId"]
        .as_str()
        .expect("a task id")
        .to_owned();
    let status = owner
        .expect_notification("notifications/tasks/status", WAIT)
        .expect("the owner hears its task's status");
    assert_eq!(status["params"]["taskId"], task.as_str());
    for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
        let refused = other
            .request(method, json!({"taskId": task}))
            .expect("answered");
        assert_eq!(
            refused.error().map(|error| error.code),
            Some(-32602),
            "{method}: {:?}",
            refused.raw
        );
    }
    let listed = other.result("tasks/list", json!({})).expect("tasks/list");
    assert_eq!(
        listed["tasks"],
        json!([]),
        "another's task is not listed: {listed}"
    );
    let listed = owner.result("tasks/list", json!({})).expect("tasks/list");
    assert_eq!(listed["tasks"][0]["taskId"], task.as_str(), "{listed}");
    let got = owner
        .result("tasks/get", json!({"taskId": task}))
        .expect("tasks/get");
    assert_eq!(got["taskId"], task.as_str(), "{got}");
    let result = owner
        .result("tasks/result", json!({"taskId": task}))
        .expect("tasks/result");
    assert!(result.get("content").is_some(), "{result}");
    other
        .expect_none("another's task status", QUIET, |message| {
            is_notification(message, "notifications/tasks/status")
        })
        .expect("status only to the owner");
}

/// Batches are split (the backend never sees an array) and the answers joined into one array.
fn batches_are_split_and_joined() {
    let shared = Shared::start("batches", &[]);
    let mut client = shared.session("batcher");
    client
        .send_raw(
            r#"[{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo","arguments":{"text":"one"}}},{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"none","progress":1}},{"jsonrpc":"2.0","id":7,"method":"ping"},{"jsonrpc":"2.0","id":null,"method":"ping"}]"#,
        )
        .expect("send a batch");
    let answer = client
        .expect("the joined answer", WAIT, Value::is_array)
        .expect("an array");
    let answers = answer.as_array().expect("array");
    assert_eq!(
        answers.len(),
        3,
        "two requests and one invalid element: {answer}"
    );
    let by_id = |id: Value| answers.iter().find(|item| item["id"] == id);
    assert_eq!(
        text(&by_id(json!("x")).expect("x")["result"]),
        "one",
        "{answer}"
    );
    assert_eq!(by_id(json!(7)).expect("7")["result"], json!({}), "{answer}");
    assert_eq!(
        by_id(Value::Null).expect("invalid")["error"]["code"],
        -32600,
        "{answer}"
    );
    client
        .send_raw(r#"[{"jsonrpc":"2.0","method":"notifications/x"}]"#)
        .expect("send");
    client
        .expect_none(
            "an answer to a batch of notifications",
            QUIET,
            Value::is_array,
        )
        .expect("no answer at all");
    let stats = client.stats().expect("stats");
    assert_eq!(
        stats["batches"], 0,
        "the backend never sees an array: {stats}"
    );
}

/// `server/discover` gets an error (the backend is initialize-era), so dual-era clients fall back
/// to `initialize`, which works.
fn server_discover_is_refused() {
    let shared = Shared::start("discover", &[]);
    let (stream, _) = connect_as(&shared.socket, Role::Session);
    let mut client = client_on(stream, "dual-era");
    let discover = client
        .request("server/discover", json!({}))
        .expect("answered");
    assert_eq!(
        discover.error().map(|error| error.code),
        Some(-32601),
        "{:?}",
        discover.raw
    );
    client
        .initialize(json!({}))
        .expect("falls back to initialize");
    let pong = client.result("ping", json!({})).expect("ping");
    assert_eq!(pong, json!({}));
}

/// SCENARIO 32: malformed JSON, a wrong envelope, a null id and an oversized line get the right
/// error, to their sender only; the backend and the other clients never notice.
fn bad_input_is_answered_to_its_sender_only() {
    let shared = Shared::start("bad", &[]);
    let mut bad = shared.session("bad");
    let mut good = shared.session("good");
    let cases = [
        ("{not json".to_owned(), -32700),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.to_owned(),
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.to_owned(),
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#.to_owned(),
            -32600,
        ),
        ("[]".to_owned(), -32600),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
                "x".repeat(33 << 20)
            ),
            -32600,
        ),
    ];
    for (line, code) in &cases {
        bad.send_raw(line).expect("send");
        let answer = bad
            .expect("an error", WAIT, |message| message.get("error").is_some())
            .expect("an error answer");
        assert_eq!(
            answer["error"]["code"],
            *code,
            "{}: {answer}",
            &line[..line.len().min(60)]
        );
    }
    util::echo(&mut bad, "still served");
    util::echo(&mut good, "never noticed");
    good.expect_none("someone else's error", QUIET, |message| {
        message.get("error").is_some()
    })
    .expect("the good client saw nothing");
    let stats = good.stats().expect("stats");
    assert_eq!(
        stats["invalidMessages"], 0,
        "the backend never saw them: {stats}"
    );
}

/// After a backend restart: re-initialized once, subscriptions and log level replayed, in-flight
/// requests failed with a clear error, and `list_changed` only for lists that changed.
fn a_restart_replays_state() {
    let shared = Shared::start("restart", &["--chatty"]);
    let mut client = shared.session("survivor");
    let uri = "fixture://static/3";
    client
        .result("resources/subscribe", json!({"uri": uri}))
        .expect("subscribe");
    client
        .result("logging/setLevel", json!({"level": "notice"}))
        .expect("level");
    let waiting = client
        .send_request(
            "tools/call",
            json!({"name": "wait_cancel", "arguments": {}}),
        )
        .expect("in flight");
    // The first backend's lists are the baseline a restart is compared with; what it announced
    // on its own (it is chatty) is behind us once a ping comes back.
    let backends_listed = |count: usize| {
        wait_until("the backend's lists are fingerprinted", WAIT, || {
            shared
                .daemon
                .log()
                .matches("listed the MCP server's tools, resources and prompts")
                .count()
                == count
        });
    };
    backends_listed(1);
    // Everything sent before the ping's answer has arrived; a folded burst's trailing
    // notification comes within the coalescing window (100 ms), well inside QUIET.
    let list_changes = |client: &mut Client| -> Vec<String> {
        client.result("ping", json!({})).expect("ping");
        let _ = client.expect_none("the coalescing window", QUIET, |_| false);
        client
            .drain()
            .iter()
            .filter_map(|message| message["method"].as_str())
            .filter(|method| method.ends_with("/list_changed"))
            .map(str::to_owned)
            .collect()
    };
    list_changes(&mut client);

    restart(&shared);
    let failed = client.wait_response(&waiting, WAIT).expect("failed");
    let error = failed.error().expect("an error");
    assert_eq!(error.code, -32080, "{:?}", failed.raw);
    assert!(error.message.contains("restart"), "{error:?}");
    backends_listed(2);
    assert_eq!(
        list_changes(&mut client),
        Vec::<String>::new(),
        "nothing changed, so nothing is announced (the new backend's own announcements are absorbed)"
    );
    let stats = client.stats().expect("stats");
    assert_eq!(stats["initializeCount"], 1, "{stats}");
    assert_eq!(stats["subscriptions"], json!([uri]), "{stats}");
    assert_eq!(stats["logLevel"], "notice", "{stats}");
    let updated = client
        .call_tool("touch", json!({"uri": uri}))
        .expect("touch");
    assert_eq!(updated["structuredContent"]["emitted"], true, "{updated}");
    client
        .expect_notification("notifications/resources/updated", WAIT)
        .expect("the replayed subscription works");

    // Change the tool list, then restart: the new backend starts at the original list again,
    // which is not what clients saw last, so they are told about tools, and only tools.
    client
        .call_tool(
            "notify_list_changed",
            json!({"kind": "tools", "variant": 2}),
        )
        .expect("change");
    client
        .expect_notification("notifications/tools/list_changed", WAIT)
        .expect("the change itself");
    list_changes(&mut client);
    restart(&shared);
    backends_listed(3);
    client
        .expect_notification("notifications/tools/list_changed", WAIT)
        .expect("the tool list differs from what clients saw last");
    let others = list_changes(&mut client);
    assert!(
        others
            .iter()
            .all(|method| method == "notifications/tools/list_changed"),
        "only the list that differs is announced: {others:?}"
    );
}

fn restart(shared: &Shared) {
    match control(&shared.socket, ControlRequest::Restart) {
        ControlResponse::Restarted { .. } => {}
        other => panic!("restart: {other:?}\n{}", shared.daemon.log()),
    }
}

/// SCENARIO 34: a client that never reads is disconnected once its queue is full; the backend
/// and the other clients keep going.
fn a_slow_client_is_cut_off_alone() {
    let shared = Shared::start("slow", &[]);
    let mut good = shared.session("good");
    let (mut stream, _) = connect_as(&shared.socket, Role::Session);
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sloth","version":"1"}}}"#;
    writeln!(stream, "{init}").expect("initialize");
    // Ask for far more than an outbox holds, and never read.
    for id in 1..=40 {
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"big","arguments":{{"bytes":4194304}}}}}}"#
        );
        if writeln!(stream, "{request}").is_err() {
            break;
        }
        util::echo(&mut good, &format!("keeps going {id}"));
    }
    wait_until("the slow client is disconnected", WAIT, || {
        shared
            .daemon
            .log()
            .contains("disconnected a client that stopped reading")
    });
    util::echo(&mut good, "still served");
    // Its queue (megabytes of answers) was dropped when it was cut off: reading now yields what
    // the kernel's socket buffers held, then the end of the connection (EOF, or a reset when the
    // daemon closed with requests of ours still unread), not the queue.
    use std::io::Read as _;
    stream
        .set_read_timeout(Some(WAIT))
        .expect("set a read timeout");
    let mut received = 0;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!("the cut-off connection must end within the deadline: {error}"),
        }
    }
    assert!(
        received < 4 * 1024 * 1024,
        "{received} bytes reached a client after it was cut off"
    );
}
