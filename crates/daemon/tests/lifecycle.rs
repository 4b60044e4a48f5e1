//! Real-process tests of the daemon: scenarios 14–19 and 21–25 of `docs/scenarios.md` as far as they concern the daemon,
//! plus its control requests, signals and logs.
//!
//! Daemons are real processes: this binary re-executed as `daemon ...` (its own `main`, so that
//! no harness writes on the readiness pipe). Backends are the workspace's `shoal-fixture`.
//! Every wait has a deadline and a label.
//!
//! Run one: `cargo test -p shoal-daemon --test lifecycle -- scenario_15`.

#![allow(
    clippy::print_stderr,
    reason = "this is a test runner: it reports measured latencies on stderr"
)]

mod util;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_ipc::DaemonPaths;
use shoal_testkit::process::{is_alive, read_pid_file};
use shoal_wire::{BackendState, ControlRequest, ControlResponse, Readiness, Role};
use util::{
    Connect, DaemonProcess, DaemonSpec, Scratch, WAIT, client_on, connect, connect_as, control,
    control_on, echo, send_client_hello, session, spawn_count, status, wait_until,
};

const SCENARIOS: &[shoal_testkit::scenarios::Scenario] = &[
    ("daemon_log_is_rotated_and_its_writers_follow", log_rotation),
    (
        "scenario_14_stale_socket_and_lock_of_a_killed_daemon",
        stale_socket_and_lock_of_a_killed_daemon,
    ),
    (
        "scenario_15_second_daemon_exits_held_first_untouched",
        second_daemon_exits_held_first_untouched,
    ),
    (
        "scenario_16_start_failure_is_reported_on_the_readiness_pipe",
        start_failure_is_reported_on_the_readiness_pipe,
    ),
    (
        "scenario_17_connect_racing_the_idle_exit_is_served_or_refused_before_hello",
        connect_racing_the_idle_exit,
    ),
    (
        "scenario_17_a_hello_in_progress_holds_off_the_idle_exit",
        a_hello_in_progress_holds_off_the_idle_exit,
    ),
    (
        "scenario_18_deleted_or_replaced_lock_or_socket_fences_the_daemon",
        deleted_or_replaced_files_fence_the_daemon,
    ),
    (
        "scenario_19_client_gone_drops_the_count_and_arms_the_idle_timer",
        client_gone_drops_the_count_and_arms_the_idle_timer,
    ),
    (
        "scenario_21_backend_killed_under_load_restarts_and_clients_continue",
        backend_killed_under_load,
    ),
    (
        "scenario_21_crash_loop_gives_a_clear_error_and_restart_recovers",
        crash_loop_and_restart,
    ),
    (
        "a_server_that_never_initializes_fails_what_waits_and_loops",
        a_server_that_never_initializes,
    ),
    (
        "a_crash_looped_server_gets_one_fresh_try_from_a_new_session",
        a_crash_looped_server_gets_a_fresh_try,
    ),
    (
        "a_busy_server_pushes_back_on_the_sender_and_is_never_restarted",
        a_busy_server_pushes_back_on_the_sender,
    ),
    (
        "running_out_of_descriptors_neither_fences_nor_loses_a_session",
        running_out_of_descriptors,
    ),
    (
        "a_half_closed_backend_is_stopped_and_its_requests_answered",
        a_half_closed_backend_is_stopped,
    ),
    (
        "scenario_22_no_backend_process_survives_the_daemon",
        no_backend_process_survives_the_daemon,
    ),
    (
        "scenario_22_a_killed_daemon_takes_a_sigterm_ignoring_tree_along",
        a_killed_daemon_takes_the_tree_along,
    ),
    (
        "scenario_23_connection_from_another_uid_is_rejected",
        connection_from_another_uid_is_rejected,
    ),
    (
        "scenario_24_long_runtime_dir_and_root_still_work",
        long_runtime_dir_and_root_still_work,
    ),
    (
        "scenario_25_two_versions_on_one_root_run_side_by_side",
        two_versions_on_one_root,
    ),
    (
        "control_status_restart_and_stop",
        control_status_restart_and_stop,
    ),
    (
        "sigterm_answers_in_flight_requests_and_cleans_up",
        sigterm_answers_in_flight_and_cleans_up,
    ),
    ("sighup_is_ignored", sighup_is_ignored),
    (
        "backend_started_once_and_initialized_once_for_many_sessions",
        backend_started_once_for_many_sessions,
    ),
    (
        "bad_hellos_are_cut_off_without_harming_sessions",
        bad_hellos_are_cut_off,
    ),
    (
        "payloads_are_not_logged_at_the_default_level",
        payloads_are_not_logged,
    ),
];

/// How long a scenario may take in all before it counts as hung.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(180);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("daemon") => return util::daemon_main(&args[1..]),
        Some("hold") => return util::hold_main(&args[1..]),
        _ => {}
    }
    // Each scenario runs several processes; two at a time keeps a 2-core machine responsive.
    shoal_testkit::scenarios::run(SCENARIOS, SCENARIO_DEADLINE, 2)
}

// ---------------------------------------------------------------------------------------------

/// Scenario 14: a SIGKILLed daemon leaves its socket file (nobody listening) and lock file; the
/// next daemon takes over at once and serves, with no manual cleanup.
fn stale_socket_and_lock_of_a_killed_daemon() {
    let scratch = Scratch::new("stale");
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let mut first = DaemonProcess::start(&spec);
    first.sigkill();
    let paths = spec.paths();
    assert!(paths.socket.exists() && paths.daemon_lock.exists());
    assert!(
        matches!(connect(&paths.socket), Connect::Refused(_)),
        "nobody should listen on the stale socket"
    );
    let second = DaemonProcess::start(&spec);
    let mut client = session(&paths.socket, "after-stale");
    echo(&mut client, "served by the replacement");
    assert_eq!(status(&paths.socket).pid, second.pid());
}

/// Scenario 15: a second daemon for a held key reports `held` naming the first and exits; the
/// first keeps serving its session.
fn second_daemon_exits_held_first_untouched() {
    let scratch = Scratch::new("held");
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let first = DaemonProcess::start(&spec);
    let mut client = session(&first.paths.socket, "first");
    let mut second = DaemonProcess::spawn(&spec);
    assert_eq!(
        second.readiness(),
        Readiness::Held {
            pid: Some(first.pid())
        }
    );
    assert_eq!(second.wait_exit(WAIT), Some(3), "held is its own outcome");
    echo(&mut client, "still served");
    assert_eq!(status(&first.paths.socket).pid, first.pid());
}

/// Scenario 16 (daemon side): a daemon that cannot start says why on the readiness pipe and
/// exits promptly, leaving nothing listening.
fn start_failure_is_reported_on_the_readiness_pipe() {
    // A backend that does not exist.
    let scratch = Scratch::new("nostart");
    let mut spec = DaemonSpec::fixture(&scratch, &[]);
    spec.argv = vec!["/nonexistent/mcp-server".into()];
    let mut daemon = DaemonProcess::spawn(&spec);
    let started = Instant::now();
    match daemon.readiness() {
        Readiness::Error { reason } => {
            assert!(
                reason.contains("start the MCP server `/nonexistent/mcp-server`")
                    && reason.contains("No such file"),
                "{reason}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(daemon.wait_exit(WAIT), Some(2));
    eprintln!(
        "start failure reported and exited in {:?}",
        started.elapsed()
    );
    assert!(
        matches!(connect(&daemon.paths.socket), Connect::Refused(_)),
        "a daemon that failed to start must not leave a listening socket"
    );

    // An unsafe runtime dir (a symlink).
    let scratch = Scratch::new("unsafe");
    let target = scratch.file("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&target, &scratch.runtime_dir).unwrap();
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    // Spawned by hand: the helper would try to create the runtime dir itself.
    command
        .args(["daemon"])
        .arg(&spec.runtime_dir)
        .arg(&spec.root)
        .args([util::VERSION, "never", "--"])
        .args(&spec.argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let output = command.output().unwrap();
    let line = String::from_utf8_lossy(&output.stdout);
    match Readiness::parse(line.trim_end().as_bytes()).unwrap() {
        Readiness::Error { reason } => assert!(reason.contains("symbolic link"), "{reason}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(output.status.code(), Some(2));
}

/// Scenario 17: clients connect at random moments around the idle exit. Each is either fully
/// served, or refused before the hello (connect refused or closed without hello) at a moment
/// when the exiting daemon holds or has released `spawn.lock` such that a new daemon can start at
/// once. Never: a hello followed by a dropped session.
fn connect_racing_the_idle_exit() {
    const ROUNDS: usize = 40;
    let scratch = Scratch::new("idle-race");
    let spec = DaemonSpec::fixture(&scratch, &[]).idle(Duration::from_millis(150));
    let paths = spec.paths();
    let (mut served, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let mut daemon = DaemonProcess::start(&spec);
        // Spread the connects over the idle window and a little past it.
        let offset = Duration::from_millis((round as u64 * 7) % 220);
        std::thread::sleep(offset);
        match connect(&paths.socket) {
            Connect::Hello(stream, _) => {
                drop(stream);
                // Helloed connections are counted by the daemon: a session on a fresh
                // connection must now be served by this same daemon or, if it committed to exit
                // in between, be refused before the hello.
                match connect(&paths.socket) {
                    Connect::Hello(..) => {
                        let mut client = session(&paths.socket, "racer");
                        echo(&mut client, "served");
                        served += 1;
                        drop(client);
                    }
                    Connect::Refused(_) | Connect::ClosedBeforeHello => refused += 1,
                }
            }
            Connect::Refused(_) | Connect::ClosedBeforeHello => refused += 1,
        }
        // Whatever happened, the daemon idles out, and afterwards the key is free: a new daemon
        // starts without "held" and serves (the refused client's slow path).
        assert_eq!(daemon.wait_exit(WAIT), Some(0), "round {round}");
        let next = DaemonProcess::start(&spec);
        let mut client = session(&paths.socket, "slow-path");
        echo(&mut client, "served by the next daemon");
        drop(client);
        drop(next);
    }
    eprintln!("idle race: {served} served by the exiting daemon, {refused} refused before hello");
}

/// Scenario 17, the decisive case made deterministic: a connection that got the daemon's hello
/// but has not answered yet when the idle timer fires holds off the exit, and is then served.
fn a_hello_in_progress_holds_off_the_idle_exit() {
    let scratch = Scratch::new("idle-hello");
    let spec = DaemonSpec::fixture(&scratch, &[]).idle(Duration::from_millis(100));
    let mut daemon = DaemonProcess::start(&spec);
    let (mut stream, _) = match connect(&daemon.paths.socket) {
        Connect::Hello(stream, hello) => (stream, hello),
        other => panic!("{other:?}"),
    };
    wait_until("the idle exit to be postponed", WAIT, || {
        daemon.log().contains("idle exit postponed")
    });
    send_client_hello(&mut stream, Role::Session);
    let mut client = client_on(stream, "late");
    client.initialize(json!({})).unwrap();
    echo(&mut client, "served after holding off the exit");
    drop(client);
    assert_eq!(daemon.wait_exit(WAIT), Some(0));
}

/// Scenario 18: deleting or replacing `daemon.lock` or `daemon.sock` makes the daemon exit within
/// 5 s, and it leaves the replacements alone.
fn deleted_or_replaced_files_fence_the_daemon() {
    type Tamper = fn(&DaemonPaths);
    let cases: [(&str, Tamper); 3] = [
        ("lock deleted", |paths| {
            std::fs::remove_file(&paths.daemon_lock).unwrap()
        }),
        ("socket deleted", |paths| {
            std::fs::remove_file(&paths.socket).unwrap()
        }),
        ("socket replaced", |paths| {
            std::fs::remove_file(&paths.socket).unwrap();
            // Leaked on purpose: the listener must outlive the daemon's exit.
            std::mem::forget(UnixListener::bind(&paths.socket).unwrap());
        }),
    ];
    for (name, tamper) in cases {
        let scratch = Scratch::new("fence");
        let spec = DaemonSpec::fixture(&scratch, &[]);
        let mut daemon = DaemonProcess::start(&spec);
        let socket_identity = |paths: &DaemonPaths| {
            std::fs::symlink_metadata(&paths.socket)
                .ok()
                .map(|metadata| std::os::unix::fs::MetadataExt::ino(&metadata))
        };
        tamper(&daemon.paths);
        let replacement = socket_identity(&daemon.paths);
        let tampered = Instant::now();
        daemon.wait_exit(Duration::from_secs(5));
        eprintln!("{name}: exited {:?} after tampering", tampered.elapsed());
        assert!(
            daemon.log().contains("no longer owns its key"),
            "{name}: {}",
            daemon.log()
        );
        assert_eq!(
            socket_identity(&daemon.paths),
            replacement,
            "{name}: the fenced daemon touched the socket path"
        );
    }
}

/// Scenario 19 (daemon side): a session whose process dies is dropped from the count, and the
/// idle timer arms and fires.
fn client_gone_drops_the_count_and_arms_the_idle_timer() {
    let scratch = Scratch::new("gone");
    let spec = DaemonSpec::fixture(&scratch, &[]).idle(Duration::from_millis(800));
    let mut daemon = DaemonProcess::start(&spec);
    let socket = daemon.paths.socket.clone();
    // A "proxy" in another process holding an initialized session, then SIGKILLed.
    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("hold")
        .arg(&socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "holding", "the holder failed to attach");
    wait_until("one client counted", WAIT, || {
        status(&socket).n_clients == 1
    });
    // Past the idle timeout with a client: still alive. (A sleep is the point here: nothing
    // happening is what is being checked.)
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        matches!(daemon.child.try_wait(), Ok(None)),
        "exited with a client connected"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Watched in the log, not through status connections, which would themselves hold off the
    // idle exit while they complete their hello.
    wait_until("the killed session counted out", WAIT, || {
        daemon
            .log()
            .lines()
            .any(|line| line.contains("session left") && line.contains("n_clients=0"))
    });
    assert_eq!(daemon.wait_exit(WAIT), Some(0));
    assert!(
        daemon.log().contains("reason=idle timeout"),
        "{}",
        daemon.log()
    );
}

/// Scenario 21: the backend SIGKILLed under load: in-flight requests get an error, the backend
/// is restarted and initialized again, and the same sessions keep working.
fn backend_killed_under_load() {
    let scratch = Scratch::new("backend-kill");
    let counter = scratch.file("spawns");
    let spec = DaemonSpec::fixture(&scratch, &["--spawn-counter", counter.to_str().unwrap()]);
    let daemon = DaemonProcess::start(&spec);
    let socket = daemon.paths.socket.clone();
    let mut clients: Vec<_> = (0..3)
        .map(|n| session(&socket, &format!("client {n}")))
        .collect();
    let in_flight: Vec<_> = clients
        .iter_mut()
        .map(|client| {
            client
                .send_request(
                    "tools/call",
                    json!({"name": "slow", "arguments": {"ms": 60_000}}),
                )
                .unwrap()
        })
        .collect();
    // Lines of one connection reach the backend in order: an echo answered after each slow
    // call proves the slow call is at the backend.
    for client in &mut clients {
        echo(client, "behind the slow call");
    }
    let backend_pid = status(&socket).backend_pid.expect("a backend pid");
    shoal_testkit::process::kill(backend_pid).unwrap();
    for (client, id) in clients.iter_mut().zip(&in_flight) {
        let response = client.wait_response(id, WAIT).unwrap();
        let error = response.error().expect("an error for the lost request");
        assert_eq!(error.code, -32080, "{error:?}");
        assert!(error.message.contains("exited unexpectedly"), "{error:?}");
    }
    for (n, client) in clients.iter_mut().enumerate() {
        echo(client, &format!("after the restart {n}"));
    }
    let report = status(&socket);
    assert_eq!(report.backend_state, BackendState::Running);
    assert_eq!(report.backend_restarts, 1);
    assert_ne!(report.backend_pid, Some(backend_pid));
    assert_eq!(spawn_count(&counter), 2);
    let stats = clients[0].stats().unwrap();
    assert_eq!(stats["initializeCount"], 1, "{stats}");
}

/// Scenario 21: a backend that keeps failing is declared crash-looped: requests get an error
/// naming `shoal logs` and `shoal restart`; once fixed, `restart` recovers it.
fn crash_loop_and_restart() {
    let scratch = Scratch::new("crash-loop");
    let broken = scratch.file("broken");
    std::fs::write(&broken, "").unwrap();
    let fixture = shoal_testkit::fixture_bin();
    let script = format!(
        "if [ -e '{}' ]; then echo 'config is broken' >&2; exit 3; fi; exec '{}'",
        broken.display(),
        fixture.display()
    );
    let mut spec = DaemonSpec::fixture(&scratch, &[]);
    spec.argv = vec!["sh".into(), "-c".into(), script.into()];
    let daemon = DaemonProcess::start(&spec);
    let socket = daemon.paths.socket.clone();
    wait_until("crash loop declared", WAIT, || {
        status(&socket).backend_state == BackendState::CrashLooped
    });
    let (stream, _) = connect_as(&socket, Role::Session);
    let mut client = client_on(stream, "crash-looped");
    let response = client.request("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})).unwrap();
    let error = response
        .error()
        .expect("an error while crash-looped")
        .clone();
    assert_eq!(error.code, -32080);
    assert!(
        error.message.contains("shoal logs") && error.message.contains("shoal restart"),
        "{error:?}"
    );
    // The server's stderr is in daemon.log, a line at a time with a UTC timestamp.
    let log = daemon.log();
    assert!(
        log.lines().any(|line| {
            line.ends_with(" server: config is broken")
                && line.len() == "2026-12-04T01:55:06.627617Z server: config is broken".len()
                && line.as_bytes()[10] == b'T'
                && line.as_bytes()[26] == b'Z'
        }),
        "backend stderr goes to daemon.log, timestamped:\n{log}"
    );
    std::fs::remove_file(&broken).unwrap();
    match control(&socket, ControlRequest::Restart) {
        ControlResponse::Restarted { backend_pid } => assert!(backend_pid.is_some()),
        other => panic!("restart: {other:?}"),
    }
    assert_eq!(status(&socket).backend_state, BackendState::Running);
    client
        .initialize(json!({}))
        .expect("the same connection works after the restart");
    echo(&mut client, "recovered");
}

/// A server that never answers `initialize`: each start-up deadline answers the requests held for
/// it with a clear error (they do not wait through restart after restart), and failed starts in
/// a row are a crash loop even though each takes a whole deadline.
fn a_server_that_never_initializes() {
    let scratch = Scratch::new("no-init");
    let mut spec = DaemonSpec::fixture(&scratch, &[]);
    spec.argv = vec!["sh".into(), "-c".into(), "exec sleep 600".into()];
    let mut daemon = DaemonProcess::spawn_with(&spec, |command| {
        command.env("SHOAL_TEST_INIT_TIMEOUT_MS", "700");
    });
    assert!(matches!(daemon.readiness(), Readiness::Ready { .. }));
    let (stream, _) = connect_as(&daemon.paths.socket, Role::Session);
    let mut client = client_on(stream, "waits-for-initialize");
    let response = client
        .request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .expect("the held initialize is answered at the start-up deadline");
    let error = response.error().expect("an error").clone();
    assert_eq!(error.code, -32080, "{error:?}");
    assert!(
        error
            .message
            .contains("did not answer `initialize` within 0.7s"),
        "{error:?}"
    );
    wait_until("failed starts in a row make a crash loop", WAIT, || {
        status(&daemon.paths.socket).backend_state == BackendState::CrashLooped
    });
}

/// Scenario 21's crash loop, fixed behind shoal's back: a session that joins once the loop is a
/// little old gets the server one more try, without `shoal restart`.
fn a_crash_looped_server_gets_a_fresh_try() {
    let scratch = Scratch::new("fresh-try");
    let broken = scratch.file("broken");
    std::fs::write(&broken, "").unwrap();
    let fixture = shoal_testkit::fixture_bin();
    let script = format!(
        "if [ -e '{}' ]; then echo 'config is broken' >&2; exit 3; fi; exec '{}'",
        broken.display(),
        fixture.display()
    );
    let mut spec = DaemonSpec::fixture(&scratch, &[]);
    spec.argv = vec!["sh".into(), "-c".into(), script.into()];
    let daemon = DaemonProcess::start(&spec);
    let socket = daemon.paths.socket.clone();
    wait_until("crash loop declared", WAIT, || {
        status(&socket).backend_state == BackendState::CrashLooped
    });
    std::fs::remove_file(&broken).unwrap();
    wait_until("a new session is served by a fresh try", WAIT, || {
        let (stream, _) = connect_as(&socket, Role::Session);
        let mut client = client_on(stream, "after-the-fix");
        let served = client.initialize(json!({})).is_ok();
        if served {
            echo(&mut client, "served without shoal restart");
        }
        served
    });
    assert_eq!(status(&socket).backend_state, BackendState::Running);
}

/// A single-threaded server busy with one session's slow call reads nothing meanwhile, while
/// another session pipelines 80 requests of 1 MiB: the daemon must not restart the server (which
/// would fail the slow call), but hold back the sender until the server reads again. Every
/// request of both sessions gets its own successful answer.
fn a_busy_server_pushes_back_on_the_sender() {
    const SERVER: &str = r#"
import json, sys, time
for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message or "method" not in message:
        continue
    if message["method"] == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "busy", "version": "1"}}
    elif message["params"].get("name") == "slow":
        time.sleep(3)
        result = {"slow": "done"}
    else:
        result = {"size": len(line)}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
    sys.stdout.flush()
"#;
    let scratch = Scratch::new("busy");
    let server = scratch.file("busy.py");
    std::fs::write(&server, SERVER).unwrap();
    let mut spec = DaemonSpec::fixture(&scratch, &[]);
    spec.argv = vec!["python3".into(), server.into_os_string()];
    let daemon = DaemonProcess::start(&spec);
    let socket = daemon.paths.socket.clone();
    let mut slow = session(&socket, "slow");
    let mut flood = session(&socket, "flood");
    let slow_id = slow
        .send_request("tools/call", json!({"name": "slow"}))
        .unwrap();
    let payload = "x".repeat(1024 * 1024);
    let sender = std::thread::spawn(move || {
        let ids: Vec<Value> = (0..80)
            .map(|_| {
                flood
                    .send_request(
                        "tools/call",
                        json!({"name": "big", "arguments": {"blob": payload}}),
                    )
                    .unwrap()
            })
            .collect();
        for id in &ids {
            let answer = flood.wait_response(id, WAIT).unwrap();
            assert!(answer.error().is_none(), "flood request {id}: {answer:?}");
        }
    });
    let answer = slow.wait_response(&slow_id, WAIT).unwrap();
    assert!(
        answer.error().is_none(),
        "the slow call must not be failed by another session's flood: {answer:?}"
    );
    sender.join().expect("every flood request is answered");
    assert_eq!(
        status(&socket).backend_restarts,
        0,
        "the busy server was restarted\n{}",
        daemon.log()
    );
}

/// Plain connections that never send a hello exhaust the daemon's descriptors (its hard limit is
/// set low here, so raising the soft one cannot help). The once-a-second ownership check then
/// cannot open `daemon.lock`: that is no proof the lock is someone else's, so the daemon must not
/// fence itself. A session connected before keeps being served, and once the flood is gone, new
/// sessions are served again.
fn running_out_of_descriptors() {
    use std::os::unix::process::CommandExt as _;
    let scratch = Scratch::new("emfile");
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let mut daemon = DaemonProcess::spawn_with(&spec, |command| {
        // SAFETY: setrlimit(2) is async-signal-safe and touches only the child's own limits.
        unsafe {
            command.pre_exec(|| {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 48, 48)
                    .map_err(std::io::Error::from)
            });
        }
    });
    assert!(matches!(daemon.readiness(), Readiness::Ready { .. }));
    let socket = daemon.paths.socket.clone();
    let mut before = session(&socket, "before-the-flood");
    let flood: Vec<std::os::unix::net::UnixStream> = (0..80)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok())
        .collect();
    assert!(!flood.is_empty());
    // Several fence checks (every 200 ms in tests) run while the daemon has no descriptor left.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        echo(&mut before, "served during the flood");
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "the daemon exited during the flood\n{}",
            daemon.log()
        );
    }
    drop(flood);
    wait_until("a new session is served after the flood", WAIT, || {
        let (stream, _) = connect_as(&socket, Role::Session);
        let mut after = client_on(stream, "after-the-flood");
        after.initialize(json!({})).is_ok()
    });
    echo(&mut before, "still served");
    let log = daemon.log();
    assert!(
        log.contains("could not check the daemon lock; still serving"),
        "the flood must have exhausted the daemon's descriptors during a check\n{log}"
    );
    assert!(!log.contains("no longer owns its key"), "{log}");
}

/// A server that closes its stdout, or stops reading its stdin, but stays alive can never answer
/// again: it is treated as dead (its group stopped, a restart), so a request sent to it gets an
/// error instead of hanging. Each server here refuses the daemon's `server/discover` probe (as a
/// handshake-era server does), answers `initialize` (with the id it was sent), reads
/// `notifications/initialized`, then closes one pipe and sleeps. It declares no capabilities, so
/// the daemon has nothing more to write to it: a closed stdin must be noticed without a write
/// failing, before any request is sent.
fn a_half_closed_backend_is_stopped() {
    const ANSWER_INITIALIZE: &str = r#"read -r line; printf '{"jsonrpc":"2.0","id":0,"error":{"code":-32601,"message":"Method not found"}}\n'; read -r line; id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p'); printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"half","version":"1"}}}\n' "$id"; read -r line;"#;
    for (close, what) in [
        ("exec 1>&-", "closed its stdout but kept running"),
        ("exec 0<&-", "stopped reading its stdin but kept running"),
    ] {
        let scratch = Scratch::new("half-closed");
        let mut spec = DaemonSpec::fixture(&scratch, &[]);
        let script = format!("{ANSWER_INITIALIZE} {close}; exec sleep 600");
        spec.argv = vec!["sh".into(), "-c".into(), script.into()];
        let daemon = DaemonProcess::start(&spec);
        let mut client = session(&daemon.paths.socket, what);
        wait_until("the half-closed server is logged", WAIT, || {
            daemon.log().contains(what)
        });
        let started = Instant::now();
        let response = client
            .request("tools/call", json!({"name": "echo", "arguments": {}}))
            .unwrap_or_else(|error| panic!("{what}: the request must be answered: {error}"));
        let error = response
            .error()
            .unwrap_or_else(|| panic!("{what}: expected an error, got {response:?}"))
            .clone();
        assert_eq!(error.code, -32080, "{what}: {error:?}");
        assert!(error.message.contains(what), "{what}: {error:?}");
        assert!(
            started.elapsed() < WAIT,
            "{what}: answered only after {:?}",
            started.elapsed()
        );
    }
}

/// Scenario 22 when the daemon cannot stop the tree itself: it is SIGKILLed, and its server
/// ignores SIGTERM (so the parent-death signal does nothing) and has a grandchild in its group.
/// The reaper stops the whole group (SIGTERM, then SIGKILL after its grace).
fn a_killed_daemon_takes_the_tree_along() {
    let scratch = Scratch::new("reaper");
    let grandchild_file = scratch.file("grandchild");
    let spec = DaemonSpec::fixture(
        &scratch,
        &[
            "--ignore-sigterm",
            "--grandchild-pid-file",
            grandchild_file.to_str().unwrap(),
        ],
    );
    let mut daemon = DaemonProcess::start(&spec);
    let grandchild = read_pid_file(&grandchild_file, WAIT).unwrap();
    let backend = status(&daemon.paths.socket).backend_pid.unwrap();
    daemon.sigkill();
    for pid in [backend, grandchild] {
        assert!(
            shoal_testkit::process::wait_for_exit(pid, WAIT),
            "process {pid} of the backend tree survived the daemon's SIGKILL"
        );
    }
}

/// Scenario 22: after the daemon exits (stop, SIGTERM, idle), no process of the backend's tree
/// remains, including a grandchild in its group.
fn no_backend_process_survives_the_daemon() {
    for how in ["stop", "sigterm", "idle"] {
        let scratch = Scratch::new("tree");
        let grandchild_file = scratch.file("grandchild");
        let mut spec = DaemonSpec::fixture(
            &scratch,
            &["--grandchild-pid-file", grandchild_file.to_str().unwrap()],
        );
        if how == "idle" {
            spec = spec.idle(Duration::from_millis(300));
        }
        let mut daemon = DaemonProcess::start(&spec);
        let grandchild = read_pid_file(&grandchild_file, WAIT).unwrap();
        let backend = status(&daemon.paths.socket).backend_pid.unwrap();
        match how {
            "stop" => assert_eq!(
                control(&daemon.paths.socket, ControlRequest::Stop),
                ControlResponse::Stopping
            ),
            "sigterm" => shoal_testkit::process::terminate(daemon.pid()).unwrap(),
            _ => {}
        }
        assert_eq!(daemon.wait_exit(WAIT), Some(0), "{how}");
        for pid in [backend, grandchild] {
            assert!(
                !is_alive(pid),
                "{how}: process {pid} of the backend tree survived"
            );
        }
        assert!(
            !daemon.paths.socket.exists() && !daemon.paths.daemon_lock.exists(),
            "{how}: socket and lock must be removed"
        );
    }
}

/// Scenario 23: a peer with another uid is closed without a hello. The daemon runs as `nobody`
/// and this test (root) connects.
fn connection_from_another_uid_is_rejected() {
    if !nix::unistd::geteuid().is_root() {
        // Needs two uids; CI runs as root. Assert the precondition instead of skipping silently.
        panic!("scenario 23 needs root to run a daemon as another user");
    }
    let scratch = Scratch::new("uid");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    // Everything the daemon touches belongs to nobody.
    for dir in [&scratch.base, &scratch.root] {
        nix::unistd::chown(dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    // The checkout may sit where `nobody` cannot reach (a 0700 temp dir): run copies of this
    // binary and of the fixture from the scratch dir, which is theirs.
    let copy = |from: &Path, name: &str| {
        let to = scratch.file(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    let mut spec = DaemonSpec::fixture(&scratch, &[]);
    spec.argv = vec![copy(&shoal_testkit::fixture_bin(), "fixture").into_os_string()];
    spec.daemon_program = Some(copy(&std::env::current_exe().unwrap(), "daemon"));
    let paths = spec.paths();
    let mut daemon = DaemonProcess::spawn_with(&spec, |command| {
        // The helper created the dirs and the log as root; hand them over before the spawn.
        for path in [&spec.runtime_dir, &paths.dir, &paths.log] {
            nix::unistd::chown(path, Some(nobody.uid), Some(nobody.gid)).unwrap();
        }
        std::os::unix::process::CommandExt::uid(command, nobody.uid.as_raw());
        std::os::unix::process::CommandExt::gid(command, nobody.gid.as_raw());
    });
    assert!(
        matches!(daemon.readiness(), Readiness::Ready { .. }),
        "{}",
        daemon.log()
    );
    match connect(&paths.socket) {
        Connect::ClosedBeforeHello => {}
        other => panic!("a root peer of a nobody daemon must be closed before hello: {other:?}"),
    }
    assert!(
        daemon
            .log()
            .contains("refused a connection from another user"),
        "{}",
        daemon.log()
    );
    shoal_testkit::process::terminate(daemon.pid()).unwrap();
    assert_eq!(daemon.wait_exit(WAIT), Some(0));
}

/// Past its limit `daemon.log` becomes `daemon.log.1` and a new one starts; the daemon's own
/// lines and the server's stderr both go on in the new file.
fn log_rotation() {
    let scratch = Scratch::new("rotate");
    let fixture = shoal_testkit::fixture_bin();
    // About 200 KiB on stderr before it serves: three times the limit below.
    let script = format!(
        "i=0; while [ $i -lt 2000 ]; do echo \"noise $i {}\" >&2; i=$((i+1)); done; exec '{}'",
        "n".repeat(90),
        fixture.display()
    );
    let mut spec = DaemonSpec::fixture(&scratch, &[]);
    spec.argv = vec!["sh".into(), "-c".into(), script.into()];
    let mut daemon = DaemonProcess::spawn_with(&spec, |command| {
        command.env("SHOAL_TEST_LOG_LIMIT", "65536");
    });
    assert!(matches!(daemon.readiness(), Readiness::Ready { .. }));
    let rotated = {
        let mut name = daemon.paths.log.clone().into_os_string();
        name.push(".1");
        PathBuf::from(name)
    };
    wait_until("daemon.log is rotated", WAIT, || rotated.exists());
    let mut client = session(&daemon.paths.socket, "after rotation");
    // The crash tool says so on stderr, then exits (no answer): the server's line and the
    // daemon's own about the crash must both reach the current log.
    client
        .send_request(
            "tools/call",
            json!({"name": "crash", "arguments": {"code": 1}}),
        )
        .unwrap();
    wait_until(
        "the new log has the daemon's and the server's lines",
        WAIT,
        || {
            let log = daemon.log();
            log.contains("session joined")
                && log.contains("server: ")
                && log.contains("crash tool")
                && log.contains("exited unexpectedly")
        },
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains(" server: noise 0 "),
        "the first part holds the start"
    );
    let new = daemon.log();
    assert!(
        (new.len() as u64) < 8 * 65536,
        "the current log is small again: {} bytes",
        new.len()
    );
}

/// Scenario 24: a deep project root and a long `$SHOAL_RUNTIME_DIR` still give short socket
/// paths (the long dir is passed over for the default), and the daemon works.
fn long_runtime_dir_and_root_still_work() {
    let scratch = Scratch::new("long");
    let deep_root = scratch.root.join("d".repeat(200)).join("e".repeat(200));
    std::fs::create_dir_all(&deep_root).unwrap();
    let long = scratch.base.join("x".repeat(150));
    let uid = nix::unistd::geteuid();
    let (runtime_dir, _) = shoal_ipc::resolve_runtime_dir(
        |name| (name == "SHOAL_RUNTIME_DIR").then(|| long.clone().into_os_string()),
        uid.as_raw(),
    );
    let defaults = [
        PathBuf::from(format!("/run/user/{uid}/shoal")),
        PathBuf::from(format!("/tmp/shoal-{uid}")),
    ];
    assert!(defaults.contains(&runtime_dir), "{}", runtime_dir.display());
    let mut spec = DaemonSpec::fixture(&scratch, &[]);
    spec.root = deep_root;
    spec.runtime_dir = runtime_dir.clone();
    let daemon = DaemonProcess::start(&spec);
    assert!(daemon.paths.socket.as_os_str().len() <= shoal_ipc::MAX_SOCKET_PATH);
    let mut client = session(&daemon.paths.socket, "deep");
    echo(&mut client, "deep root");
    drop(client);
    let key_dir = daemon.paths.dir.clone();
    drop(daemon);
    // The runtime dir is the real fallback; the key (a scratch root) is this test's alone.
    let _ = std::fs::remove_dir_all(&key_dir);
}

/// Scenario 25: two shoal versions on one root get two daemons; stopping one leaves the other's
/// sessions working.
fn two_versions_on_one_root() {
    let scratch = Scratch::new("versions");
    let old = DaemonSpec::fixture(&scratch, &[]);
    let mut new = old.clone();
    new.version = "0.0.1-test".to_owned();
    assert_ne!(old.paths().dir, new.paths().dir);
    let mut old_daemon = DaemonProcess::start(&old);
    let new_daemon = DaemonProcess::start(&new);
    let mut old_client = session(&old_daemon.paths.socket, "old");
    let mut new_client = session(&new_daemon.paths.socket, "new");
    echo(&mut old_client, "old");
    echo(&mut new_client, "new");
    drop(old_client);
    control(&old_daemon.paths.socket, ControlRequest::Stop);
    old_daemon.wait_exit(WAIT);
    echo(&mut new_client, "new after the old one stopped");
}

/// Control: status reports what it should; restart swaps the backend under a connected session;
/// stop answers, exits and cleans up.
fn control_status_restart_and_stop() {
    let scratch = Scratch::new("control");
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let mut daemon = DaemonProcess::start(&spec);
    let socket = daemon.paths.socket.clone();
    let mut client = session(&socket, "controlled");
    echo(&mut client, "one");
    let report = status(&socket);
    assert_eq!(report.pid, daemon.pid());
    assert_eq!(report.version, util::VERSION);
    assert_eq!(report.key, spec.key().id().as_str());
    assert_eq!(report.root, spec.root.to_str().unwrap());
    assert_eq!(report.backend_argv, vec![spec.argv[0].to_str().unwrap()]);
    assert_eq!(report.backend_state, BackendState::Running);
    assert_eq!(report.n_clients, 1);
    assert_eq!(report.backend_restarts, 0);
    assert!(report.requests_served >= 2, "{report:?}");
    assert!(report.rss_bytes.is_some_and(|rss| rss > 0), "{report:?}");
    let meta = shoal_ipc::DaemonMeta::read(&daemon.paths.meta).unwrap();
    assert_eq!(meta.pid, daemon.pid());

    let old_backend = report.backend_pid.unwrap();
    let restarted = control(&socket, ControlRequest::Restart);
    let ControlResponse::Restarted {
        backend_pid: Some(new_backend),
    } = restarted
    else {
        panic!("restart: {restarted:?}");
    };
    assert_ne!(new_backend, old_backend);
    assert!(!is_alive(old_backend), "the old backend must be stopped");
    echo(&mut client, "same session after the restart");
    assert_eq!(status(&socket).backend_restarts, 1);

    // A request the daemon does not know is answered, and the connection stays usable.
    let (stream, _) = connect_as(&socket, Role::Control);
    {
        let mut raw = &stream;
        std::io::Write::write_all(&mut raw, b"{\"op\":\"drain\"}\n").unwrap();
    }
    let mut reader = std::io::BufReader::new(&stream);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(line.contains("does not support"), "{line}");
    assert!(matches!(
        control_on(&stream, &ControlRequest::Status),
        ControlResponse::Status(_)
    ));

    let stopping = connect_as(&socket, Role::Control).0;
    assert_eq!(
        control_on(&stopping, &ControlRequest::Stop),
        ControlResponse::Stopping
    );
    // The control connection closes when the daemon is gone.
    let mut rest = Vec::new();
    (&stopping).read_to_end(&mut rest).unwrap();
    assert_eq!(daemon.wait_exit(WAIT), Some(0));
    assert!(
        daemon.log().contains("reason=stop requested"),
        "{}",
        daemon.log()
    );
}

/// SIGTERM: a request in flight gets an error (not silence), then the daemon exits and removes
/// its socket and lock.
fn sigterm_answers_in_flight_and_cleans_up() {
    let scratch = Scratch::new("sigterm");
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let mut daemon = DaemonProcess::start(&spec);
    let mut client = session(&daemon.paths.socket, "in-flight");
    let id = client
        .send_request(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 60_000}}),
        )
        .unwrap();
    // The daemon handled the request once it answers a later one on the same connection.
    echo(&mut client, "ordered after the slow call");
    shoal_testkit::process::terminate(daemon.pid()).unwrap();
    let response = client.wait_response(&id, WAIT).unwrap();
    let error = response
        .error()
        .expect("an error for the request in flight");
    assert!(error.message.contains("shutting down"), "{error:?}");
    assert_eq!(daemon.wait_exit(WAIT), Some(0));
    assert!(!daemon.paths.socket.exists() && !daemon.paths.daemon_lock.exists());
    assert!(
        daemon.log().contains("received SIGTERM"),
        "{}",
        daemon.log()
    );
}

/// SIGHUP does not stop a detached daemon.
fn sighup_is_ignored() {
    let scratch = Scratch::new("sighup");
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let daemon = DaemonProcess::start(&spec);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let mut client = session(&daemon.paths.socket, "after-hup");
    echo(&mut client, "still here");
}

/// Many sessions share one backend started once; it sees exactly one `initialize`.
fn backend_started_once_for_many_sessions() {
    let scratch = Scratch::new("shared");
    let counter = scratch.file("spawns");
    let spec = DaemonSpec::fixture(&scratch, &["--spawn-counter", counter.to_str().unwrap()]);
    let daemon = DaemonProcess::start(&spec);
    let mut clients: Vec<_> = (0..8)
        .map(|n| session(&daemon.paths.socket, &format!("client {n}")))
        .collect();
    for (n, client) in clients.iter_mut().enumerate() {
        echo(client, &format!("hello from {n}"));
    }
    let stats = clients[0].stats().unwrap();
    assert_eq!(stats["initializeCount"], 1, "{stats}");
    assert_eq!(stats["requestsBeforeInitialized"], 0, "{stats}");
    assert_eq!(spawn_count(&counter), 1);
    assert_eq!(status(&daemon.paths.socket).n_clients, 8);
}

/// Scenario 36 (daemon side): a garbage hello, a hello with no newline, or silence is cut off
/// within the hello timeout; a session connected meanwhile is unaffected and nothing counts as a
/// client.
fn bad_hellos_are_cut_off() {
    let scratch = Scratch::new("bad-hello");
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let daemon = DaemonProcess::start(&spec);
    let socket = daemon.paths.socket.clone();
    let mut client = session(&socket, "bystander");
    let mut bad = Vec::new();
    for payload in [
        &b"SSH-2.0-OpenSSH\n"[..],
        &[b'x'; 8192][..],
        &b"\xff\xfe\x00garbage\n"[..],
        &b""[..],
    ] {
        let (mut stream, _) = match connect(&socket) {
            Connect::Hello(stream, hello) => (stream, hello),
            other => panic!("{other:?}"),
        };
        std::io::Write::write_all(&mut stream, payload).unwrap();
        bad.push(stream);
    }
    for mut stream in bad {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut rest = Vec::new();
        // EOF, or a reset when the daemon closed with our garbage unread; a timeout means the
        // connection was never cut off.
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("a bad hello was not cut off within {WAIT:?}: {error}"),
        }
        assert!(rest.is_empty(), "a bad hello must get nothing but a close");
    }
    echo(&mut client, "unaffected");
    assert_eq!(status(&socket).n_clients, 1);
}

/// Logs never hold message payloads at the default level.
fn payloads_are_not_logged() {
    let scratch = Scratch::new("secrets");
    let spec = DaemonSpec::fixture(&scratch, &[]);
    let daemon = DaemonProcess::start(&spec);
    let mut client = session(&daemon.paths.socket, "secretive");
    let secret = "sk-live-0123456789abcdef";
    echo(&mut client, secret);
    client
        .send_raw(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"{secret}\""
        ))
        .unwrap();
    client
        .expect("the parse error", WAIT, |message| {
            message.get("error").is_some()
        })
        .unwrap();
    drop(client);
    control(&daemon.paths.socket, ControlRequest::Status);
    assert!(!daemon.log().contains(secret), "{}", daemon.log());
    assert!(
        daemon.log().contains("session joined"),
        "the log is written"
    );
}
