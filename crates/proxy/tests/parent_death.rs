//! Real-process tests of the parent-death watchdog (scenario 19 of `docs/scenarios.md`: host SIGKILLed → proxy gone).
//!
//! Each scenario starts a "host" (this binary re-executed as `host ...`) that spawns a "proxy"
//! (re-executed as `proxy ...`) which arms the watchdog with some layers switched off and reports on
//! a pipe: when it has armed, and what told it the host was gone. The test SIGKILLs the host and
//! judges by the proxy's reports and exit, never by probing the host's pid (pid 1 in a container may
//! leave a dead host as a zombie). It has its own `main` so that no test harness writes on the
//! helpers' report pipe and so that we control which thread spawns the proxy, which matters to
//! `PR_SET_PDEATHSIG`.
//!
//! On Linux the test process makes itself a child subreaper, so orphaned proxies are reparented to
//! it rather than to pid 1: it can reap them and read their exit status, and the polling layer is
//! shown to compare with the original parent, not with 1.
//!
//! Run one scenario: `cargo test -p shoal-proxy --test parent_death -- polling`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this is a test runner: it reports on stdout and stderr"
)]

mod util;

use std::future::Future as _;
use std::process::{Command, ExitCode, Stdio};
use std::task::Poll;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use shoal_proxy::{ParentGone, WatchdogConfig, arm_parent_death_signal_with};
use util::{DEATH_WAIT, START_WAIT, spawn_host};

/// The scenarios, by name.
const SCENARIOS: &[shoal_testkit::scenarios::Scenario] = &[
    #[cfg(target_os = "linux")]
    (
        "death_signal_alone_reaches_a_prepared_proxy",
        death_signal_alone_reaches_a_prepared_proxy,
    ),
    #[cfg(target_os = "linux")]
    (
        "death_signal_ends_a_proxy_without_a_handler",
        death_signal_ends_a_proxy_without_a_handler,
    ),
    #[cfg(target_os = "linux")]
    (
        "death_signal_from_a_host_thread_exit_is_told_apart",
        death_signal_from_a_host_thread_exit_is_told_apart,
    ),
    #[cfg(target_os = "linux")]
    (
        "pidfd_alone_sees_the_host_die",
        pidfd_alone_sees_the_host_die,
    ),
    (
        "polling_alone_sees_the_reparenting",
        polling_alone_sees_the_reparenting,
    ),
    (
        "host_dead_before_arming_is_reported_at_once",
        host_dead_before_arming_is_reported_at_once,
    ),
    (
        "scenario_19_host_sigkilled_proxy_exits",
        host_sigkilled_proxy_exits,
    ),
];

/// How many times the all-layers SIGKILL scenario runs, to catch rare interleavings of the death
/// signal and the pidfd. Each round is two process starts and one death, tens of milliseconds.
const SIGKILL_ROUNDS: usize = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("host") => host(&args[1..]),
        Some("proxy") => proxy(&args[1..]),
        _ => run_scenarios(),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// (a) `PR_SET_PDEATHSIG` alone (no pidfd, no polling): the proxy catches SIGTERM, finds its parent
/// changed, and exits cleanly.
#[cfg(target_os = "linux")]
fn death_signal_alone_reaches_a_prepared_proxy() {
    let mut pair = spawn_host("main", &["signal", "handler"]);
    let proxy_pid = expect_armed(&pair);
    let killed = pair.kill_host();
    let reports = pair.reports_until_exit("after the host's death", killed + DEATH_WAIT);
    assert_eq!(
        reports,
        [format!(
            "signal parent-gone=true parent-now={}",
            Pid::this()
        )]
    );
    let status = util::wait_for(proxy_pid, "the proxy", killed + DEATH_WAIT);
    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(proxy_pid, 0));
}

/// (a) The death signal before the proxy has a handler for it: SIGTERM's default action ends the
/// proxy, which is what protects the start of `main`, before the runtime exists.
#[cfg(target_os = "linux")]
fn death_signal_ends_a_proxy_without_a_handler() {
    let mut pair = spawn_host("main", &["signal"]);
    let proxy_pid = expect_armed(&pair);
    let killed = pair.kill_host();
    let reports = pair.reports_until_exit("after the host's death", killed + DEATH_WAIT);
    assert_eq!(reports, Vec::<String>::new());
    let status = util::wait_for(proxy_pid, "the proxy", killed + DEATH_WAIT);
    assert!(
        matches!(
            status,
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGTERM, _)
        ),
        "{status:?}"
    );
}

/// `PR_SET_PDEATHSIG` fires when the parent *thread* exits: a host that spawned the proxy from a
/// thread that then ends sends a false alarm, which `parent_is_gone` tells apart; the host's real
/// death afterwards still reaches the proxy.
#[cfg(target_os = "linux")]
fn death_signal_from_a_host_thread_exit_is_told_apart() {
    let mut pair = spawn_host("thread", &["signal", "handler"]);
    let proxy_pid = expect_armed(&pair);
    // The host's spawning thread exits on this cue; the proxy stays a child of the host's process.
    pair.cue("end-thread");
    let false_alarm = pair.report("the false alarm", Instant::now() + DEATH_WAIT);
    assert_eq!(
        false_alarm,
        format!("signal parent-gone=false parent-now={}", pair.host_pid())
    );
    let killed = pair.kill_host();
    let reports = pair.reports_until_exit("after the host's death", killed + DEATH_WAIT);
    assert_eq!(
        reports,
        [format!(
            "signal parent-gone=true parent-now={}",
            Pid::this()
        )]
    );
    let status = util::wait_for(proxy_pid, "the proxy", killed + DEATH_WAIT);
    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(proxy_pid, 0));
}

/// (b) The pidfd alone (no death signal, no polling).
#[cfg(target_os = "linux")]
fn pidfd_alone_sees_the_host_die() {
    let mut pair = spawn_host("main", &["pidfd"]);
    let proxy_pid = expect_armed(&pair);
    let killed = pair.kill_host();
    let reports = pair.reports_until_exit("after the host's death", killed + DEATH_WAIT);
    assert_eq!(
        reports,
        [format!(
            "gone {:?} parent-now={}",
            ParentGone::Pidfd,
            Pid::this()
        )]
    );
    let status = util::wait_for(proxy_pid, "the proxy", killed + DEATH_WAIT);
    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(proxy_pid, 0));
}

/// (c) `getppid()` polling alone (no death signal, no pidfd). On Linux the orphan goes to this test
/// process, a subreaper, not to pid 1: the layer must compare with the original parent.
fn polling_alone_sees_the_reparenting() {
    let mut pair = spawn_host("main", &["polling"]);
    let proxy_pid = expect_armed(&pair);
    let killed = pair.kill_host();
    let reports = pair.reports_until_exit("after the host's death", killed + DEATH_WAIT);
    let new_parent = orphan_parent(reports.first());
    assert_eq!(
        reports,
        [format!(
            "gone {:?} parent-now={new_parent}",
            ParentGone::Polling
        )]
    );
    reap_proxy(proxy_pid, killed);
}

/// (d) The host dies between the proxy's recording of its parent and the arming of the rest (the
/// window step 4 of the arming race closes): reported at once, by every layer configuration.
fn host_dead_before_arming_is_reported_at_once() {
    let mut pair = spawn_host("main", &["signal,pidfd,polling", "handler", "deferred"]);
    let recorded = pair.report("the recorded parent", Instant::now() + START_WAIT);
    assert_eq!(recorded, format!("recorded parent={}", pair.host_pid()));
    pair.kill_host();
    // The proxy has been reparented: it arms only now, on this cue.
    pair.cue("arm");
    let armed_at = Instant::now();
    let reports = pair.reports_until_exit("after arming", armed_at + DEATH_WAIT);
    let proxy_pid = match reports.first().map(|line| parse_armed(line)) {
        Some((proxy_pid, original, gone_at_arming)) => {
            assert_eq!(original, pair.host_pid(), "{reports:?}");
            assert!(gone_at_arming, "{reports:?}");
            proxy_pid
        }
        None => panic!("no armed report: {reports:?}"),
    };
    let parent_now = orphan_parent(reports.get(1));
    assert_eq!(
        reports.get(1..).unwrap_or_default(),
        [format!(
            "gone {:?} parent-now={parent_now}",
            ParentGone::AtArming
        )]
    );
    reap_proxy(proxy_pid, armed_at);
}

/// Scenario 19, all layers as in production, repeated: the host is SIGKILLed and the proxy exits.
/// Whichever of the death signal and the pidfd (polling elsewhere) wins, the proxy must say its
/// host is gone.
fn host_sigkilled_proxy_exits() {
    let mut latencies = Vec::with_capacity(SIGKILL_ROUNDS);
    for round in 0..SIGKILL_ROUNDS {
        let mut pair = spawn_host("main", &["signal,pidfd,polling", "handler"]);
        let proxy_pid = expect_armed(&pair);
        let killed = pair.kill_host();
        let reports = pair.reports_until_exit("after the host's death", killed + DEATH_WAIT);
        latencies.push(killed.elapsed());
        let parent_now = orphan_parent(reports.first());
        let by_signal = format!("signal parent-gone=true parent-now={parent_now}");
        let by_pidfd = format!("gone {:?} parent-now={parent_now}", ParentGone::Pidfd);
        let by_polling = format!("gone {:?} parent-now={parent_now}", ParentGone::Polling);
        let expected: &[&String] = if cfg!(target_os = "linux") {
            &[&by_signal, &by_pidfd]
        } else {
            &[&by_polling]
        };
        assert!(
            reports.len() == 1 && expected.contains(&&reports[0]),
            "round {round}: {reports:?}"
        );
        reap_proxy(proxy_pid, killed);
    }
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    println!("    SIGKILL → proxy exit over {SIGKILL_ROUNDS} rounds: slowest {slowest:.2?}");
}

/// The proxy's `armed` report; returns its pid, checking it names the host as its original parent.
fn expect_armed(pair: &util::HostAndProxy) -> Pid {
    let line = pair.report("armed", Instant::now() + START_WAIT);
    let (proxy_pid, original, gone_at_arming) = parse_armed(&line);
    assert_eq!(original, pair.host_pid(), "{line}");
    assert!(!gone_at_arming, "{line}");
    proxy_pid
}

/// `armed pid=<proxy> parent=<original> gone-at-arming=<bool>`.
fn parse_armed(line: &str) -> (Pid, Pid, bool) {
    let fields: Vec<&str> = line
        .strip_prefix("armed ")
        .unwrap_or_else(|| panic!("not an armed report: {line}"))
        .split(' ')
        .map(|field| field.split_once('=').map_or(field, |(_, value)| value))
        .collect();
    let pid = |text: &str| Pid::from_raw(text.parse().unwrap_or_else(|_| panic!("{line}")));
    match fields[..] {
        [proxy, original, gone] => (pid(proxy), pid(original), gone == "true"),
        _ => panic!("not an armed report: {line}"),
    }
}

/// The parent an orphaned proxy must report as `parent-now`: this test process on Linux, its
/// subreaper; elsewhere whatever the report says (launchd or init), as there is no subreaper to
/// check against.
fn orphan_parent(report: Option<&String>) -> String {
    if cfg!(target_os = "linux") {
        Pid::this().to_string()
    } else {
        report
            .and_then(|line| line.rsplit('=').next())
            .unwrap_or_default()
            .to_owned()
    }
}

/// On Linux the orphaned proxy is our child (we are its subreaper): reap it, and check it exited
/// cleanly. Elsewhere it belongs to init, and its closed report pipe is all we can see.
fn reap_proxy(proxy_pid: Pid, since: Instant) {
    if cfg!(target_os = "linux") {
        let status = util::wait_for(proxy_pid, "the proxy", since + DEATH_WAIT);
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(proxy_pid, 0));
    }
}

// ---------------------------------------------------------------------------------------------
// The helper processes

/// `host <main|thread> <proxy args...>`: spawn the proxy, then wait for it (a SIGKILL ends the wait).
///
/// `thread`: spawn the proxy from a second thread, which exits on the first cue line on stdin. The
/// proxy shares that stdin but reads it only when `deferred`, which no `thread` scenario is.
fn host(args: &[String]) -> ExitCode {
    let (spawn_from, proxy_args) = args.split_first().expect("host <main|thread> <proxy args>");
    let proxy_args = proxy_args.to_vec();
    let spawn = move || {
        Command::new(std::env::current_exe().expect("find the test binary"))
            .arg("proxy")
            .args(&proxy_args)
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the proxy")
    };
    let mut proxy = match spawn_from.as_str() {
        "main" => spawn(),
        "thread" => std::thread::spawn(move || {
            let proxy = spawn();
            let _ = util::read_cue();
            proxy
        })
        .join()
        .expect("the spawning thread"),
        other => panic!("host: spawn from main or thread, not {other}"),
    };
    let _ = proxy.wait();
    ExitCode::SUCCESS
}

/// `proxy <layers> [handler] [deferred]`: arm the watchdog with only `<layers>` (a comma-separated
/// subset of `signal,pidfd,polling`), then report.
///
/// - `handler`: catch SIGTERM through tokio, as the real proxy does, and report
///   `signal parent-gone=<bool> parent-now=<pid>`; exit if the host is gone, carry on if not.
/// - `deferred`: record the parent and report `recorded parent=<pid>`, then wait for a cue before
///   arming, so that the test can kill the host in between.
///
/// Reports `armed pid=<pid> parent=<original> gone-at-arming=<bool>` once armed (and, with
/// `handler`, once the handler is installed), then `gone <layer> parent-now=<pid>` if
/// `parent_gone` resolves, and exits 0.
fn proxy(args: &[String]) -> ExitCode {
    let layers: Vec<&str> = args.first().map_or("", String::as_str).split(',').collect();
    let flag = |name: &str| args.iter().skip(1).any(|arg| arg == name);
    let original_parent = if flag("deferred") {
        let recorded = nix::unistd::getppid();
        util::report(&format!("recorded parent={recorded}"));
        if util::read_cue().is_none() {
            return ExitCode::FAILURE;
        }
        Some(recorded)
    } else {
        None
    };
    let watch = arm_parent_death_signal_with(WatchdogConfig {
        death_signal: layers.contains(&"signal"),
        pidfd: layers.contains(&"pidfd"),
        polling: layers.contains(&"polling"),
        original_parent,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the proxy's runtime");
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm =
            flag("handler").then(|| signal(SignalKind::terminate()).expect("catch SIGTERM"));
        // Poll the watchdog once before reporting, so that a pidfd is already registered with the
        // reactor when the test kills the host: its wake-up is what is tested, not a first check.
        // (Polling's first check may still land before or after the kill: the timer fires it on a
        // later turn. Either check compares with the original parent, which is what is tested.)
        let mut gone = std::pin::pin!(watch.parent_gone());
        let first = std::future::poll_fn(|context| Poll::Ready(gone.as_mut().poll(context))).await;
        util::report(&format!(
            "armed pid={} parent={} gone-at-arming={}",
            Pid::this(),
            watch.original_parent(),
            watch.gone_at_arming()
        ));
        if let Poll::Ready(gone) = first {
            util::report(&format!(
                "gone {gone:?} parent-now={}",
                nix::unistd::getppid()
            ));
            return;
        }
        // Two exits: the watchdog resolves (pidfd or polling), or SIGTERM arrives and the host is
        // gone. A SIGTERM while the host lives (a host thread's exit) is reported, then ignored.
        loop {
            tokio::select! {
                gone = &mut gone => {
                    util::report(&format!("gone {gone:?} parent-now={}", nix::unistd::getppid()));
                    return;
                }
                Some(()) = async {
                    match sigterm.as_mut() {
                        Some(sigterm) => sigterm.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let gone = watch.parent_is_gone();
                    util::report(&format!(
                        "signal parent-gone={gone} parent-now={}",
                        nix::unistd::getppid()
                    ));
                    if gone {
                        return;
                    }
                }
            }
        }
    });
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Runner (this target has `harness = false`, so that contenders can be this same binary)

/// How long one scenario may take before it counts as hung.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(60);

/// Run the scenarios with libtest's command line (filters, `--exact`, `--list --format terse` for
/// nextest), each on its own thread with a deadline, so that a hang is a failure rather than a
/// stuck run.
fn run_scenarios() -> ExitCode {
    // Orphaned proxies come to us rather than to pid 1 (which in a container may not reap them):
    // we reap them, read their exit status, and show that polling does not compare with 1.
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    // One at a time unless asked otherwise: scenarios share process-wide state (the umask, child
    // reaping) and each already runs dozens of processes.
    shoal_testkit::scenarios::run(SCENARIOS, SCENARIO_DEADLINE, 1)
}
