//! `shoal proxy` end to end, with real processes: the `shoal` binary as proxies and daemons, the
//! workspace's `shoal-fixture` as the MCP server, test clients (and a re-executed "host") on the
//! proxies' stdio. Scenarios 13, 14, 16, 19 and 20 of `docs/scenarios.md`, server requests held across a daemon kill, the
//! fallback, the stdin-EOF drain and the help.
//!
//! Run one: `cargo test -p shoal --test proxy -- scenario_20`.

#![allow(
    clippy::print_stderr,
    reason = "this is a test runner: it reports measured figures on stderr"
)]

mod proxy_util;

use std::ffi::OsString;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proxy_util::{Host, SHOAL, Scratch, Session, WAIT, reaped, status, wait_exit, wait_until};
use serde_json::{Value, json};
use shoal_testkit::process::is_alive;

const SCENARIOS: &[shoal_testkit::scenarios::Scenario] = &[
    (
        "pruning_a_long_stopped_daemons_dir_while_proxies_start_loses_no_session",
        pruning_races_proxies,
    ),
    (
        "a_session_whose_environment_differs_from_the_servers_is_told_and_status_shows_it",
        environment_differences,
    ),
    (
        "scenario_13_64_proxies_on_a_cold_root_share_one_daemon_and_one_backend",
        sixty_four_proxies_on_a_cold_root,
    ),
    (
        "scenario_14_stale_socket_and_lock_the_next_proxy_starts_a_daemon",
        stale_socket_and_lock,
    ),
    (
        "scenario_16_daemon_start_failure_is_reported_with_the_log_tail",
        daemon_start_failure_is_reported,
    ),
    (
        "scenario_19_host_killed_the_proxy_exits_and_the_client_count_drops",
        host_killed,
    ),
    (
        "scenario_20_daemon_killed_under_load_proxies_answer_reconnect_and_replay",
        daemon_killed_under_load,
    ),
    (
        "server_requests_held_across_a_daemon_kill_are_never_confused_with_new_ones",
        server_requests_held_across_a_daemon_kill,
    ),
    (
        "a_daemon_killed_at_each_step_of_taking_a_line_in_custody_loses_nothing",
        custody_kill_points,
    ),
    (
        "a_proxy_whose_daemon_refuses_custody_reads_its_stdin_itself",
        daemon_without_custody,
    ),
    (
        "a_proxy_served_lines_by_a_daemon_without_routed_frames_loses_nothing_when_it_dies",
        daemon_without_routed_frames,
    ),
    (
        "fallback_runs_the_server_directly_when_the_runtime_dir_is_unusable",
        fallback_when_the_runtime_dir_is_unusable,
    ),
    (
        "stdin_eof_delivers_the_answers_owed_then_exits_0",
        stdin_eof_delivers_answers_owed,
    ),
    (
        "sigterm_delivers_the_answers_owed_then_exits_0",
        sigterm_delivers_answers_owed,
    ),
    (
        "an_answer_owed_past_the_drain_bound_is_an_error_then_exit_0",
        stdin_eof_past_the_drain_bound,
    ),
    (
        "requests_queued_while_reconnecting_are_answered_after_the_queue_patience",
        queue_patience_while_reconnecting,
    ),
    (
        "host_stdio_on_pipes_a_socket_or_files_is_served_and_its_flags_restored",
        host_stdio_kinds,
    ),
    (
        "messages_larger_than_the_socket_buffers_pass_both_ways",
        large_messages,
    ),
    (
        "warnings_after_connect_reach_hosts_that_asked_for_log_messages",
        warnings_through_mcp_logging,
    ),
    (
        "a_server_command_without_a_double_dash_names_the_same_daemon",
        command_without_double_dash,
    ),
    (
        "a_missing_server_command_is_not_found_as_a_shell_says_it",
        command_not_found,
    ),
    (
        "hosts_that_pass_or_strip_xdg_runtime_dir_share_one_daemon",
        xdg_runtime_dir_does_not_split_sessions,
    ),
    (
        "the_config_file_sets_what_a_host_may_strip_from_the_environment",
        config_file_settings,
    ),
    (
        "a_host_that_kills_its_proxys_process_tree_leaves_the_shared_daemon_alone",
        process_tree_kill_spares_the_daemon,
    ),
    (
        "a_proxy_blocked_writing_to_a_host_that_does_not_read_still_stops",
        blocked_write_still_stops,
    ),
    (
        "another_users_runtime_dir_is_reported_with_its_owner",
        another_users_runtime_dir,
    ),
    ("help", help),
];

/// How long a scenario may take in all before it counts as hung.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(300);

/// Rounds of scenario 13 here; `cargo xtask race proxy` runs more.
const COLD_START_ROUNDS: u32 = 3;

/// Rounds of each fault scenario (16, 19, 20): `SHOAL_FAULT_ROUNDS`, default 1. `cargo xtask race
/// faults` sets it to repeat them, each round with fresh processes and a fresh runtime dir.
fn fault_rounds() -> u32 {
    match std::env::var("SHOAL_FAULT_ROUNDS") {
        Ok(rounds) => rounds
            .parse()
            .unwrap_or_else(|_| panic!("SHOAL_FAULT_ROUNDS={rounds:?} is not a number of rounds")),
        Err(_) => 1,
    }
}

/// Runs `round` [`fault_rounds`] times, saying which round failed if one does (the panic itself
/// carries the details).
fn repeat(scenario: &str, round: fn()) {
    let rounds = fault_rounds();
    for n in 0..rounds {
        if rounds > 1 {
            eprintln!("{scenario}: round {}/{rounds}", n + 1);
        }
        round();
    }
}

fn main() -> ExitCode {
    // SAFETY: first thing in `main`, before any thread exists; every process the tests start
    // inherits it.
    unsafe { std::env::set_var("SHOAL_CONFIG", proxy_util::NO_CONFIG) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("host") {
        return proxy_util::host_main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("host-inherit") {
        return proxy_util::host_inherit_main(&args[1..]);
    }
    // One at a time: scenario 13 alone runs ~66 processes on a 2-core machine.
    // The fault scenarios repeat when asked to, and each round needs its own time.
    shoal_testkit::scenarios::run(SCENARIOS, SCENARIO_DEADLINE * fault_rounds(), 1)
}

// ---------------------------------------------------------------------------------------------

/// Scenario 13: 64 proxies started at once on a cold root → exactly one daemon, one backend
/// start, 64 sessions, each answered. Odd rounds hold `spawn.lock` until all 64 are running, so
/// that all of them are on the slow path at once; even rounds let them race from the start.
fn sixty_four_proxies_on_a_cold_root() {
    for round in 0..COLD_START_ROUNDS {
        let started = Instant::now();
        cold_start_round(round % 2 == 1);
        eprintln!(
            "scenario 13 round {round}: 64 proxies served by one daemon in {:?}",
            started.elapsed()
        );
    }
}

fn cold_start_round(hold_spawn_lock: bool) {
    const PROXIES: usize = 64;
    let scratch = Scratch::new("cold");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let held = hold_spawn_lock.then(|| {
        shoal_lockfile::ensure_private_dir(&scratch.runtime_dir).unwrap();
        shoal_lockfile::ensure_private_dir(&paths.dir).unwrap();
        let lock = shoal_lockfile::PersistentLock::new(&paths.spawn_lock).unwrap();
        lock.try_lock().unwrap()
    });
    // Barrier: all spawned (each is finding or starting the daemon as soon as it runs)...
    let mut sessions: Vec<Session> = (0..PROXIES)
        .map(|n| scratch.client(&format!("proxy {n}"), &server))
        .collect();
    drop(held);
    // ...then all send initialize, then all wait for their answers.
    for session in &mut sessions {
        session
            .client
            .send_request(
                "initialize",
                json!({
                    "protocolVersion": shoal_testkit::client::LATEST_PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "cold", "version": "1"},
                }),
            )
            .unwrap();
    }
    for session in &mut sessions {
        let name = session.client.name().to_owned();
        let response = session
            .client
            .wait_response(&json!(1), WAIT)
            .unwrap_or_else(|error| panic!("{name}: {error}\nstderr:\n{}", session.stderr()));
        assert!(response.error().is_none(), "{name}: {response:?}");
        session
            .client
            .notify("notifications/initialized", Value::Null)
            .unwrap();
    }
    for (n, session) in sessions.iter_mut().enumerate() {
        session.echo(&format!("hello from {n}"));
    }
    let report = status(&paths.socket).expect("the daemon answers status");
    assert_eq!(report.n_clients, 64, "{report:?}");
    assert_eq!(scratch.spawns(), 1, "exactly one backend start");
    let log = std::fs::read_to_string(&paths.log).unwrap();
    assert_eq!(
        log.matches("daemon ready").count(),
        1,
        "exactly one daemon started:\n{log}"
    );
    // Not even a redundant one that found the key held and left: only the first proxy under
    // spawn.lock may start a daemon, the others find it on their re-check.
    assert!(
        !log.contains("another daemon already serves this key"),
        "a proxy started a second daemon:\n{log}"
    );
}

/// Scenario 14: a daemon SIGKILLed while no session runs leaves its socket file (nobody
/// listening) and its lock; the next proxy starts a new daemon at once and is served.
fn stale_socket_and_lock() {
    let scratch = Scratch::new("stale");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let mut first = scratch.client("first", &server);
    first.initialize();
    first.echo("before");
    let old = status(&paths.socket).expect("status").pid;
    first.client.close_input();
    assert_eq!(first.client.wait_exit(WAIT).unwrap().code(), Some(0));
    shoal_testkit::process::kill(old).unwrap();
    wait_until("the old daemon dies", WAIT, || !is_alive(old));
    assert!(paths.socket.exists() && paths.daemon_lock.exists());
    assert!(
        std::os::unix::net::UnixStream::connect(&paths.socket).is_err(),
        "nobody listens on the stale socket"
    );
    let mut second = scratch.client("second", &server);
    second.initialize();
    second.echo("after");
    let new = status(&paths.socket).expect("status").pid;
    assert_ne!(new, old);
    assert_eq!(scratch.spawns(), 2);
}

/// Scenario 16: a daemon that dies during start-up (its server command does not exist) → the
/// proxy reports the daemon's reason and the tail of daemon.log, promptly.
fn daemon_start_failure_is_reported() {
    repeat("scenario 16", daemon_start_failure_round);
}

fn daemon_start_failure_round() {
    let scratch = Scratch::new("nostart");
    // An executable script whose interpreter does not exist: the proxy's own check (the command
    // is there) passes, and the daemon's spawn of it fails (ENOENT for the interpreter).
    let program = scratch.file("broken-shebang");
    std::fs::write(&program, b"#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server: Vec<OsString> = vec![program.clone().into()];
    let (mut command, stderr) = scratch.proxy(&["--no-fallback"], &server);
    let started = Instant::now();
    let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(10));
    let elapsed = started.elapsed();
    let stderr = std::fs::read_to_string(stderr).unwrap();
    eprintln!("scenario 16: start failure reported and proxy exited in {elapsed:?}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("start the MCP server `{}`", program.display()))
            && stderr.contains("No such file"),
        "{stderr}"
    );
    assert!(stderr.contains("last lines of daemon.log:"), "{stderr}");
    assert!(
        stderr.contains("--no-fallback: not running it directly"),
        "{stderr}"
    );

    // Without --no-fallback it tries the server directly, which fails the same way.
    let (mut command, stderr) = scratch.proxy(&[], &server);
    let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(1));
    let stderr = std::fs::read_to_string(stderr).unwrap();
    assert!(
        stderr.contains("running the MCP server directly")
            && stderr.contains(&format!("failed to run `{}`", program.display())),
        "{stderr}"
    );
}

/// Hosts keep a server's stderr only until the connection is up, so the proxy's warnings about
/// a lost daemon also go through MCP logging (`notifications/message`, level warning, logger
/// `shoal`) to a host that asked for log messages at that level, and to no other.
fn warnings_through_mcp_logging() {
    let scratch = Scratch::new("warn");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let mut asked = scratch.client("asked", &server);
    asked.initialize();
    asked
        .client
        .result("logging/setLevel", json!({"level": "info"}))
        .expect("setLevel");
    let mut quiet = scratch.client("quiet", &server);
    quiet.initialize();
    let daemon = status(&paths.socket).expect("status").pid;
    shoal_testkit::process::kill(daemon).unwrap();
    let from_shoal = |expected: &'static str| {
        move |message: &Value| {
            message["method"] == "notifications/message"
                && message["params"]["logger"] == "shoal"
                && message["params"]["level"] == "warning"
                && message["params"]["data"]
                    .as_str()
                    .is_some_and(|text| text.contains(expected))
        }
    };
    asked
        .client
        .expect(
            "the lost-daemon warning",
            WAIT,
            from_shoal("lost the shared MCP server"),
        )
        .unwrap();
    asked
        .client
        .expect("the reconnected warning", WAIT, from_shoal("reconnected"))
        .unwrap();
    asked.echo("after");
    // Its proxy writes any warning before the answers of the restored session.
    quiet.echo_after_loss("after");
    let heard: Vec<Value> = quiet
        .client
        .drain()
        .into_iter()
        .filter(|message| message["params"]["logger"] == "shoal")
        .collect();
    assert!(heard.is_empty(), "a host that never set a level: {heard:?}");
}

/// Hosts that drop `--` from a configured command line (Gemini CLI and the inspector do, through
/// yargs) hand `shoal proxy <server> <its options>`: that must name the same daemon as the `--`
/// form, with the server's own options passed on to it, not taken for shoal's.
fn command_without_double_dash() {
    let scratch = Scratch::new("nodash");
    let server = scratch.server(&["--name", "nodash"]);
    let paths = scratch.paths(&server);
    let mut with_dash = scratch.client("with --", &server);
    with_dash.initialize();
    let mut args = scratch.proxy_args(&[], &server);
    let dash = args
        .iter()
        .position(|arg| arg == "--")
        .expect("a -- in the args");
    args.remove(dash);
    let mut command = Command::new(SHOAL);
    command
        .args(&args)
        .env("SHOAL_RUNTIME_DIR", &scratch.runtime_dir)
        .env_remove("SHOAL_LOG");
    let stderr = scratch.file("nodash.stderr");
    command.stderr(File::create(&stderr).unwrap());
    let mut without = Session::spawn("without --", command, stderr);
    let result = without
        .client
        .initialize(json!({}))
        .unwrap_or_else(|error| panic!("initialize: {error}\n{}", without.stderr()));
    assert_eq!(
        result["serverInfo"]["name"], "nodash",
        "the server's --name was lost"
    );
    without.echo("no dash");
    assert_eq!(status(&paths.socket).expect("status").n_clients, 2);
}

/// A server command that does not exist is reported as not found, as a shell would (exit 127),
/// without starting a daemon or blaming shoal; a relative path is looked up from the project
/// root, where the daemon would run it.
fn command_not_found() {
    let scratch = Scratch::new("missing");
    for (server, says) in [
        (
            "no-such-mcp-server-anywhere",
            "command not found (searched PATH=",
        ),
        ("./bin/missing-server", "is not an executable file"),
    ] {
        let server = vec![OsString::from(server)];
        let (mut command, stderr) = scratch.proxy(&[], &server);
        let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
        assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(127));
        let stderr = std::fs::read_to_string(stderr).unwrap();
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("directly"), "{stderr}");
        assert!(
            !scratch.runtime_dir.exists()
                || std::fs::read_dir(&scratch.runtime_dir)
                    .unwrap()
                    .next()
                    .is_none(),
            "a daemon was started for a missing command"
        );
    }
    // The same relative path, once it exists under the root, is served.
    let bin = scratch.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(shoal_testkit::fixture_bin(), bin.join("missing-server")).unwrap();
    let mut session = scratch.client("relative", &[OsString::from("./bin/missing-server")]);
    session.initialize();
    session.echo("found from the root");
}

/// Scenario 19: the host is SIGKILLed while its proxy's stdin stays open (another process holds
/// it) → the proxy exits within 1 s (asserted with slack), and the daemon's client count drops.
fn host_killed() {
    repeat("scenario 19", host_killed_round);
}

fn host_killed_round() {
    let scratch = Scratch::new("host");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let mut host = Host::spawn(&scratch, &scratch.proxy_args(&[], &server));
    host.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "h", "version": "1"}}}));
    let answer = host.line("initialize answer");
    assert!(
        answer.contains(r#""id":1"#) && answer.contains("result"),
        "{answer}"
    );
    assert_eq!(status(&paths.socket).expect("status").n_clients, 1);
    let proxy = host.proxy_pid;
    host.child.kill().unwrap();
    let killed = Instant::now();
    host.child.wait().unwrap();
    wait_until(
        "the proxy exits after its host",
        Duration::from_secs(5),
        || !is_alive(proxy),
    );
    eprintln!(
        "scenario 19: proxy gone {:?} after its host",
        killed.elapsed()
    );
    wait_until("the daemon's client count drops", WAIT, || {
        status(&paths.socket).is_some_and(|report| report.n_clients == 0)
    });
}

/// Scenario 20: the daemon is SIGKILLed while each of several proxies has requests in flight →
/// every one of them gets an error response (-32081), each proxy reconnects to one new daemon
/// (one new backend), replays its session, and the host's next request works without
/// re-initializing; the proxies live on and their stdout never closes.
fn daemon_killed_under_load() {
    repeat("scenario 20", daemon_killed_round);
}

fn daemon_killed_round() {
    const PROXIES: usize = 4;
    const IN_FLIGHT: usize = 3;
    const ECHOES: usize = 16;
    let scratch = Scratch::new("killed");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let mut sessions: Vec<Session> = (0..PROXIES)
        .map(|n| scratch.client(&format!("proxy {n}"), &server))
        .collect();
    for (n, session) in sessions.iter_mut().enumerate() {
        session.initialize();
        session
            .client
            .result("logging/setLevel", json!({"level": "debug"}))
            .unwrap();
        session
            .client
            .result(
                "resources/subscribe",
                json!({"uri": format!("fixture://static/{}", n + 1)}),
            )
            .unwrap();
    }
    let old = status(&paths.socket).expect("status");
    // The slow calls are running in the backend: its stats say so.
    let mut in_flight = Vec::new();
    for session in &mut sessions {
        let ids: Vec<Value> = (0..IN_FLIGHT)
            .map(|_| {
                session
                    .client
                    .send_request(
                        "tools/call",
                        json!({"name": "slow", "arguments": {"ms": 60_000, "steps": 1}}),
                    )
                    .unwrap()
            })
            .collect();
        in_flight.push(ids);
    }
    // A host the server is waiting on: its `sample` call is in flight, and so is the server's
    // sampling request to it, unanswered.
    let mut asked = scratch.client("asked", &server);
    asked
        .client
        .initialize(json!({"sampling": {}}))
        .unwrap_or_else(|error| panic!("asked: initialize: {error}\nstderr:\n{}", asked.stderr()));
    let sample_call = asked
        .client
        .send_request(
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "hi"}}),
        )
        .unwrap();
    let sampling = asked
        .client
        .expect_request("sampling/createMessage", WAIT)
        .unwrap();
    let mut probe = scratch.client("probe", &server);
    probe.initialize();
    wait_until("the slow calls reach the backend", WAIT, || {
        probe.client.stats().unwrap()["inFlight"]
            .as_array()
            .is_some_and(|ids| ids.len() >= PROXIES * IN_FLIGHT)
    });
    drop(probe);
    // Echoes pipelined right before the kill land anywhere: still in the proxy, in the daemon,
    // at the backend, or answered and on their way back. Each must get exactly one response:
    // its result or shoal's error, never nothing.
    let echoes: Vec<Vec<(Value, String)>> = sessions
        .iter_mut()
        .enumerate()
        .map(|(n, session)| {
            (0..ECHOES)
                .map(|k| {
                    let text = format!("echo {k} from proxy {n}");
                    let id = session
                        .client
                        .send_request(
                            "tools/call",
                            json!({"name": "echo", "arguments": {"text": text}}),
                        )
                        .unwrap();
                    (id, text)
                })
                .collect()
        })
        .collect();

    shoal_testkit::process::kill(old.pid).unwrap();
    let killed = Instant::now();
    let (mut answered, mut failed) = (0, 0);
    for (session, echoes) in sessions.iter_mut().zip(&echoes) {
        for (id, text) in echoes {
            let name = session.client.name().to_owned();
            let response = session
                .client
                .wait_response(id, WAIT)
                .unwrap_or_else(|error| panic!("{name}: {error}\nstderr:\n{}", session.stderr()));
            match response.error() {
                Some(error) => {
                    assert_eq!(error.code, -32081, "{name}: {error:?}");
                    failed += 1;
                }
                None => {
                    let result = response.into_result().unwrap();
                    assert_eq!(result["content"][0]["text"], Value::from(text.as_str()));
                    answered += 1;
                }
            }
        }
    }
    eprintln!(
        "scenario 20: of {} echoes pipelined before the kill, {answered} answered, {failed} failed",
        PROXIES * ECHOES
    );
    for (session, ids) in sessions.iter_mut().zip(&in_flight) {
        for id in ids {
            let name = session.client.name().to_owned();
            let response = session
                .client
                .wait_response(id, WAIT)
                .unwrap_or_else(|error| panic!("{name}: {error}\nstderr:\n{}", session.stderr()));
            let error = response
                .error()
                .unwrap_or_else(|| panic!("{name}: expected an error: {response:?}"));
            assert_eq!(error.code, -32081, "{name}: {error:?}");
        }
    }
    // The host waited on by the lost daemon: its call fails, the server's request is withdrawn,
    // and its late answer goes nowhere; the session goes on.
    let response = asked.client.wait_response(&sample_call, WAIT).unwrap();
    assert_eq!(
        response.error().map(|error| error.code),
        Some(-32081),
        "{response:?}"
    );
    let withdrawn = asked
        .client
        .expect_notification("notifications/cancelled", WAIT)
        .unwrap();
    assert_eq!(
        withdrawn["params"]["requestId"], sampling["id"],
        "{withdrawn}"
    );
    asked
        .client
        .respond(
            &sampling["id"],
            json!({"role": "assistant", "content": {"type": "text", "text": "late"}, "model": "m"}),
        )
        .unwrap();
    asked.echo("after the withdrawal");
    drop(asked);
    eprintln!(
        "scenario 20: {} in-flight requests answered {:?} after the daemon's SIGKILL",
        PROXIES * IN_FLIGHT,
        killed.elapsed()
    );
    for (n, session) in sessions.iter_mut().enumerate() {
        session.echo(&format!("still here {n}"));
    }
    eprintln!(
        "scenario 20: every proxy served again {:?} after the SIGKILL",
        killed.elapsed()
    );
    let new = status(&paths.socket).expect("status of the new daemon");
    assert_ne!(new.pid, old.pid);
    assert_eq!(new.n_clients as usize, PROXIES, "{new:?}");
    assert_eq!(
        scratch.spawns(),
        2,
        "one backend for the first daemon, one for the new one"
    );
    let stats = sessions[0].client.stats().unwrap();
    assert_eq!(stats["initializeCount"], 1, "{stats}");
    assert_eq!(
        stats["logLevel"], "debug",
        "the level was replayed: {stats}"
    );
    let subscribed = stats["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for n in 0..PROXIES {
        let uri = Value::from(format!("fixture://static/{}", n + 1));
        assert!(subscribed.contains(&uri), "{uri} replayed: {stats}");
    }
    for session in &sessions {
        assert!(is_alive(session.pid()), "{}", session.stderr());
        assert!(
            session
                .stderr()
                .contains("reconnected to the shared daemon"),
            "{}",
            session.stderr()
        );
    }
    // Exactly one response per request: nothing answered twice is left over.
    for session in &mut sessions {
        let name = session.client.name().to_owned();
        let stray: Vec<Value> = session
            .client
            .drain()
            .into_iter()
            .filter(|message| message.get("method").is_none())
            .collect();
        assert!(
            stray.is_empty(),
            "{name}: responses nobody asked for: {stray:?}"
        );
    }
    // The killed daemon was a child of one of the proxies, which reaped it: no zombie remains.
    wait_until("the killed daemon is reaped", WAIT, || reaped(old.pid));
}

/// A host holds server-to-client requests (sampling requests: its user is deciding) when the
/// daemon is SIGKILLed. The session goes on with a new daemon, whose requests must not reuse a
/// held request's id (the host still has them open, and ids must be unique among its server's
/// requests), and the host's late answers to the held requests must not be taken for answers to
/// new ones. Found by `cargo xtask interop`: every daemon numbered its requests from the same
/// start, so a new daemon serving the same session reused the held ids. Several requests are held
/// and asked again, so that the two ranges of ids overlap whatever the daemons' start-up traffic.
fn server_requests_held_across_a_daemon_kill() {
    held_requests_round(&Scratch::new("held"));
}

/// The same, with a first daemon that sends lines (`shoal daemon --lines`, as a shoal from before
/// routed frames does): what the proxy learns from lines (requests owed, requests held) is what
/// it answers and withdraws when that daemon dies; the daemon it starts next sends frames.
fn daemon_without_routed_frames() {
    let scratch = Scratch::new("lines");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let mut daemon = serving_daemon(&scratch, &server, "--lines");
    assert!(
        !proxy_util::daemon_hello(&paths.socket).routed_frames,
        "a --lines daemon offers no routed frames"
    );
    held_requests_round(&scratch);
    wait_until("the killed daemon is reaped", WAIT, || {
        daemon.try_wait().unwrap().is_some()
    });
    let next = proxy_util::daemon_hello(&paths.socket);
    assert!(
        next.routed_frames && next.pid != daemon.id(),
        "the daemon started after it offers routed frames: {next:?}"
    );
}

/// The daemon reads the host's stdin itself, in custody (`shoal_ipc::custody`), and is SIGKILLed
/// at each step of taking the host's next line (`SHOAL_TEST_CUSTODY_KILL`): after copying it and
/// before moving it into the custody pipe (it is still the host's: the next daemon serves it),
/// after moving it and before forwarding it (it counts as sent: answered -32081, once), and in
/// the middle of a line the host is still writing, or one too long for the custody pipe (the
/// proxy completes it from its stdin: the next daemon serves it whole). Each time the request is
/// answered exactly once, and the session goes on.
fn custody_kill_points() {
    // Steps 1 and 2 take the initialize and, in one write, `initialized` and a ping.
    let cases = [
        ("copied:3", "whole", false),
        ("moved:3", "whole", true),
        ("copied:3", "half", false),
        ("moved:3", "half", false),
        ("moved:5", "long", false),
    ];
    for (point, shape, lost) in cases {
        let name = format!("{point} {shape}");
        let scratch = Scratch::new(&format!("custody-{}-{shape}", point.replace(':', "")));
        let server = scratch.server(&[]);
        let paths = scratch.paths(&server);
        let (mut command, stderr) = scratch.proxy(&[], &server);
        command.env("SHOAL_TEST_CUSTODY_KILL", point);
        let mut session = Session::spawn("host", command, stderr);
        let params = json!({
            "protocolVersion": shoal_testkit::client::LATEST_PROTOCOL_VERSION,
            "capabilities": {}, "clientInfo": {"name": "custody", "version": "1"}});
        session
            .client
            .result("initialize", params)
            .unwrap_or_else(|error| panic!("{name}: initialize: {error}\n{}", session.stderr()));
        let daemon = status(&paths.socket).expect("status").pid;
        let two = format!(
            "{}\n{}\n",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 100, "method": "ping"})
        );
        session.client.send_bytes(two.as_bytes()).unwrap();
        let pong = session.client.wait_response(&json!(100), WAIT).unwrap();
        assert!(pong.error().is_none(), "{name}: {pong:?}");
        let text = if shape == "long" {
            "x".repeat(300 * 1024)
        } else {
            "in custody".to_owned()
        };
        let line = format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}}})
        );
        if shape == "half" {
            let (first, rest) = line.as_bytes().split_at(line.len() / 2);
            session.client.send_bytes(first).unwrap();
            // The daemon dies on taking the first half; only then does the rest come.
            wait_until(&format!("{name}: the daemon dies"), WAIT, || reaped(daemon));
            session.client.send_bytes(rest).unwrap();
        } else {
            session.client.send_bytes(line.as_bytes()).unwrap();
        }
        let answer = session
            .client
            .wait_response(&json!(7), WAIT)
            .unwrap_or_else(|error| panic!("{name}: {error}\n{}", session.stderr()));
        if lost {
            assert_eq!(
                answer.error().map(|error| error.code),
                Some(-32081),
                "{name}: {answer:?}"
            );
        } else {
            let result = answer
                .into_result()
                .unwrap_or_else(|error| panic!("{name}: {error}\n{}", session.stderr()));
            assert_eq!(
                result["content"][0]["text"].as_str().map(str::len),
                Some(text.len()),
                "{name}: the request was served whole"
            );
        }
        // Exactly once: nothing more about id 7 comes before the answer to the next request.
        let next = session
            .client
            .send_request(
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "next"}}),
            )
            .unwrap();
        loop {
            let message = session.client.recv(WAIT).unwrap();
            assert_ne!(
                message["id"],
                json!(7),
                "{name}: a second answer: {message}"
            );
            if message["id"] == next {
                assert_eq!(
                    message["result"]["content"][0]["text"], "next",
                    "{name}: {message}"
                );
                break;
            }
        }
        assert!(
            reaped(daemon) || !is_alive(daemon),
            "{name}: the daemon was not killed"
        );
        let new = status(&paths.socket).expect("a new daemon").pid;
        assert_ne!(new, daemon, "{name}");
        session.client.close_input();
        let status = session.client.wait_exit(WAIT).unwrap();
        assert_eq!(status.code(), Some(0), "{name}: {}", session.stderr());
    }
}

/// A daemon that does not offer custody (`shoal daemon --no-custody`, as a shoal from before it
/// does) gets the host's messages over the socket, as before.
fn daemon_without_custody() {
    let scratch = Scratch::new("nocustody");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let mut daemon = serving_daemon(&scratch, &server, "--no-custody");
    let hello = proxy_util::daemon_hello(&paths.socket);
    assert!(hello.routed_frames && !hello.custody, "{hello:?}");
    let mut session = scratch.client("host", &server);
    session.client.initialize(json!({})).unwrap();
    let result = session
        .client
        .call_tool("echo", json!({"text": "over the socket"}))
        .unwrap();
    assert_eq!(result["content"][0]["text"], "over the socket");
    session.client.close_input();
    assert_eq!(session.client.wait_exit(WAIT).unwrap().code(), Some(0));
    assert_eq!(status(&paths.socket).expect("status").pid, daemon.id());
    daemon.kill().unwrap();
    let _ = daemon.wait();
}

/// A `shoal daemon FLAG` for `server`, started by hand (as a shoal without what FLAG turns off
/// would be), once it serves.
fn serving_daemon(scratch: &Scratch, server: &[OsString], flag: &str) -> std::process::Child {
    let paths = scratch.paths(server);
    let daemon = Command::new(SHOAL)
        .args(["daemon", flag, "--root"])
        .arg(&scratch.root)
        .args(["--idle-timeout", "60", "--"])
        .args(server)
        .env("SHOAL_RUNTIME_DIR", &scratch.runtime_dir)
        .env_remove("SHOAL_IDLE_TIMEOUT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(scratch.file(&format!("daemon{flag}.stderr"))).unwrap())
        .spawn()
        .unwrap();
    wait_until(&format!("the {flag} daemon serves"), WAIT, || {
        status(&paths.socket).is_some()
    });
    daemon
}

fn held_requests_round(scratch: &Scratch) {
    const HELD: usize = 4;
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let mut session = scratch.client("host", &server);
    session
        .client
        .initialize(json!({"sampling": {}}))
        .unwrap_or_else(|error| panic!("initialize: {error}\nstderr:\n{}", session.stderr()));
    let ask_all = |session: &mut Session, round: &str| -> (Vec<Value>, Vec<Value>) {
        let calls: Vec<Value> = (0..HELD)
            .map(|n| {
                let prompt = format!("{round} {n}");
                let call = json!({"name": "sample", "arguments": {"prompt": prompt}});
                session.client.send_request("tools/call", call).unwrap()
            })
            .collect();
        let requests = (0..HELD)
            .map(|_| {
                session
                    .client
                    .expect_request("sampling/createMessage", WAIT)
                    .unwrap_or_else(|error| {
                        panic!("{round}: {error}\nstderr:\n{}", session.stderr())
                    })
            })
            .collect();
        (calls, requests)
    };
    let (lost, held) = ask_all(&mut session, "first");

    let old = status(&paths.socket).expect("status");
    shoal_testkit::process::kill(old.pid).unwrap();
    for call in &lost {
        let answer = session.client.wait_response(call, WAIT).unwrap();
        assert_eq!(
            answer.error().map(|error| error.code),
            Some(-32081),
            "{answer:?}"
        );
    }

    // The same session asks again (as -32081 invites): the new daemon relays new requests.
    let (calls, fresh) = ask_all(&mut session, "second");
    let held_ids: Vec<&Value> = held.iter().map(|request| &request["id"]).collect();
    for request in &fresh {
        assert!(
            !held_ids.contains(&&request["id"]),
            "the new daemon reused the id of a request the host still holds: {request}, held: \
             {held_ids:?}"
        );
    }
    // The user answers the old dialogs first, then the new ones, each quoting what it answers.
    let reply = |request: &Value, text: &str| {
        let prompt = request["params"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap_or("?");
        json!({"role": "assistant", "content": {"type": "text", "text": format!("{text} {prompt}")}, "model": "m"})
    };
    for request in &held {
        session
            .client
            .respond(&request["id"], reply(request, "stale"))
            .unwrap();
    }
    for request in &fresh {
        session
            .client
            .respond(&request["id"], reply(request, "fresh"))
            .unwrap();
    }
    for (n, call) in calls.iter().enumerate() {
        let result = session
            .client
            .wait_response(call, WAIT)
            .unwrap()
            .into_result()
            .unwrap();
        assert_eq!(
            result["structuredContent"]["response"]["content"]["text"],
            format!("fresh second {n}"),
            "the server got another request's answer: {result}"
        );
    }
    assert_eq!(status(&paths.socket).expect("status").n_clients, 1);
}

/// The fallback: with an unusable runtime dir (a regular file; a directory writable by others),
/// the proxy says why and runs the server directly, which answers; with --no-fallback it exits 1.
/// One host passes `XDG_RUNTIME_DIR` to its servers (a desktop login's), another strips it (Codex
/// CLI keeps a fixed list): both sessions must find one daemon, which lives in the default
/// runtime dir for the uid. The project root is this test's own, so its key is too.
fn xdg_runtime_dir_does_not_split_sessions() {
    let scratch = Scratch::new("xdg");
    let server = scratch.server(&[]);
    let xdg = scratch.file("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (runtime_dir, _) =
        shoal_ipc::resolve_runtime_dir(|_| None, nix::unistd::geteuid().as_raw());
    let key = shoal_ipc::DaemonKey::new(
        scratch.root.clone(),
        server.clone(),
        env!("CARGO_PKG_VERSION"),
        shoal_wire::PROTOCOL,
        vec![],
    );
    let paths = shoal_ipc::DaemonPaths::new(&runtime_dir, &key.id());
    let mut sessions = Vec::new();
    for (name, xdg) in [("passes", Some(&xdg)), ("strips", None)] {
        let (mut command, stderr) = scratch.proxy(&[], &server);
        command.env_remove("SHOAL_RUNTIME_DIR");
        match xdg {
            Some(dir) => command.env("XDG_RUNTIME_DIR", dir),
            None => command.env_remove("XDG_RUNTIME_DIR"),
        };
        let mut session = Session::spawn(name, command, stderr);
        session.initialize();
        session.echo(name);
        sessions.push(session);
    }
    let report = status(&paths.socket).expect("one daemon in the default runtime dir");
    assert_eq!(report.n_clients, 2, "the two hosts' sessions were split");
    assert!(
        !xdg.join("shoal").exists(),
        "a daemon went to $XDG_RUNTIME_DIR/shoal"
    );
    drop(sessions);
    // Only this test's daemon: the default runtime dir may hold the user's own.
    if let Some(stream) = proxy_util::connect_as(&paths.socket, shoal_wire::Role::Control) {
        let _ = proxy_util::control_on(&stream, &shoal_wire::ControlRequest::Stop);
    }
    wait_until("this test's daemon stops", WAIT, || !is_alive(report.pid));
    let _ = std::fs::remove_dir_all(&paths.dir);
}

/// Proxies on the slow path of a key whose old dir `shoal status` prunes: waiting for the old
/// `spawn.lock` when the dir is moved away, each finds its lock removed and starts over; racing
/// real pruners, none falls back, none fails, and one daemon in one new dir serves them all.
fn pruning_races_proxies() {
    const PROXIES: usize = 6;
    const PRUNERS: usize = 3;
    for round in 0..4 {
        let scratch = Scratch::new("prune");
        let server = scratch.server(&[]);
        let paths = scratch.paths(&server);
        // A daemon that ran and stopped cleanly a day and more ago.
        let mut first = scratch.client("first", &server);
        first.initialize();
        drop(first);
        let stop = Command::new(SHOAL)
            .args(["stop", "--all"])
            .env("SHOAL_RUNTIME_DIR", &scratch.runtime_dir)
            .output()
            .unwrap();
        assert!(
            stop.status.success(),
            "{}",
            String::from_utf8_lossy(&stop.stderr)
        );
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&paths.meta).unwrap()).unwrap();
        meta["exited"]["at_unix_ms"] = serde_json::json!(1_000_000_u64);
        std::fs::write(&paths.meta, serde_json::to_vec(&meta).unwrap()).unwrap();

        let deterministic = round % 2 == 0;
        let held = deterministic.then(|| {
            let lock = shoal_lockfile::PersistentLock::new(&paths.spawn_lock).unwrap();
            lock.try_lock().unwrap()
        });
        let pruners: Vec<std::process::Child> = if deterministic {
            Vec::new()
        } else {
            (0..PRUNERS)
                .map(|_| {
                    Command::new(SHOAL)
                        .arg("status")
                        .env("SHOAL_RUNTIME_DIR", &scratch.runtime_dir)
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect()
        };
        let mut sessions: Vec<Session> = (0..PROXIES)
            .map(|n| {
                let (mut command, stderr) = scratch.proxy(&["--no-fallback"], &server);
                command.env("SHOAL_LOG", "info,shoal_proxy=debug");
                Session::spawn(&format!("proxy {n}"), command, stderr)
            })
            .collect();
        if let Some(held) = held {
            // Every proxy found no daemon and is on its way to the old spawn.lock; then the
            // dir goes, as the pruner moves it, and the lock is let go.
            for session in &sessions {
                wait_until("the proxy takes the slow path", WAIT, || {
                    session.stderr().contains("no daemon answered")
                });
            }
            // As the pruner does: renamed, unlocked, deleted.
            let grave = scratch.runtime_dir.join(".pruned-by-test");
            std::fs::rename(&paths.dir, &grave).unwrap();
            drop(held);
            let _ = std::fs::remove_dir_all(&grave);
        }
        for (n, session) in sessions.iter_mut().enumerate() {
            session.initialize();
            session.echo(&format!("after pruning {n}"));
        }
        for mut pruner in pruners {
            assert!(pruner.wait().unwrap().success());
        }
        let report = status(&paths.socket).expect("a daemon serves the key's dir");
        assert_eq!(report.n_clients, PROXIES as u32, "{report:?}");
        let key_dirs = std::fs::read_dir(&scratch.runtime_dir)
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                !name.to_string_lossy().starts_with('.')
            })
            .count();
        assert_eq!(key_dirs, 1, "one key dir");
        // One decider at a time: no proxy holding a lock that was no longer at the path went on
        // to start a second daemon.
        let log = read(&paths.log);
        assert_eq!(log.matches("daemon ready").count(), 1, "{log}");
        assert!(
            !log.contains("another daemon already serves this key"),
            "a proxy started a second daemon:\n{log}"
        );
        let restarted = sessions
            .iter()
            .filter(|session| session.stderr().contains("the spawn lock was removed"))
            .count();
        if deterministic {
            assert!(restarted >= 1, "no proxy met the removed lock");
        }
        eprintln!(
            "pruning round {round} ({}): {restarted} of {PROXIES} proxies started over",
            if deterministic {
                "lock held"
            } else {
                "racing pruners"
            }
        );
        proxy_util::stop_daemons_in(&scratch.runtime_dir);
    }
}

/// A session joining a server started from another environment is warned, on stderr, about the
/// variables it sets otherwise (not about noise like `PWD`, nor about what it lacks); the daemon
/// logs them once however many such sessions join, `shoal status` shows them, and no value is
/// ever written anywhere.
fn environment_differences() {
    let scratch = Scratch::new("environ");
    let server = scratch.server(&[]);
    let session = |name: &str, env: &[(&str, &str)]| {
        let (mut command, stderr) = scratch.proxy(&[], &server);
        command.env_remove("DATABASE_URL").env_remove("API_TOKEN");
        for (variable, value) in env {
            command.env(variable, value);
        }
        let mut session = Session::spawn(name, command, stderr);
        session.initialize();
        session.echo(name);
        session
    };
    let first = session(
        "first",
        &[("DATABASE_URL", "postgres://first"), ("PWD", "/a")],
    );
    let plain = session(
        "plain",
        &[("DATABASE_URL", "postgres://first"), ("PWD", "/b")],
    );
    let others: Vec<Session> = (0..2)
        .map(|n| {
            session(
                &format!("other-{n}"),
                &[
                    ("DATABASE_URL", "postgres://second-secret"),
                    ("API_TOKEN", "tok-secret"),
                ],
            )
        })
        .collect();
    for quiet in [&first, &plain] {
        assert!(!quiet.stderr().contains("otherwise"), "{}", quiet.stderr());
    }
    for other in &others {
        assert!(
            other.stderr().contains(
                "this session sets DATABASE_URL, API_TOKEN otherwise than the environment the \
                 shared MCP server was started with"
            ),
            "{}",
            other.stderr()
        );
    }
    let paths = scratch.paths(&server);
    let report = status(&paths.socket).expect("the daemon answers status");
    assert_eq!(report.env_differs, ["API_TOKEN", "DATABASE_URL"]);
    let log = read(&paths.log);
    assert_eq!(
        log.matches("variables=\"DATABASE_URL,API_TOKEN\"").count()
            + log.matches("variables=DATABASE_URL,API_TOKEN").count(),
        1,
        "logged once: {log}"
    );
    for written in [log, others[0].stderr(), first.stderr()] {
        assert!(
            !written.contains("secret"),
            "a value was written: {written}"
        );
    }
    let listing = Command::new(SHOAL)
        .args(["status", "--json"])
        .env("SHOAL_RUNTIME_DIR", &scratch.runtime_dir)
        .env("SHOAL_CONFIG", proxy_util::NO_CONFIG)
        .output()
        .unwrap();
    let entries: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(
        entries[0]["env_differs"],
        serde_json::json!(["API_TOKEN", "DATABASE_URL"])
    );
}

/// A host that strips every `SHOAL_*` variable (Codex CLI passes servers a fixed list) still gets
/// the runtime dir the user configured, so its session finds the daemon of a host that passed
/// the variable; the environment overrides the file; a mistake in the file is a clear error.
fn config_file_settings() {
    let scratch = Scratch::new("config");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let config = scratch.file("config.toml");
    std::fs::write(
        &config,
        format!(
            "# shoal\nruntime_dir = {:?}\n",
            scratch.runtime_dir.display().to_string()
        ),
    )
    .unwrap();
    // A host that passes SHOAL_RUNTIME_DIR starts the daemon.
    let mut passing = scratch.client("passing", &server);
    passing.initialize();
    let daemon = status(&paths.socket).expect("status").pid;
    // One that strips it finds the same daemon through the config file.
    let (mut command, stderr) = scratch.proxy(&[], &server);
    command
        .env_remove("SHOAL_RUNTIME_DIR")
        .env("SHOAL_CONFIG", &config);
    let mut stripping = Session::spawn("stripping", command, stderr);
    stripping.initialize();
    stripping.echo("shared");
    let report = status(&paths.socket).expect("status");
    assert_eq!((report.pid, report.n_clients), (daemon, 2));

    // The environment wins over the file: a runtime dir of its own, so a daemon of its own.
    let elsewhere = scratch.file("elsewhere");
    let (mut command, stderr) = scratch.proxy(&[], &server);
    command
        .env("SHOAL_RUNTIME_DIR", &elsewhere)
        .env("SHOAL_CONFIG", &config);
    let mut own = Session::spawn("own", command, stderr);
    own.initialize();
    own.echo("apart");
    assert!(
        elsewhere.is_dir(),
        "the environment's runtime dir was not used"
    );
    assert_eq!(status(&paths.socket).expect("status").n_clients, 2);

    std::fs::write(&config, "idle_timout = 5\n").unwrap();
    let (mut command, stderr) = scratch.proxy(&["--no-fallback"], &server);
    command
        .env_remove("SHOAL_RUNTIME_DIR")
        .env("SHOAL_CONFIG", &config);
    let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
    assert_eq!(wait_exit(&mut child, WAIT), Some(2));
    let stderr = std::fs::read_to_string(stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "read {}: unknown setting `idle_timout`",
            config.display()
        )),
        "{stderr}"
    );
    drop(own);
    proxy_util::stop_daemons_in(&elsewhere);
}

/// The parent pid of `pid`, from `/proc/<pid>/stat` (the field after the state, which follows
/// the parenthesised command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Every live descendant of `root`, found by parent pids, as a host killing "its server's
/// process tree" finds them (opencode does this on exit).
fn descendants(root: u32) -> Vec<u32> {
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(pids.iter().filter(|&&pid| parent_of(pid) == Some(parent)));
        index += 1;
    }
    found.remove(0);
    found
}

/// Scenario: a host kills its proxy's whole process tree on exit. The daemon that proxy started is
/// in no one's tree (it was re-parented away at start), so it survives, and another session of
/// the same project keeps its server and its state.
fn process_tree_kill_spares_the_daemon() {
    for round in 0..3 {
        let scratch = Scratch::new("tree");
        let server = scratch.server(&[]);
        let paths = scratch.paths(&server);
        let mut first = scratch.client("first", &server);
        first.initialize();
        let daemon = status(&paths.socket).expect("status").pid;
        let mut ancestor = Some(daemon);
        while let Some(pid) = ancestor.filter(|&pid| pid > 1) {
            assert_ne!(
                pid,
                first.pid(),
                "round {round}: the daemon descends from its proxy"
            );
            ancestor = parent_of(pid);
        }
        let mut second = scratch.client("second", &server);
        second.initialize();
        second.echo("before");
        let tree = descendants(first.pid());
        assert!(!tree.contains(&daemon), "round {round}: {tree:?}");
        for pid in tree.iter().chain([first.pid()].iter()) {
            let _ = shoal_testkit::process::terminate(*pid);
        }
        wait_until("the first proxy exits", WAIT, || !is_alive(first.pid()));
        second.echo("after");
        assert!(
            is_alive(daemon),
            "round {round}: the shared daemon was killed"
        );
        assert_eq!(status(&paths.socket).expect("status").pid, daemon);
    }
}

/// A host that stopped reading its stdout (the pipe full, a 1 MiB result half written) must not
/// make its proxy deaf: a SIGTERM still ends it (at the drain bound), and so does its host's
/// death while someone else still holds the pipe. Each case is a few rounds.
fn blocked_write_still_stops() {
    for round in 0..4 {
        let by_sigterm = round % 2 == 0;
        let scratch = Scratch::new("blocked");
        let server = scratch.server(&[]);
        let (stdout_read, stdout_write) = std::io::pipe().unwrap();
        // The smallest pipe the kernel allows: full after a few KiB of the result.
        nix::fcntl::fcntl(&stdout_write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
        let probe = stdout_write.try_clone().unwrap();
        let pid_file = scratch.file("proxy.pid");
        let mut host = Command::new(std::env::current_exe().unwrap())
            .arg("host-inherit")
            .arg(&pid_file)
            .args(scratch.proxy_args(&[], &server))
            .env("SHOAL_RUNTIME_DIR", &scratch.runtime_dir)
            .env_remove("SHOAL_LOG")
            .stdin(Stdio::piped())
            .stdout(stdout_write)
            .stderr(File::create(scratch.file("host.stderr")).unwrap())
            .spawn()
            .unwrap();
        let proxy = shoal_testkit::process::read_pid_file(&pid_file, WAIT).unwrap();
        let input = host.stdin.as_mut().unwrap();
        for message in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "deaf", "version": "1"}}}),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "big", "arguments": {"bytes": 1 << 20}}}),
        ] {
            writeln!(input, "{message}").unwrap();
        }
        wait_until("the proxy fills the host's pipe", WAIT, || {
            let mut fds = [nix::poll::PollFd::new(
                probe.as_fd(),
                nix::poll::PollFlags::POLLOUT,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() == 0
        });
        if by_sigterm {
            shoal_testkit::process::terminate(proxy).unwrap();
        } else {
            host.kill().unwrap();
            host.wait().unwrap();
        }
        let how = if by_sigterm {
            "SIGTERM"
        } else {
            "its host's death"
        };
        wait_until(&format!("the blocked proxy stops on {how}"), WAIT, || {
            !is_alive(proxy)
        });
        let _ = host.kill();
        let _ = host.wait();
        drop(stdout_read);
    }
}

/// A runtime dir that another user created first (0700, theirs) makes `connect` fail with
/// EACCES; the proxy names the directory and its owner instead of blaming a sandbox. As root the
/// proxy runs as `nobody` against a root-owned dir; otherwise `/root` is the other user's dir.
fn another_users_runtime_dir() {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::process::CommandExt as _;
    let scratch = Scratch::new("foreign");
    // A server everyone can run (it is never started: the connect fails first), so that the
    // command check passes whoever runs the proxy.
    let mut args = scratch.proxy_args(&["--no-fallback"], &[OsString::from("/bin/sh")]);
    // The project root must be reachable by whoever runs the proxy.
    args[2] = "/tmp".into();
    // A copy of `shoal` that the other user can run wherever this checkout is (a private
    // temporary clone, say), started from a directory everyone may enter.
    let base = scratch.runtime_dir.parent().expect("the scratch base");
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = scratch.file("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let shoal = bin.join("shoal");
    std::fs::copy(SHOAL, &shoal).unwrap();
    std::fs::set_permissions(&shoal, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new(&shoal);
    command
        .args(&args)
        .current_dir("/")
        .env_remove("SHOAL_LOG")
        .stdin(Stdio::piped());
    let (runtime_dir, owner, us) = if nix::unistd::geteuid().is_root() {
        std::fs::create_dir(&scratch.runtime_dir).unwrap();
        std::fs::set_permissions(&scratch.runtime_dir, std::fs::Permissions::from_mode(0o700))
            .unwrap();
        command.uid(65534).gid(65534);
        (scratch.runtime_dir.clone(), 0, 65534)
    } else {
        let root = PathBuf::from("/root");
        let metadata = std::fs::metadata(&root).expect("/root exists");
        assert!(
            metadata.uid() == 0 && metadata.mode() & 0o077 == 0,
            "this test needs root, or a private /root to stand for another user's dir"
        );
        (root, 0, nix::unistd::geteuid().as_raw())
    };
    command.env("SHOAL_RUNTIME_DIR", &runtime_dir);
    let stderr_path = scratch.file("foreign.stderr");
    command.stderr(File::create(&stderr_path).unwrap());
    let mut child = command.spawn().unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(1));
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        stderr.contains(&format!(
            "use {}: it belongs to uid {owner}, not to you (uid {us})",
            runtime_dir.display()
        )) && stderr.contains("SHOAL_RUNTIME_DIR"),
        "{stderr}"
    );
    assert!(!stderr.contains("sandbox"), "{stderr}");
}

fn fallback_when_the_runtime_dir_is_unusable() {
    for unusable in ["file", "mode 0777"] {
        let scratch = Scratch::new("fallback");
        match unusable {
            "file" => std::fs::write(&scratch.runtime_dir, "not a directory").unwrap(),
            _ => {
                std::fs::create_dir(&scratch.runtime_dir).unwrap();
                std::fs::set_permissions(
                    &scratch.runtime_dir,
                    std::fs::Permissions::from_mode(0o777),
                )
                .unwrap();
            }
        }
        let server = scratch.server(&[]);
        let mut session = scratch.client("direct", &server);
        session.initialize();
        session.echo("served directly");
        let stats = session.client.stats().unwrap();
        assert_eq!(
            stats["pid"],
            session.pid(),
            "{unusable}: the proxy became the server"
        );
        let stderr = session.stderr();
        assert!(
            stderr.contains("running the MCP server directly")
                && stderr.contains(&scratch.runtime_dir.display().to_string()),
            "{unusable}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{unusable}: one line: {stderr}");

        let (mut command, stderr) = scratch.proxy(&["--no-fallback"], &server);
        let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
        assert_eq!(wait_exit(&mut child, WAIT), Some(1), "{unusable}");
        let stderr = std::fs::read_to_string(stderr).unwrap();
        assert!(
            stderr.starts_with("shoal: failed to share the MCP server")
                && stderr.contains("use the runtime directory"),
            "{unusable}: {stderr}"
        );
        assert_eq!(scratch.spawns(), 1, "{unusable}: only the direct run");
    }
}

/// stdin closes while a slow request is in flight → its answer is delivered, then exit 0.
fn stdin_eof_delivers_answers_owed() {
    let scratch = Scratch::new("eof");
    let server = scratch.server(&[]);
    let mut session = scratch.client("eof", &server);
    session.initialize();
    let id = session
        .client
        .send_request(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 1000, "steps": 1}}),
        )
        .unwrap();
    session.client.close_input();
    let response = session.client.wait_response(&id, WAIT).unwrap();
    assert!(response.error().is_none(), "{response:?}");
    let status = session.client.wait_exit(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "{}", session.stderr());
}

/// stdin closes while a request runs longer than the drain bound (3 s) → at the bound the proxy
/// answers it with an error saying why, then exits 0: a host that left is not kept waiting, and
/// the request is still answered exactly once.
fn stdin_eof_past_the_drain_bound() {
    let scratch = Scratch::new("drain");
    let server = scratch.server(&[]);
    let mut session = scratch.client("drain", &server);
    session.initialize();
    let id = session
        .client
        .send_request(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 60_000, "steps": 1}}),
        )
        .unwrap();
    session.client.close_input();
    let response = session.client.wait_response(&id, WAIT).unwrap();
    let error = response
        .error()
        .unwrap_or_else(|| panic!("expected an error: {response:?}"));
    assert!(
        error.message.contains("exiting (its input was closed)"),
        "{error:?}"
    );
    let status = session.client.wait_exit(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "{}", session.stderr());
}

/// The daemon is lost and no new one can start yet (the test holds `spawn.lock`): a request the
/// host sends meanwhile waits in the proxy's queue, and at the queue's patience (10 s) it is
/// answered with an error saying so. Once a daemon can start, the session carries on.
fn queue_patience_while_reconnecting() {
    let scratch = Scratch::new("patience");
    let server = scratch.server(&[]);
    let paths = scratch.paths(&server);
    let mut session = scratch.client("patient", &server);
    session.initialize();
    session
        .client
        .result("logging/setLevel", json!({"level": "warning"}))
        .unwrap();
    session.echo("before");
    let old = status(&paths.socket).expect("status");
    let lock = shoal_lockfile::PersistentLock::new(&paths.spawn_lock).unwrap();
    let held = lock.try_lock().unwrap();
    shoal_testkit::process::kill(old.pid).unwrap();
    // The proxy says it lost the daemon once it has answered what was in flight: from here on
    // it is reconnecting, and host messages queue.
    let told = session
        .client
        .expect_notification("notifications/message", WAIT)
        .unwrap();
    assert!(
        told.to_string().contains("lost the shared MCP server"),
        "{told}"
    );
    let queued = session
        .client
        .send_request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "queued"}}),
        )
        .unwrap();
    let response = session.client.wait_response(&queued, WAIT).unwrap();
    let error = response
        .error()
        .unwrap_or_else(|| panic!("expected an error: {response:?}"));
    assert!(
        error
            .message
            .contains("could not send this request in time"),
        "{error:?}"
    );
    drop(held);
    session.echo_after_loss("after");
    assert_eq!(
        scratch.spawns(),
        2,
        "the first backend and the one after the loss"
    );
}

/// SIGTERM while the host lives and a slow request is in flight → the answer is delivered, then
/// exit 0 (a host stopping its server does not lose the last answer).
fn sigterm_delivers_answers_owed() {
    let scratch = Scratch::new("term");
    let server = scratch.server(&[]);
    let mut session = scratch.client("term", &server);
    session.initialize();
    let id = session
        .client
        .send_request(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 1500, "steps": 3}, "_meta": {"progressToken": "t"}}),
        )
        .unwrap();
    // The first progress notification says the call runs in the backend: the proxy has read it
    // (a request still in the pipe when SIGTERM arrives is never read, and so not owed).
    session
        .client
        .expect_notification("notifications/progress", WAIT)
        .unwrap();
    shoal_testkit::process::terminate(session.pid()).unwrap();
    let response = session.client.wait_response(&id, WAIT).unwrap();
    assert!(response.error().is_none(), "{response:?}");
    let status = session.client.wait_exit(WAIT).unwrap();
    assert_eq!(status.code(), Some(0), "{}", session.stderr());
}

/// The proxy polls a host's pipes and sockets on its runtime (non-blocking) and falls back to
/// blocking reads and writes for anything else; either way the session works, and the flags of
/// the host's stdio are as they were once the proxy has exited (non-blocking mode belongs to the
/// open file, which the host may share).
fn host_stdio_kinds() {
    use std::os::fd::AsFd;

    fn nonblocking(fd: impl AsFd) -> bool {
        let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        nix::fcntl::OFlag::from_bits_retain(flags).contains(nix::fcntl::OFlag::O_NONBLOCK)
    }

    let scratch = Scratch::new("stdio");
    let server = scratch.server(&[]);

    // Pipes, as most hosts give them. Our clones share the proxy's open files.
    let (stdin_read, stdin_write) = std::io::pipe().unwrap();
    let (stdout_read, stdout_write) = std::io::pipe().unwrap();
    let stdin_seen = stdin_read.try_clone().unwrap();
    let stdout_seen = stdout_write.try_clone().unwrap();
    let (mut command, stderr) = scratch.proxy(&[], &server);
    command.stdin(stdin_read).stdout(stdout_write);
    let mut proxy = command.spawn().unwrap();
    let mut client =
        shoal_testkit::client::Client::from_streams(stdout_read, stdin_write).with_name("pipes");
    client.set_timeout(WAIT);
    client.initialize(json!({})).unwrap();
    let result = client.call_tool("echo", json!({"text": "pipes"})).unwrap();
    assert_eq!(result["content"][0]["text"], "pipes");
    // Answered, so the proxy set its stdio up: stdout polled, hence non-blocking; stdin held
    // in custody by the daemon, which reads it without changing its flags.
    assert!(
        !nonblocking(&stdin_seen),
        "stdin in custody was made non-blocking"
    );
    assert!(nonblocking(&stdout_seen), "stdout is not polled");
    client.close_input();
    assert_eq!(wait_exit(&mut proxy, WAIT), Some(0), "{}", read(&stderr));
    assert!(!nonblocking(&stdin_seen), "stdin left non-blocking");
    assert!(!nonblocking(&stdout_seen), "stdout left non-blocking");

    // One socket for both, as libuv (Node.js) hosts give it.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let theirs_seen = theirs.try_clone().unwrap();
    let (mut command, stderr) = scratch.proxy(&[], &server);
    command
        .stdin(std::os::fd::OwnedFd::from(theirs.try_clone().unwrap()))
        .stdout(std::os::fd::OwnedFd::from(theirs));
    let mut proxy = command.spawn().unwrap();
    let mut client = shoal_testkit::client::Client::from_unix_stream(ours)
        .unwrap()
        .with_name("socket");
    client.set_timeout(WAIT);
    client.initialize(json!({})).unwrap();
    let result = client.call_tool("echo", json!({"text": "socket"})).unwrap();
    assert_eq!(result["content"][0]["text"], "socket");
    assert!(nonblocking(&theirs_seen), "the socket is not polled");
    client.close_input();
    assert_eq!(wait_exit(&mut proxy, WAIT), Some(0), "{}", read(&stderr));
    assert!(!nonblocking(&theirs_seen), "the socket left non-blocking");

    // Regular files: not pollable, read and written on blocking threads. The proxy reads the
    // requests, meets EOF, delivers the answers owed and exits.
    let input = scratch.file("requests.jsonl");
    let output = scratch.file("answers.jsonl");
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": shoal_testkit::client::LATEST_PROTOCOL_VERSION,
            "capabilities": {}, "clientInfo": {"name": "files", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "files"}}}),
    ];
    let text: String = requests
        .iter()
        .map(|request| format!("{request}\n"))
        .collect();
    std::fs::write(&input, text).unwrap();
    let (mut command, stderr) = scratch.proxy(&[], &server);
    command
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(std::fs::File::create(&output).unwrap());
    let mut proxy = command.spawn().unwrap();
    assert_eq!(wait_exit(&mut proxy, WAIT), Some(0), "{}", read(&stderr));
    let answers: Vec<Value> = read(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(
        answers[0]["result"]["serverInfo"].is_object(),
        "{answers:?}"
    );
    assert_eq!(answers[1]["id"], 2, "{answers:?}");
    assert_eq!(answers[1]["result"]["content"][0]["text"], "files");
}

/// Requests and results of several MiB, larger than any socket buffer on the way: every write to
/// the daemon socket (in the proxy) and to the proxy's socket (in the daemon) stops part-way and
/// must wait for room, and each message still arrives whole and in order.
fn large_messages() {
    /// Writes on a thread of its own, so that a proxy that stops reading its stdin fails the test
    /// at the answer's deadline instead of blocking the test in `write`.
    struct Detached(mpsc::Sender<Vec<u8>>);
    impl std::io::Write for Detached {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .send(bytes.to_vec())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let scratch = Scratch::new("large");
    let server = scratch.server(&[]);
    let (mut command, stderr) = scratch.proxy(&[], &server);
    let mut proxy = Killed(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = proxy.0.stdin.take().unwrap();
    let stdout = proxy.0.stdout.take().unwrap();
    let (sender, chunks) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for chunk in chunks {
            if std::io::Write::write_all(&mut stdin, &chunk).is_err() {
                return;
            }
        }
    });
    let mut client =
        shoal_testkit::client::Client::from_streams(stdout, Detached(sender)).with_name("large");
    client.set_timeout(WAIT);
    client.initialize(json!({})).unwrap();
    let texts: Vec<String> = (0..4u8)
        .map(|n| {
            char::from(b'a' + n)
                .to_string()
                .repeat((3 << 20) + usize::from(n))
        })
        .collect();
    let ids: Vec<Value> = texts
        .iter()
        .map(|text| {
            client
                .send_request(
                    "tools/call",
                    json!({"name": "echo", "arguments": {"text": text}}),
                )
                .unwrap()
        })
        .collect();
    for (id, text) in ids.iter().zip(&texts) {
        let result = client
            .wait_response(id, WAIT)
            .map(|response| response.into_result());
        let result = match result {
            Ok(Ok(result)) => result,
            Ok(Err(error)) | Err(error) => panic!("{error}\n{}", read(&stderr)),
        };
        let echoed = result["content"][0]["text"].as_str().unwrap_or_default();
        assert!(
            echoed == text,
            "echo of {} bytes came back as {} bytes",
            text.len(),
            echoed.len()
        );
    }
    // The connection is still good for small messages after large ones.
    let result = client.call_tool("echo", json!({"text": "small"})).unwrap();
    assert_eq!(result["content"][0]["text"], "small");
    client.close_input();
    drop(client);
    assert_eq!(wait_exit(&mut proxy.0, WAIT), Some(0), "{}", read(&stderr));
}

/// A child killed (and reaped) on drop, so that a failing test leaves no proxy behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn help() {
    let output = Command::new(SHOAL)
        .args(["proxy", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    insta::assert_snapshot!("proxy_help", String::from_utf8_lossy(&output.stdout));
}
