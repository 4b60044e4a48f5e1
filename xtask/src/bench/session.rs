//! `cargo xtask bench session`: shoal end to end (`shoal proxy` → daemon → server) against the
//! same server spoken to directly, measured in the same run.
//!
//! The server is the `shoal-fixture` test server. Everything runs as release builds: xtask itself
//! is a debug build (the `cargo xtask` alias), so [`run`] builds `shoal`, `shoal-fixture` and a
//! release xtask, and re-executes the release xtask, which calls [`measure`].
//!
//! The client side is this one process and, while timing, one thread: every session's stdio is
//! polled from a single `poll(2)` loop ([`exchange`]), so that 256 sessions add 256 `shoal proxy`
//! processes to the machine and nothing else (a client thread or process per session would compete
//! with the proxies for the same two cores and measure the scheduler). The same loop drives the
//! direct servers, so client costs are the same on both sides. Each session keeps exactly one
//! request in flight (closed loop): "N concurrent sessions" is N requests outstanding at any time.
//!
//! Measurements, in order:
//! 1. Attach. The server has a start-up delay ([`ATTACH_DELAY_MS`]) so that "direct start" models a
//!    server that takes a while to start. Cold start (no daemon: the proxy starts it, the daemon
//!    starts the server) and direct start alternate; each cold run ends with `shoal stop`. Then warm
//!    attach (the last cold run's daemon is left running) alternates with a direct start of the
//!    server without the delay, a reference for the bare cost of starting a process. Each figure is
//!    process start → `initialize` answered, `initialize` written right after spawning (as a host
//!    does: the pipe holds it until the other side reads).
//! 2. Steady state, one session each side (no start-up delay): echo round trips, then RSS.
//! 3. 64 and 256 concurrent sessions: that many direct fixture processes, each with one client
//!    (the baseline: what the machine runs without shoal), then that many `shoal proxy` processes
//!    on one daemon and one server. RSS of the daemon at 1, 64 and 256 sessions.
//! 4. 1 MiB results, one session each side, last (so that buffers grown by 1 MiB lines do not
//!    inflate the RSS figures above; the RSS after them is reported separately).
//!
//! Direct and shoal batches alternate where both sides can stay up at once, so that background
//! load on a shared machine hits both. RSS is `VmRSS` from `/proc/<pid>/status`: the figure the
//! targets name and what `ps`, `top` and `shoal status` show. It counts shared pages (the
//! binary's text, libc) in full for each process, so for the proxy `RssAnon` (its private heap and
//! stacks, what one more proxy really adds) is reported too. The daemon's figure is its own
//! process only, never the server's.

use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::{Value, json};
use shoal_ipc::{DaemonKey, DaemonPaths};
use shoal_wire::{ControlRequest, ControlResponse, PROTOCOL};

use crate::util::{control, say};

/// The server's start-up delay for the attach figures: a server that takes a while to start
/// (an `npx` package, a Python interpreter importing its dependencies) is what shoal saves.
const ATTACH_DELAY_MS: u64 = 300;
/// Cold starts (each with a `shoal stop`) and direct starts with the delay, each.
const COLD_RUNS: usize = 12;
/// Warm attaches, and direct starts without the delay, each.
const WARM_RUNS: usize = 40;
/// Sequential echo round trips per side, in alternating batches.
const ECHO_ROUNDS: usize = 4000;
const ECHO_BATCH: usize = 500;
/// 1 MiB results per side, in alternating batches.
const BIG_BYTES: usize = 1 << 20;
const BIG_ROUNDS: usize = 64;
const BIG_BATCH: usize = 16;
/// Results of 1 MiB a stalled session asks for and never reads.
const STALLED_RESULTS: u64 = 32;
/// Concurrent sessions, and the timed round trips each session makes.
const CONCURRENT: [(usize, usize); 2] = [(64, 60), (256, 30)];
/// Untimed round trips each session makes first (page faults, buffer growth, lazy init).
const WARMUP_ROUNDS: usize = 5;
/// The longest any single wait may take before the bench fails.
const WAIT: Duration = Duration::from_secs(60);

/// Echo round trips per side for the floors, free and pinned, in alternating batches.
const FLOOR_ECHO_ROUNDS: usize = 6000;
const FLOOR_ECHO_BATCH: usize = 1000;
/// Concurrent sessions for the multiplexer floor, and the timed round trips of each.
const FLOOR_SESSIONS: usize = 256;
const FLOOR_SESSION_ROUNDS: usize = 30;

/// The issue's targets.
const TARGET_WARM_ATTACH_MS: f64 = 5.0;
const TARGET_PROXY_RSS_MIB: f64 = 3.5;
/// Against the two-relay floor, same run: 1 MiB throughput at least this share of the floor's,
/// relay CPU per echo and pinned echo p50 at most this many times the floor's.
const TARGET_FLOOR_BIG_SHARE: f64 = 0.8;
const TARGET_FLOOR_CPU_RATIO: f64 = 1.2;
const TARGET_FLOOR_ECHO_RATIO: f64 = 1.2;
/// Requests per second with [`FLOOR_SESSIONS`] sessions: at least this share of the
/// multiplexer floor's.
const TARGET_FLOOR_MANY_SHARE: f64 = 0.8;
const TARGET_DAEMON_RSS_MIB: f64 = 16.0;
const TARGET_ECHO_RATIO: f64 = 3.0;

/// Build the release binaries and run the release xtask's [`measure`].
pub(crate) fn run() -> anyhow::Result<()> {
    let target_dir = crate::util::target_dir();
    let json_path = target_dir.join("bench").join("session.json");
    if cfg!(debug_assertions) {
        // Two builds: in one, cargo would unify the features of the dependencies xtask shares
        // with `shoal`, and the `shoal` measured would differ from (and relink over) the one
        // `cargo build --release -p shoal` makes.
        crate::util::build_shoal_and_fixture(true)?;
        let mut build = crate::util::cargo();
        build.args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "xtask",
            "--bin",
            "xtask",
        ]);
        crate::util::run_command(build)?;
        let mut release = Command::new(target_dir.join("release").join("xtask"));
        release.args(["bench", "session"]);
        return crate::util::run_command(release);
    }
    let bin_dir = std::env::current_exe()
        .context("find the release xtask")?
        .parent()
        .map(Path::to_path_buf)
        .context("the release xtask has no directory")?;
    measure(&bin_dir, &json_path)
}

/// The whole measurement, with `shoal` and `shoal-fixture` from `bin_dir`.
fn measure(bin_dir: &Path, json_path: &Path) -> anyhow::Result<()> {
    raise_nofile_limit(4 * 256 + 64)?;
    let bench = Bench::new(bin_dir)?;
    let started = Instant::now();
    let load_before = load_average();
    let result = bench.all();
    let stopped = bench.stop_everything();
    let mut figures = result?;
    stopped?;
    figures.load_before = load_before;
    print_table(&figures);
    print_floors(&figures);
    std::fs::create_dir_all(json_path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(json_path, serde_json::to_string_pretty(&figures.to_json())?)
        .with_context(|| format!("write {}", json_path.display()))?;
    say(&format!(
        "bench session: figures in {} ({:.0?})",
        json_path.display(),
        started.elapsed()
    ));
    Ok(())
}

/// The scratch dirs, binaries and server command lines of one run.
struct Bench {
    shoal: PathBuf,
    fixture: PathBuf,
    base: PathBuf,
    root: PathBuf,
    runtime_dir: PathBuf,
    /// Everything the proxies and servers write to stderr.
    stderr: File,
}

/// Every figure of one run.
#[derive(Default)]
struct Figures {
    direct_start: Vec<Duration>,
    cold_start: Vec<Duration>,
    warm_attach: Vec<Duration>,
    bare_start: Vec<Duration>,
    echo_direct: Vec<Duration>,
    echo_shoal: Vec<Duration>,
    echo_relay: Vec<Duration>,
    big_direct: Duration,
    big_shoal: Duration,
    concurrent: Vec<Concurrent>,
    fixture_rss: Rss,
    proxy_rss: Rss,
    proxy_rss_after_big: Rss,
    /// One proxy's proportional and private memory with the most sessions running.
    proxy_share: Option<(usize, Share)>,
    daemon_rss: Vec<(usize, Rss)>,
    daemon_rss_after_big: Rss,
    /// The daemon with one reading session, then with a second that stopped reading while its
    /// 1 MiB results pile up (its outbox at the bound that stops its requests being read).
    daemon_rss_unstalled: Rss,
    daemon_rss_stalled: Rss,
    /// The fast server: direct, behind the two-relay floor, behind shoal; free and pinned.
    floors_free: FloorRun,
    floors_pinned: FloorRun,
    /// The same, pinned, with every session's stdio on sockets ([`HostStdio::Sockets`]).
    floors_pinned_socket: FloorRun,
    /// The machine's one-minute load average when the run began: the floors are mostly the
    /// kernel's time, which a busy VM makes dear, so their ratios to shoal move with it.
    load_before: Option<f64>,
}

/// The half-relay floors' `relay-front` modes, in the order of [`FloorRun::echo_half`].
const HALF_MODES: [&str; 2] = ["--half", "--custody"];

/// One run of the floors (see [`Bench::floors`]).
#[derive(Default)]
struct FloorRun {
    echo_direct: Vec<Duration>,
    echo_floor: Vec<Duration>,
    echo_shoal: Vec<Duration>,
    /// Behind the half-relay floors, `[without custody, with custody]` (see
    /// [`peers`](super::peers)): requests from the host straight to the back relay.
    echo_half: [Vec<Duration>; 2],
    /// CPU time of the two relay processes over every echo (warm-up included) and the count.
    /// Per process: `[front, back]`, that is `[front relay, back relay]` and `[proxy, daemon]`.
    cpu_floor: [Duration; 2],
    cpu_shoal: [Duration; 2],
    cpu_half: [[Duration; 2]; 2],
    echoes: usize,
    big_direct: Duration,
    big_floor: Duration,
    big_shoal: Duration,
    big_half: [Duration; 2],
    /// Free run only: concurrent sessions through shoal, the multiplexer floor, and direct.
    many: Option<Many>,
}

/// [`FLOOR_SESSIONS`] concurrent sessions: requests per second through shoal, through the
/// multiplexer floor, and direct (that many fast servers); and how busy the multiplexing process
/// (shoal's daemon, the floor's `mux-back`) was: its CPU time over the exchange's wall time. A
/// figure near 1 means that process was the bottleneck (it is single-threaded in both). And the
/// CPU time per request of the session processes (the proxies; the front relays), which share
/// the machine's CPUs with everything else.
#[derive(Clone, Copy)]
struct Many {
    sessions: usize,
    shoal: f64,
    floor: f64,
    direct: f64,
    shoal_busy: f64,
    floor_busy: f64,
    shoal_session_cpu: Duration,
    floor_session_cpu: Duration,
    shoal_daemon_cpu: Duration,
    floor_mux_cpu: Duration,
}

struct Concurrent {
    sessions: usize,
    direct: Exchanged,
    shoal: Exchanged,
}

/// Memory of one process, from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Default)]
struct Rss {
    vm_rss: u64,
    rss_anon: u64,
}

impl Bench {
    fn new(bin_dir: &Path) -> anyhow::Result<Bench> {
        let shoal = bin_dir.join("shoal");
        let fixture = bin_dir.join("shoal-fixture");
        for binary in [&shoal, &fixture] {
            ensure!(binary.is_file(), "{} is not built", binary.display());
        }
        // Short: socket paths live under it.
        let base = PathBuf::from(format!("/tmp/xb-session-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("project");
        std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
        let stderr = File::create(base.join("stderr.log"))?;
        Ok(Bench {
            shoal,
            fixture,
            root: std::fs::canonicalize(&root)?,
            runtime_dir: base.join("rt"),
            base,
            stderr,
        })
    }

    /// The server command: the fixture, with a spawn counter (which also marks every process of
    /// this run in `/proc`, for the leftover check).
    fn server(&self, counter: &str, delay_ms: Option<u64>) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![self.fixture.clone().into()];
        if let Some(delay) = delay_ms {
            argv.extend(["--startup-delay-ms".into(), delay.to_string().into()]);
        }
        argv.extend(["--spawn-counter".into(), self.base.join(counter).into()]);
        argv
    }

    fn direct(&self, server: &[OsString]) -> Command {
        let mut command = Command::new(&server[0]);
        command.args(&server[1..]);
        command
    }

    /// The server behind the least a relay can do, as many times as shoal relays: each message
    /// crosses two `cat` processes each way (as it crosses the proxy and the daemon), which read
    /// and write with no parsing at all. The floor under any design with two relay processes.
    fn relay(&self, server: &[OsString]) -> Command {
        let quoted: Vec<String> = server
            .iter()
            .map(|arg| format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''")))
            .collect();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("cat | cat | {} | cat | cat", quoted.join(" ")));
        command
    }

    fn proxy(&self, server: &[OsString]) -> Command {
        let mut command = Command::new(&self.shoal);
        command
            .arg("proxy")
            .arg("--root")
            .arg(&self.root)
            .args(["--no-fallback", "--"])
            .args(server)
            .env("SHOAL_RUNTIME_DIR", &self.runtime_dir)
            .env_remove("SHOAL_IDLE_TIMEOUT")
            .env_remove("SHOAL_LOG");
        command
    }

    fn shoal_command(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new(&self.shoal);
        command
            .args(args)
            .env("SHOAL_RUNTIME_DIR", &self.runtime_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(self.stderr.try_clone()?))
            .stderr(Stdio::from(self.stderr.try_clone()?));
        let status = command.status().context("run shoal")?;
        ensure!(
            status.success(),
            "shoal {} exited with {status}",
            args.join(" ")
        );
        Ok(())
    }

    fn spawn(&self, command: Command, name: String) -> anyhow::Result<Peer> {
        Peer::spawn(command, name, &self.stderr, HostStdio::Pipes)
    }

    fn daemon_pid(&self, server: &[OsString], sessions: usize) -> anyhow::Result<u32> {
        let key = DaemonKey::new(
            self.root.clone(),
            server.to_vec(),
            env!("CARGO_PKG_VERSION"),
            PROTOCOL,
            vec![],
        );
        let paths = DaemonPaths::new(&self.runtime_dir, &key.id());
        match control(&paths.socket, &ControlRequest::Status)? {
            ControlResponse::Status(report) => {
                ensure!(
                    report.n_clients as usize == sessions,
                    "the daemon has {} sessions, expected {sessions}",
                    report.n_clients
                );
                Ok(report.pid)
            }
            other => bail!("status: {other:?}"),
        }
    }

    fn all(&self) -> anyhow::Result<Figures> {
        let mut figures = Figures::default();
        self.attach(&mut figures)?;
        self.steady(&mut figures)?;
        figures.floors_free = self.floors(false, HostStdio::Pipes)?;
        figures.floors_pinned = self.floors(true, HostStdio::Pipes)?;
        figures.floors_pinned_socket = self.floors(true, HostStdio::Sockets)?;
        Ok(figures)
    }

    /// The fast server ([`peers`](super::peers)), marked as this run's; `label` keeps the
    /// pinned run's daemon apart from the free run's (a pinned proxy must start its own, which
    /// inherits the CPU affinity).
    fn fast_server(&self, label: &str) -> anyhow::Result<Vec<OsString>> {
        let xtask = std::env::current_exe().context("find the release xtask")?;
        Ok(vec![
            xtask.into(),
            "bench-peer".into(),
            "fast-server".into(),
            self.base.join(label).into(),
        ])
    }

    /// The two-relay floor in front of `server` (see [`peers`](super::peers)); with `mode`
    /// `--half` or `--custody`, a half-relay floor (the front hands the host's stdin to the back).
    fn rust_relay(
        &self,
        server: &[OsString],
        label: &str,
        mode: Option<&str>,
    ) -> anyhow::Result<Command> {
        let xtask = std::env::current_exe().context("find the release xtask")?;
        let mut command = Command::new(xtask);
        command.args(["bench-peer", "relay-front"]);
        command.args(mode);
        command
            .arg(
                self.base
                    .join(format!("{label}{}.sock", mode.unwrap_or_default())),
            )
            .arg("--")
            .args(server);
        Ok(command)
    }

    /// [`FLOOR_SESSIONS`] concurrent sessions, each [`FLOOR_SESSION_ROUNDS`] echoes, through shoal
    /// (joining `shoal`'s one session on the daemon), through the multiplexer floor (front relays
    /// on one `mux-back`), and direct (one fast server each).
    fn many_sessions(&self, server: &[OsString], shoal: &mut Vec<Peer>) -> anyhow::Result<Many> {
        let xtask = std::env::current_exe().context("find the release xtask")?;
        let mut direct = Vec::with_capacity(FLOOR_SESSIONS);
        for n in 0..FLOOR_SESSIONS {
            direct.push(self.spawn(self.direct(server), format!("fast direct {n}"))?);
        }
        initialize(&mut direct)?;
        let direct_rate = exchange(&mut direct, WARMUP_ROUNDS, FLOOR_SESSION_ROUNDS, &Echo)?.rate();
        finish_all(direct)?;

        let socket = self.base.join("mux.sock");
        let mut mux = Command::new(&xtask)
            .args(["bench-peer", "mux-back"])
            .arg(&socket)
            .arg("--")
            .args(server)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(self.stderr.try_clone()?))
            .spawn()
            .context("start the multiplexer floor")?;
        let mux_pid = mux.id();
        let floor_run = (|| -> anyhow::Result<(Exchanged, Duration, Duration)> {
            let mut fronts = Vec::with_capacity(FLOOR_SESSIONS);
            for n in 0..FLOOR_SESSIONS {
                let mut front = Command::new(&xtask);
                front
                    .args(["bench-peer", "relay-front", "--connect"])
                    .arg(&socket);
                fronts.push(self.spawn(front, format!("mux front {n}"))?);
            }
            initialize(&mut fronts)?;
            let pids: Vec<u32> = fronts.iter().map(Peer::pid).collect();
            let (mux_before, fronts_before) = (cpu_time(&[mux_pid])?, cpu_time(&pids)?);
            let run = exchange(&mut fronts, WARMUP_ROUNDS, FLOOR_SESSION_ROUNDS, &Echo)?;
            let mux_cpu = cpu_time(&[mux_pid])? - mux_before;
            let fronts_cpu = cpu_time(&pids)? - fronts_before;
            finish_all(fronts)?;
            Ok((run, mux_cpu, fronts_cpu))
        })();
        let _ = mux.kill();
        let _ = mux.wait();
        let (floor_run, floor_mux_cpu, floor_fronts_cpu) = floor_run?;

        let mut new = Vec::with_capacity(FLOOR_SESSIONS);
        for n in shoal.len()..FLOOR_SESSIONS {
            new.push(self.spawn(self.proxy(server), format!("fast proxy {n}"))?);
        }
        initialize(&mut new)?;
        shoal.append(&mut new);
        let daemon = self.daemon_pid(server, FLOOR_SESSIONS)?;
        let pids: Vec<u32> = shoal.iter().map(Peer::pid).collect();
        let (daemon_before, proxies_before) = (cpu_time(&[daemon])?, cpu_time(&pids)?);
        let run = exchange(shoal, WARMUP_ROUNDS, FLOOR_SESSION_ROUNDS, &Echo)?;
        let daemon_cpu = cpu_time(&[daemon])? - daemon_before;
        let proxies_cpu = cpu_time(&pids)? - proxies_before;
        let rest = shoal.split_off(1);
        finish_all(rest)?;
        let per_request =
            |cpu: Duration, run: &Exchanged| cpu / u32::try_from(run.count).unwrap_or(u32::MAX);
        Ok(Many {
            sessions: FLOOR_SESSIONS,
            shoal: run.rate(),
            floor: floor_run.rate(),
            direct: direct_rate,
            shoal_busy: busy(daemon_cpu, &run),
            floor_busy: busy(floor_mux_cpu, &floor_run),
            shoal_session_cpu: per_request(proxies_cpu, &run),
            floor_session_cpu: per_request(floor_fronts_cpu, &floor_run),
            shoal_daemon_cpu: per_request(daemon_cpu, &run),
            floor_mux_cpu: per_request(floor_mux_cpu, &floor_run),
        })
    }

    /// The floors of the design, in one run: the fast server spoken to directly, behind the
    /// two-relay floor, behind shoal and behind the half-relay floors, one session each; echo
    /// round trips (and the relays' CPU time over them), then 1 MiB results. With `pinned`,
    /// every process and this thread run on CPU 0, so that the figures count work, not
    /// cross-CPU wake-ups. `stdio` is what each session's stdin and stdout are.
    fn floors(&self, pinned: bool, stdio: HostStdio) -> anyhow::Result<FloorRun> {
        let label = match (pinned, stdio) {
            (false, HostStdio::Pipes) => "fast-free",
            (true, HostStdio::Pipes) => "fast-pinned",
            (false, HostStdio::Sockets) => "fast-free-socket",
            (true, HostStdio::Sockets) => "fast-pinned-socket",
        };
        say(&format!(
            "bench session: the floors, {}{} ({FLOOR_ECHO_ROUNDS} echoes and {BIG_ROUNDS} 1 MiB \
             results each side)",
            if pinned { "pinned to CPU 0" } else { "free" },
            if stdio == HostStdio::Sockets {
                ", stdio on sockets"
            } else {
                ""
            }
        ));
        let spawn = |command: Command, name: String| -> anyhow::Result<Peer> {
            Peer::spawn(command, name, &self.stderr, stdio)
        };
        let pin = |command: Command| -> Command {
            if !pinned {
                return command;
            }
            let mut taskset = Command::new("taskset");
            taskset
                .args(["-c", "0"])
                .arg(command.get_program())
                .args(command.get_args());
            for (name, value) in command.get_envs() {
                match value {
                    Some(value) => taskset.env(name, value),
                    None => taskset.env_remove(name),
                };
            }
            taskset
        };
        let previous = if pinned {
            Some(pin_this_thread()?)
        } else {
            None
        };
        let outcome = (|| {
            let server = self.fast_server(label)?;
            let mut direct = vec![spawn(pin(self.direct(&server)), "fast direct".into())?];
            let mut floor = vec![spawn(
                pin(self.rust_relay(&server, label, None)?),
                "floor".into(),
            )?];
            let mut halves = Vec::new();
            for mode in HALF_MODES {
                halves.push(vec![spawn(
                    pin(self.rust_relay(&server, label, Some(mode))?),
                    format!("floor {mode}"),
                )?]);
            }
            let mut shoal = vec![spawn(pin(self.proxy(&server)), "fast proxy".into())?];
            initialize(&mut direct)?;
            initialize(&mut floor)?;
            initialize(&mut shoal)?;
            let mut half_pids = Vec::new();
            for half in &mut halves {
                initialize(half)?;
                half_pids.push([half[0].pid(), child_of(half[0].pid())?]);
            }
            let floor_pids = [floor[0].pid(), child_of(floor[0].pid())?];
            let shoal_pids = [shoal[0].pid(), self.daemon_pid(&server, 1)?];
            let mut run = FloorRun::default();
            for batch in 0..FLOOR_ECHO_ROUNDS / FLOOR_ECHO_BATCH {
                let warmup = if batch == 0 { WARMUP_ROUNDS * 10 } else { 0 };
                run.echo_direct
                    .extend(exchange(&mut direct, warmup, FLOOR_ECHO_BATCH, &Echo)?.times);
                let before = cpu_times(&floor_pids)?;
                run.echo_floor
                    .extend(exchange(&mut floor, warmup, FLOOR_ECHO_BATCH, &Echo)?.times);
                add_since(&mut run.cpu_floor, before, cpu_times(&floor_pids)?);
                let before = cpu_times(&shoal_pids)?;
                run.echo_shoal
                    .extend(exchange(&mut shoal, warmup, FLOOR_ECHO_BATCH, &Echo)?.times);
                add_since(&mut run.cpu_shoal, before, cpu_times(&shoal_pids)?);
                for (n, half) in halves.iter_mut().enumerate() {
                    let before = cpu_times(&half_pids[n])?;
                    run.echo_half[n].extend(exchange(half, warmup, FLOOR_ECHO_BATCH, &Echo)?.times);
                    add_since(&mut run.cpu_half[n], before, cpu_times(&half_pids[n])?);
                }
                run.echoes += warmup + FLOOR_ECHO_BATCH;
            }
            for batch in 0..BIG_ROUNDS / BIG_BATCH {
                let warmup = usize::from(batch == 0);
                let total = |peers: &mut [Peer]| -> anyhow::Result<Duration> {
                    Ok(exchange(peers, warmup, BIG_BATCH, &Big)?.times.iter().sum())
                };
                run.big_direct += total(&mut direct)?;
                run.big_floor += total(&mut floor)?;
                run.big_shoal += total(&mut shoal)?;
                for (n, half) in halves.iter_mut().enumerate() {
                    run.big_half[n] += total(half)?;
                }
            }
            if !pinned && stdio == HostStdio::Pipes {
                run.many = Some(self.many_sessions(&server, &mut shoal)?);
            }
            finish_all(direct)?;
            finish_all(floor)?;
            finish_all(shoal)?;
            for half in halves {
                finish_all(half)?;
            }
            Ok(run)
        })();
        if let Some(previous) = previous {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &previous)?;
        }
        outcome
    }

    fn attach(&self, figures: &mut Figures) -> anyhow::Result<()> {
        let delayed = self.server("spawns-attach", Some(ATTACH_DELAY_MS));
        let direct_delayed = self.server("spawns-direct", Some(ATTACH_DELAY_MS));
        let bare = self.server("spawns-direct", None);
        say(&format!(
            "bench session: {COLD_RUNS} cold starts and {COLD_RUNS} direct starts \
             ({ATTACH_DELAY_MS} ms server start-up delay)"
        ));
        for run in 0..COLD_RUNS {
            let (took, peer) =
                attach_once(self.spawn(self.direct(&direct_delayed), "direct".into())?)?;
            figures.direct_start.push(took);
            peer.finish()?;
            let (took, peer) = attach_once(self.spawn(self.proxy(&delayed), "cold proxy".into())?)?;
            figures.cold_start.push(took);
            peer.finish()?;
            if run + 1 < COLD_RUNS {
                let root = self.root.to_string_lossy().into_owned();
                self.shoal_command(&["stop", "--root", &root])?;
            }
        }
        let backends = count_lines(&self.base.join("spawns-attach"))?;
        ensure!(
            backends == COLD_RUNS,
            "{backends} server starts for {COLD_RUNS} cold starts: some were not cold"
        );
        say(&format!(
            "bench session: {WARM_RUNS} warm attaches and {WARM_RUNS} direct starts without delay"
        ));
        for _ in 0..WARM_RUNS {
            let (took, peer) = attach_once(self.spawn(self.direct(&bare), "direct".into())?)?;
            figures.bare_start.push(took);
            peer.finish()?;
            let (took, peer) = attach_once(self.spawn(self.proxy(&delayed), "warm proxy".into())?)?;
            figures.warm_attach.push(took);
            peer.finish()?;
        }
        let backends = count_lines(&self.base.join("spawns-attach"))?;
        ensure!(backends == COLD_RUNS, "a warm attach started a server");
        Ok(())
    }

    fn steady(&self, figures: &mut Figures) -> anyhow::Result<()> {
        let server = self.server("spawns-steady", None);
        let direct_server = self.server("spawns-direct", None);
        let mut direct = vec![self.spawn(self.direct(&direct_server), "direct 0".into())?];
        let mut proxies = vec![self.spawn(self.proxy(&server), "proxy 0".into())?];
        let mut relay = vec![self.spawn(self.relay(&direct_server), "cat relay".into())?];
        initialize(&mut direct)?;
        initialize(&mut proxies)?;
        initialize(&mut relay)?;

        say(&format!(
            "bench session: {ECHO_ROUNDS} echo round trips each side, one session"
        ));
        for batch in 0..ECHO_ROUNDS / ECHO_BATCH {
            let warmup = if batch == 0 { WARMUP_ROUNDS * 10 } else { 0 };
            let direct_batch = exchange(&mut direct, warmup, ECHO_BATCH, &Echo)?;
            figures.echo_direct.extend(direct_batch.times);
            let shoal_batch = exchange(&mut proxies, warmup, ECHO_BATCH, &Echo)?;
            figures.echo_shoal.extend(shoal_batch.times);
            let relay_batch = exchange(&mut relay, warmup, ECHO_BATCH, &Echo)?;
            figures.echo_relay.extend(relay_batch.times);
        }
        finish_all(relay)?;
        figures.proxy_rss = rss(proxies[0].pid())?;
        figures.fixture_rss = rss(direct[0].pid())?;
        let daemon = self.daemon_pid(&server, 1)?;
        figures.daemon_rss.push((1, rss(daemon)?));

        for (sessions, rounds) in CONCURRENT {
            say(&format!(
                "bench session: {sessions} concurrent sessions, {rounds} round trips each"
            ));
            let mut many = Vec::with_capacity(sessions);
            for n in 0..sessions {
                many.push(self.spawn(self.direct(&direct_server), format!("direct {n}"))?);
            }
            initialize(&mut many)?;
            let direct_run = exchange(&mut many, WARMUP_ROUNDS, rounds, &Echo)?;
            finish_all(many)?;

            let mut new = Vec::with_capacity(sessions - proxies.len());
            for n in proxies.len()..sessions {
                new.push(self.spawn(self.proxy(&server), format!("proxy {n}"))?);
            }
            initialize(&mut new)?;
            proxies.append(&mut new);
            let shoal_run = exchange(&mut proxies, WARMUP_ROUNDS, rounds, &Echo)?;
            figures.concurrent.push(Concurrent {
                sessions,
                direct: direct_run,
                shoal: shoal_run,
            });
            let daemon_now = self.daemon_pid(&server, sessions)?;
            ensure!(daemon_now == daemon, "the daemon changed during the bench");
            figures.daemon_rss.push((sessions, rss(daemon)?));
            figures.proxy_share = Some((sessions, share(proxies[0].pid())?));
        }
        let rest = proxies.split_off(1);
        finish_all(rest)?;

        say(&format!(
            "bench session: {BIG_ROUNDS} results of {} MiB each side",
            BIG_BYTES >> 20
        ));
        for batch in 0..BIG_ROUNDS / BIG_BATCH {
            let warmup = usize::from(batch == 0);
            let direct_batch = exchange(&mut direct, warmup, BIG_BATCH, &Big)?;
            figures.big_direct += direct_batch.times.iter().sum::<Duration>();
            let shoal_batch = exchange(&mut proxies, warmup, BIG_BATCH, &Big)?;
            figures.big_shoal += shoal_batch.times.iter().sum::<Duration>();
        }
        figures.proxy_rss_after_big = rss(proxies[0].pid())?;
        figures.daemon_rss_after_big = rss(self.daemon_pid(&server, 1)?)?;
        self.stalled_session(&server, figures)?;
        finish_all(direct)?;
        finish_all(proxies)?;
        let backends = count_lines(&self.base.join("spawns-steady"))?;
        ensure!(backends == 1, "{backends} shared server starts, expected 1");
        Ok(())
    }

    /// The daemon's RSS with one session, then with a second that asks for [`STALLED_RESULTS`]
    /// results of 1 MiB and never reads them: the daemon stops reading its requests once its
    /// outbox is over the soft limit, so its memory levels off at that bound plus what was in
    /// flight. Each figure is read after a `status` request, which gives freed memory back
    /// first; the stalled one once two readings 200 ms apart agree (the bench's own settling,
    /// under a deadline).
    fn stalled_session(&self, server: &[OsString], figures: &mut Figures) -> anyhow::Result<()> {
        say(&format!(
            "bench session: a session that stops reading {STALLED_RESULTS} results of 1 MiB"
        ));
        let daemon = self.daemon_pid(server, 1)?;
        figures.daemon_rss_unstalled = rss(daemon)?;
        let mut stalled = vec![self.spawn(self.proxy(server), "stalled".into())?];
        initialize(&mut stalled)?;
        for id in 0..STALLED_RESULTS {
            stalled[0].send(&Big.request(1000 + id))?;
        }
        let deadline = Instant::now() + WAIT;
        let mut last = 0;
        loop {
            let now = rss(self.daemon_pid(server, 2)?)?;
            let grown = now
                .vm_rss
                .saturating_sub(figures.daemon_rss_unstalled.vm_rss);
            if grown > (4 << 10) && now.vm_rss.abs_diff(last) < 256 {
                figures.daemon_rss_stalled = now;
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the stalled session's memory did not level off within {WAIT:?}"
            );
            last = now.vm_rss;
            std::thread::sleep(Duration::from_millis(200));
        }
        // Killed, not finished: its host never reads, and the daemon frees its queue at once.
        let mut stalled = stalled.pop().context("the stalled peer")?;
        let _ = stalled.child.kill();
        let _ = stalled.child.wait();
        Ok(())
    }

    /// `shoal stop --all`, then check that no process of this run is left; the scratch dir goes.
    fn stop_everything(&self) -> anyhow::Result<()> {
        let stopped = self.shoal_command(&["stop", "--all"]);
        let marker = self.base.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = processes_mentioning(&marker);
        while !left.is_empty() && Instant::now() < deadline {
            // Stopped daemons and servers exit on their own; this only waits for them to be gone.
            std::thread::sleep(Duration::from_millis(20));
            left = processes_mentioning(&marker);
        }
        for (pid, _) in &left {
            let _ = shoal_testkit::process::kill(*pid);
        }
        ensure!(
            left.is_empty(),
            "processes left after `shoal stop --all` (killed now): {left:?}"
        );
        // `shoal stop` says "nothing running" (exit 1) when the daemons already went: only a
        // leftover process is a failure.
        if let Err(error) = stopped {
            say(&format!("bench session: {error:#}"));
        }
        let _ = std::fs::remove_dir_all(&self.base);
        Ok(())
    }
}

/// Pin this thread to CPU 0; returns the affinity it had.
fn pin_this_thread() -> anyhow::Result<nix::sched::CpuSet> {
    let this = nix::unistd::Pid::from_raw(0);
    let previous = nix::sched::sched_getaffinity(this).context("read this thread's CPUs")?;
    let mut only_zero = nix::sched::CpuSet::new();
    only_zero.set(0)?;
    nix::sched::sched_setaffinity(this, &only_zero).context("pin this thread to CPU 0")?;
    Ok(previous)
}

/// The only child of `pid` (the floor's back relay, started by its front).
fn child_of(pid: u32) -> anyhow::Result<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    text.split_whitespace()
        .next()
        .and_then(|child| child.parse().ok())
        .with_context(|| format!("{pid} has no child"))
}

/// The CPU time of every thread of `pids` so far (`/proc/<pid>/task/*/schedstat`: nanoseconds on
/// the CPU, exact, where `stat`'s ticks are 10 ms).
fn cpu_time(pids: &[u32]) -> anyhow::Result<Duration> {
    let mut total = 0u64;
    for pid in pids {
        let tasks = format!("/proc/{pid}/task");
        for task in std::fs::read_dir(&tasks).with_context(|| format!("list {tasks}"))? {
            let path = task?.path().join("schedstat");
            // A thread that ended since the listing has no CPU time left to count.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            total += text
                .split_whitespace()
                .next()
                .and_then(|nanos| nanos.parse::<u64>().ok())
                .with_context(|| format!("read {}", path.display()))?;
        }
    }
    Ok(Duration::from_nanos(total))
}

/// Time one start: process spawned (already, by the caller, right before) → `initialize` answered.
fn attach_once(mut peer: Peer) -> anyhow::Result<(Duration, Peer)> {
    peer.send(&initialize_request(0))?;
    let deadline = Instant::now() + WAIT;
    loop {
        let line = peer.wait_line(deadline)?;
        if response_id(&line) == Some(0) {
            let took = peer.spawned.elapsed();
            check_initialize(&line).with_context(|| peer.name.clone())?;
            return Ok((took, peer));
        }
    }
}

fn initialize_request(id: u64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": shoal_testkit::client::LATEST_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "xtask bench session", "version": "1"},
        },
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

fn check_initialize(line: &[u8]) -> anyhow::Result<()> {
    let message: Value = serde_json::from_slice(line).context("initialize answer")?;
    ensure!(
        message["result"]["serverInfo"].is_object(),
        "initialize answered {message}"
    );
    Ok(())
}

/// `initialize` + `notifications/initialized` on every peer, concurrently.
fn initialize(peers: &mut [Peer]) -> anyhow::Result<()> {
    exchange(peers, 0, 1, &Initialize)?;
    for peer in peers.iter_mut() {
        peer.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")?;
    }
    Ok(())
}

fn finish_all(peers: Vec<Peer>) -> anyhow::Result<()> {
    let mut closing = Vec::with_capacity(peers.len());
    for mut peer in peers {
        peer.stdin = None;
        closing.push(peer);
    }
    for peer in closing {
        peer.finish()?;
    }
    Ok(())
}

/// What one round trip sends and how its answer is checked.
trait Exchange {
    fn request(&self, id: u64) -> Vec<u8>;
    fn check(&self, id: u64, line: &[u8]) -> anyhow::Result<()>;
}

struct Initialize;

impl Exchange for Initialize {
    fn request(&self, id: u64) -> Vec<u8> {
        initialize_request(id)
    }

    fn check(&self, _id: u64, line: &[u8]) -> anyhow::Result<()> {
        check_initialize(line)
    }
}

/// The `echo` tool: a small request and a small result.
struct Echo;

impl Exchange for Echo {
    fn request(&self, id: u64) -> Vec<u8> {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\
             \"echo\",\"arguments\":{{\"text\":\"bench {id}\"}}}}}}\n"
        )
        .into_bytes()
    }

    fn check(&self, id: u64, line: &[u8]) -> anyhow::Result<()> {
        let message: Value = serde_json::from_slice(line).context("echo answer")?;
        ensure!(
            message["result"]["content"][0]["text"] == format!("bench {id}").as_str(),
            "echo {id} answered {message}"
        );
        Ok(())
    }
}

/// The `big` tool: a small request and a 1 MiB text result.
struct Big;

impl Exchange for Big {
    fn request(&self, id: u64) -> Vec<u8> {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\
             \"big\",\"arguments\":{{\"bytes\":{BIG_BYTES}}}}}}}\n"
        )
        .into_bytes()
    }

    fn check(&self, id: u64, line: &[u8]) -> anyhow::Result<()> {
        // Parsing the whole megabyte would time the client, not the transport: the id was
        // matched already, and the length and the start of the result say it is the text.
        ensure!(
            line.len() > BIG_BYTES && memchr::memmem::find(line, b"\"result\"").is_some(),
            "big {id} answered {} bytes: {}",
            line.len(),
            String::from_utf8_lossy(&line[..line.len().min(300)])
        );
        Ok(())
    }
}

/// Run `rounds` timed round trips (after `warmup` untimed ones) on every peer at once, one
/// request in flight per peer. Returns each timed round trip, and the wall time of the whole
/// exchange with the number of round trips it made (warm-up included), for a rate.
fn exchange(
    peers: &mut [Peer],
    warmup: usize,
    rounds: usize,
    kind: &dyn Exchange,
) -> anyhow::Result<Exchanged> {
    let total = warmup + rounds;
    let mut times = Vec::with_capacity(peers.len() * rounds);
    let mut done = vec![0usize; peers.len()];
    let started = Instant::now();
    for peer in peers.iter_mut() {
        peer.send_next(kind)?;
    }
    let mut waiting = peers.len();
    let deadline = started + WAIT;
    let mut ready = Vec::with_capacity(peers.len());
    let mut which: Vec<usize> = Vec::with_capacity(peers.len());
    while waiting > 0 {
        ready.clear();
        which.clear();
        // Rebuilt every time: the descriptors borrow the peers, which are read below.
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(waiting);
        for (n, peer) in peers.iter().enumerate() {
            if done[n] < total {
                fds.push(PollFd::new(peer.stdout.as_fd(), PollFlags::POLLIN));
                which.push(n);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let stuck: Vec<&str> = which.iter().map(|&n| peers[n].name.as_str()).collect();
            bail!("no answer within {WAIT:?} from {stuck:?}");
        }
        match poll(&mut fds, poll_timeout(left)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(error) => return Err(error).context("poll the sessions"),
        }
        for (fd, &n) in fds.iter().zip(&which) {
            if fd.revents().is_some_and(|events| !events.is_empty()) {
                ready.push(n);
            }
        }
        drop(fds);
        for &n in &ready {
            let peer = &mut peers[n];
            peer.fill()?;
            let mut answered = false;
            while let Some((start, end)) = peer.next_line() {
                let line = &peer.buf[start..end];
                let Some(expected) = peer.awaiting else {
                    continue;
                };
                if response_id(line) != Some(expected) {
                    continue; // a notification, or a server request the bench does not use
                }
                let took = peer.sent_at.elapsed();
                kind.check(expected, line)
                    .with_context(|| format!("{}: round trip {}", peer.name, done[n]))?;
                peer.awaiting = None;
                answered = true;
                done[n] += 1;
                if done[n] > warmup {
                    times.push(took);
                }
            }
            peer.compact();
            if answered {
                if done[n] < total {
                    peer.send_next(kind)?;
                } else {
                    waiting -= 1;
                }
            } else if peer.eof {
                bail!("{} closed its output", peer.name);
            }
        }
    }
    Ok(Exchanged {
        times,
        elapsed: started.elapsed(),
        count: peers.len() * total,
    })
}

struct Exchanged {
    /// The timed round trips.
    times: Vec<Duration>,
    /// Wall time of the whole exchange, warm-up included.
    elapsed: Duration,
    /// Round trips made, warm-up included.
    count: usize,
}

impl Exchanged {
    /// Round trips per second over the whole exchange.
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// [`cpu_time`] of each of `pids` on its own.
fn cpu_times(pids: &[u32; 2]) -> anyhow::Result<[Duration; 2]> {
    Ok([cpu_time(&pids[..1])?, cpu_time(&pids[1..])?])
}

/// Add what each process spent since `before` to `total`.
fn add_since(total: &mut [Duration; 2], before: [Duration; 2], now: [Duration; 2]) {
    for n in 0..2 {
        total[n] += now[n].saturating_sub(before[n]);
    }
}

/// CPU time spent over an exchange, as a share of its wall time.
fn busy(cpu: Duration, run: &Exchanged) -> f64 {
    cpu.as_secs_f64() / run.elapsed.as_secs_f64()
}

fn poll_timeout(left: Duration) -> PollTimeout {
    let millis = u16::try_from(left.as_millis().min(10_000)).unwrap_or(10_000);
    PollTimeout::from(millis)
}

/// The top-level `"id"` of a response, when it is a non-negative integer. Lines up to 64 KiB are
/// parsed; a longer one (a 1 MiB result) is searched for `"id":` near its start and end, where
/// every JSON-RPC writer puts it, so that the client does not spend its time parsing megabytes.
fn response_id(line: &[u8]) -> Option<u64> {
    if line.len() <= 64 * 1024 {
        let message: Value = serde_json::from_slice(line).ok()?;
        if message.get("method").is_some() {
            return None;
        }
        return message.get("id")?.as_u64();
    }
    let head = &line[..256];
    let tail = &line[line.len() - 256..];
    for part in [head, tail] {
        if let Some(at) = memchr::memmem::find(part, b"\"id\":") {
            let digits: String = part[at + 5..]
                .iter()
                .skip_while(|b| **b == b' ')
                .take_while(|b| b.is_ascii_digit())
                .map(|b| char::from(*b))
                .collect();
            return digits.parse().ok();
        }
    }
    None
}

/// The one-minute load average (`/proc/loadavg`), if it can be read.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a [`Peer`]'s stdin and stdout are: pipes, as a host written in Rust or Python gives a
/// server, or a socket pair each, as a Node host does (libuv makes a child's stdio from socket
/// pairs). The half-relay floors take requests from it by different calls (see
/// [`peers`](super::peers)), and the proxy reads a socket through another path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HostStdio {
    Pipes,
    Sockets,
}

/// One process we speak MCP to over its stdio: a direct fixture or a `shoal proxy`.
struct Peer {
    name: String,
    child: Child,
    /// Our end of its stdin, a pipe or a socket ([`HostStdio`]).
    stdin: Option<File>,
    /// Our end of its stdout; non-blocking, polled by [`exchange`].
    stdout: File,
    spawned: Instant,
    /// `buf[head..filled]` is read and not yet consumed; `buf[head..scanned]` has no newline.
    buf: Vec<u8>,
    head: usize,
    scanned: usize,
    filled: usize,
    eof: bool,
    next_id: u64,
    awaiting: Option<u64>,
    sent_at: Instant,
}

impl Peer {
    fn spawn(
        mut command: Command,
        name: String,
        stderr: &File,
        stdio: HostStdio,
    ) -> anyhow::Result<Peer> {
        let spawned = Instant::now();
        command.stderr(Stdio::from(stderr.try_clone()?));
        let ours = match stdio {
            HostStdio::Pipes => {
                command.stdin(Stdio::piped()).stdout(Stdio::piped());
                None
            }
            HostStdio::Sockets => {
                // As libuv gives a child: a socket pair per descriptor.
                let (stdin, child_stdin) = UnixStream::pair()?;
                let (stdout, child_stdout) = UnixStream::pair()?;
                command
                    .stdin(Stdio::from(OwnedFd::from(child_stdin)))
                    .stdout(Stdio::from(OwnedFd::from(child_stdout)));
                Some((OwnedFd::from(stdin), OwnedFd::from(stdout)))
            }
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn {name}: {command:?}"))?;
        // `command` still holds the child's socket ends; it is dropped when this returns, so
        // the child's end of its stdout is then open only in the child.
        let (stdin, stdout) = match ours {
            Some(ends) => ends,
            None => {
                let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                    bail!("{name}: stdio not piped");
                };
                (OwnedFd::from(stdin), OwnedFd::from(stdout))
            }
        };
        let (stdin, stdout) = (File::from(stdin), File::from(stdout));
        let flags = fcntl(&stdout, FcntlArg::F_GETFL)?;
        fcntl(
            &stdout,
            FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
        )?;
        Ok(Peer {
            name,
            child,
            stdin: Some(stdin),
            stdout,
            spawned,
            buf: vec![0; 64 * 1024],
            head: 0,
            scanned: 0,
            filled: 0,
            eof: false,
            next_id: 1,
            awaiting: None,
            sent_at: Instant::now(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, line: &[u8]) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin
            .write_all(line)
            .with_context(|| format!("write to {}", self.name))
    }

    fn send_next(&mut self, kind: &dyn Exchange) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let line = kind.request(id);
        self.awaiting = Some(id);
        self.sent_at = Instant::now();
        self.send(&line)
    }

    /// Read everything available now.
    fn fill(&mut self) -> anyhow::Result<()> {
        loop {
            if self.filled == self.buf.len() {
                self.compact();
                if self.filled == self.buf.len() {
                    let len = self.buf.len();
                    self.buf.resize(len * 2, 0);
                }
            }
            match self.stdout.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => self.filled += n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error).with_context(|| format!("read {}", self.name)),
            }
        }
    }

    /// The next complete line already read, without its newline.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        let Some(at) = memchr::memchr(b'\n', &self.buf[self.scanned..self.filled]) else {
            self.scanned = self.filled;
            return None;
        };
        let start = self.head;
        let end = self.scanned + at;
        self.head = end + 1;
        self.scanned = end + 1;
        Some((start, end))
    }

    /// Move unconsumed bytes to the front (cheap in the common case: nothing left over).
    fn compact(&mut self) {
        if self.head == 0 {
            return;
        }
        self.buf.copy_within(self.head..self.filled, 0);
        self.filled -= self.head;
        self.scanned -= self.head;
        self.head = 0;
    }

    /// Block (with a deadline) until a whole line is read.
    fn wait_line(&mut self, deadline: Instant) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some((start, end)) = self.next_line() {
                let line = self.buf[start..end].to_vec();
                self.compact();
                return Ok(line);
            }
            if self.eof {
                bail!("{} closed its output", self.name);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "{}: no answer within {WAIT:?}", self.name);
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, poll_timeout(left)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(error) => return Err(error).context("poll"),
            }
            self.fill()?;
        }
    }

    /// Close stdin and wait for the process to exit on its own (a proxy drains, a server ends at
    /// stdin EOF); it must exit successfully.
    fn finish(mut self) -> anyhow::Result<()> {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "{} exited with {status}", self.name);
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not exit within 10 s of its stdin closing",
                self.name
            );
            // Waiting for an exit, not synchronising with it: nothing is timed here.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process's share of memory, from `/proc/<pid>/smaps_rollup`, in KiB: `Pss` divides each
/// shared page among the processes that map it; private pages are mapped by this process alone.
#[derive(Clone, Copy, Default)]
struct Share {
    pss: u64,
    private: u64,
}

fn share(pid: u32) -> anyhow::Result<Share> {
    let field = proc_kib_fields(pid, "smaps_rollup")?;
    Ok(Share {
        pss: field("Pss:")?,
        private: field("Private_Clean:")? + field("Private_Dirty:")?,
    })
}

fn rss(pid: u32) -> anyhow::Result<Rss> {
    let field = proc_kib_fields(pid, "status")?;
    Ok(Rss {
        vm_rss: field("VmRSS:")?,
        rss_anon: field("RssAnon:")?,
    })
}

/// Read `/proc/<pid>/<file>` once; the result looks up a `Name:  123 kB` line's value in KiB.
fn proc_kib_fields(pid: u32, file: &str) -> anyhow::Result<impl Fn(&str) -> anyhow::Result<u64>> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    Ok(move |name: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .with_context(|| format!("no {name} in {path}"))?;
        let kib = line.trim().trim_end_matches("kB").trim();
        kib.parse()
            .with_context(|| format!("{name} {kib:?} in {path}"))
    })
}

fn count_lines(path: &Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("read {}", path.display()))?
        .lines()
        .count())
}

/// Live processes (pid, command line) whose command line mentions `marker`, this one excepted.
fn processes_mentioning(marker: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        });
        if cmdline.contains(marker) && !zombie {
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

/// 256 proxies and 256 direct servers each hold two pipes here; make sure the soft limit allows
/// it (the hard limit is not touched).
fn raise_nofile_limit(needed: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < needed {
        ensure!(
            hard >= needed,
            "RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors the bench needs"
        );
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard)?;
    }
    Ok(())
}

/// The `q`-quantile (nearest rank) of `times`, in microseconds.
fn quantile_us(times: &[Duration], q: f64) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e6
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn throughput_mib_s(elapsed: Duration) -> f64 {
    (BIG_ROUNDS * BIG_BYTES) as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

impl Figures {
    fn to_json(&self) -> Value {
        let latency = |times: &[Duration]| {
            json!({
                "n": times.len(),
                "p50_us": quantile_us(times, 0.5),
                "p90_us": quantile_us(times, 0.9),
                "p99_us": quantile_us(times, 0.99),
            })
        };
        let memory = |rss: &Rss| json!({"vm_rss_kib": rss.vm_rss, "rss_anon_kib": rss.rss_anon});
        json!({
            "bench": "session",
            "server_startup_delay_ms": ATTACH_DELAY_MS,
            "attach": {
                "direct_start": latency(&self.direct_start),
                "cold_start": latency(&self.cold_start),
                "warm_attach": latency(&self.warm_attach),
                "direct_start_no_delay": latency(&self.bare_start),
            },
            "echo": {
                "direct": latency(&self.echo_direct),
                "shoal": latency(&self.echo_shoal),
                "cat_relay": latency(&self.echo_relay),
            },
            "big": {
                "bytes": BIG_BYTES,
                "rounds": BIG_ROUNDS,
                "direct_mib_s": throughput_mib_s(self.big_direct),
                "shoal_mib_s": throughput_mib_s(self.big_shoal),
            },
            "concurrent": self.concurrent.iter().map(|c| json!({
                "sessions": c.sessions,
                "direct": latency(&c.direct.times),
                "direct_requests_per_s": c.direct.rate(),
                "shoal": latency(&c.shoal.times),
                "shoal_requests_per_s": c.shoal.rate(),
            })).collect::<Vec<_>>(),
            "rss": {
                "fixture": memory(&self.fixture_rss),
                "proxy": memory(&self.proxy_rss),
                "proxy_after_1mib_results": memory(&self.proxy_rss_after_big),
                "proxy_share": self.proxy_share.map(|(sessions, share)| json!({
                    "sessions": sessions,
                    "pss_kib": share.pss,
                    "private_kib": share.private,
                })),
                "daemon": self.daemon_rss.iter().map(|(sessions, rss)| {
                    json!({"sessions": sessions, "rss": memory(rss)})
                }).collect::<Vec<_>>(),
                "daemon_after_1mib_results": memory(&self.daemon_rss_after_big),
                "daemon_one_session": memory(&self.daemon_rss_unstalled),
                "daemon_with_a_stalled_session": memory(&self.daemon_rss_stalled),
            },
            "floors": {
                "free": self.floors_free.to_json(),
                "pinned_to_one_cpu": self.floors_pinned.to_json(),
                "pinned_to_one_cpu_socket_stdio": self.floors_pinned_socket.to_json(),
                "load_average_1min_before": self.load_before,
            },
        })
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

impl FloorRun {
    fn cpu_per_echo_us(cpu: Duration, echoes: usize) -> f64 {
        cpu.as_secs_f64() * 1e6 / echoes.max(1) as f64
    }

    fn big_mib_s(elapsed: Duration) -> f64 {
        throughput_mib_s(elapsed)
    }

    fn to_json(&self) -> Value {
        let latency = |times: &[Duration]| json!({"n": times.len(), "p50_us": quantile_us(times, 0.5), "p99_us": quantile_us(times, 0.99)});
        json!({
            "echo": {
                "direct": latency(&self.echo_direct),
                "two_relay_floor": latency(&self.echo_floor),
                "shoal": latency(&self.echo_shoal),
                "half_relay_floor": latency(&self.echo_half[0]),
                "half_relay_floor_custody": latency(&self.echo_half[1]),
            },
            "relay_cpu_per_echo_us": {
                "two_relay_floor": Self::cpu_per_echo_us(self.cpu_floor[0] + self.cpu_floor[1], self.echoes),
                "shoal": Self::cpu_per_echo_us(self.cpu_shoal[0] + self.cpu_shoal[1], self.echoes),
                "front_relay": Self::cpu_per_echo_us(self.cpu_floor[0], self.echoes),
                "back_relay": Self::cpu_per_echo_us(self.cpu_floor[1], self.echoes),
                "proxy": Self::cpu_per_echo_us(self.cpu_shoal[0], self.echoes),
                "daemon": Self::cpu_per_echo_us(self.cpu_shoal[1], self.echoes),
                "half_relay_floor": Self::cpu_per_echo_us(self.cpu_half[0][0] + self.cpu_half[0][1], self.echoes),
                "half_front_relay": Self::cpu_per_echo_us(self.cpu_half[0][0], self.echoes),
                "half_back_relay": Self::cpu_per_echo_us(self.cpu_half[0][1], self.echoes),
                "half_relay_floor_custody": Self::cpu_per_echo_us(self.cpu_half[1][0] + self.cpu_half[1][1], self.echoes),
                "half_front_relay_custody": Self::cpu_per_echo_us(self.cpu_half[1][0], self.echoes),
                "half_back_relay_custody": Self::cpu_per_echo_us(self.cpu_half[1][1], self.echoes),
            },
            "results_1mib_mib_s": {
                "direct": Self::big_mib_s(self.big_direct),
                "two_relay_floor": Self::big_mib_s(self.big_floor),
                "shoal": Self::big_mib_s(self.big_shoal),
                "half_relay_floor": Self::big_mib_s(self.big_half[0]),
                "half_relay_floor_custody": Self::big_mib_s(self.big_half[1]),
            },
            "concurrent_requests_per_s": self.many.map(|many| json!({
                "sessions": many.sessions,
                "shoal": many.shoal,
                "multiplexer_floor": many.floor,
                "direct": many.direct,
                "shoal_daemon_busy": many.shoal_busy,
                "multiplexer_floor_busy": many.floor_busy,
                "cpu_per_request_us": {
                    "shoal_proxies": many.shoal_session_cpu.as_secs_f64() * 1e6,
                    "floor_front_relays": many.floor_session_cpu.as_secs_f64() * 1e6,
                    "shoal_daemon": many.shoal_daemon_cpu.as_secs_f64() * 1e6,
                    "floor_mux_back": many.floor_mux_cpu.as_secs_f64() * 1e6,
                },
            })),
        })
    }
}

/// The floors table: shoal against the two-relay floor, both in front of the fast server, free
/// and pinned to one CPU, with the fast server spoken to directly and the half-relay floor (what
/// the half one-relay design could reach) for reference.
fn print_floors(f: &Figures) {
    let mut rows: Vec<[String; 7]> = Vec::new();
    for (run, how) in [
        (&f.floors_free, "free"),
        (&f.floors_pinned, "pinned"),
        (&f.floors_pinned_socket, "pinned, socket stdio"),
    ] {
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            let shoal = quantile_us(&run.echo_shoal, q);
            let floor = quantile_us(&run.echo_floor, q);
            let target = if how == "pinned" && q == 0.5 {
                format!(
                    "≤ {TARGET_FLOOR_ECHO_RATIO}×: {}",
                    verdict(shoal / floor <= TARGET_FLOOR_ECHO_RATIO)
                )
            } else {
                String::new()
            };
            rows.push([
                format!("echo {label}, {how} (µs)"),
                format!("{shoal:.1}"),
                format!("{floor:.1}"),
                format!("{:.2}", shoal / floor),
                format!("{:.1}", quantile_us(&run.echo_direct, q)),
                format!(
                    "{:.1} / {:.1}",
                    quantile_us(&run.echo_half[0], q),
                    quantile_us(&run.echo_half[1], q)
                ),
                target,
            ]);
        }
        let shoal = FloorRun::cpu_per_echo_us(run.cpu_shoal[0] + run.cpu_shoal[1], run.echoes);
        let floor = FloorRun::cpu_per_echo_us(run.cpu_floor[0] + run.cpu_floor[1], run.echoes);
        let half = run
            .cpu_half
            .map(|[front, back]| FloorRun::cpu_per_echo_us(front + back, run.echoes));
        rows.push([
            format!("relay CPU per echo, {how} (µs)"),
            format!("{shoal:.1}"),
            format!("{floor:.1}"),
            format!("{:.2}", shoal / floor),
            String::new(),
            format!("{:.1} / {:.1}", half[0], half[1]),
            format!(
                "≤ {TARGET_FLOOR_CPU_RATIO}×: {}",
                verdict(shoal / floor <= TARGET_FLOOR_CPU_RATIO)
            ),
        ]);
        for (n, which) in ["the proxy; the front relay", "the daemon; the back relay"]
            .iter()
            .enumerate()
        {
            let shoal = FloorRun::cpu_per_echo_us(run.cpu_shoal[n], run.echoes);
            let floor = FloorRun::cpu_per_echo_us(run.cpu_floor[n], run.echoes);
            let half = run
                .cpu_half
                .map(|cpu| FloorRun::cpu_per_echo_us(cpu[n], run.echoes));
            rows.push([
                format!("  of which {which} (µs)"),
                format!("{shoal:.1}"),
                format!("{floor:.1}"),
                format!("{:.2}", shoal / floor),
                String::new(),
                format!("{:.1} / {:.1}", half[0], half[1]),
                String::new(),
            ]);
        }
        if let Some(many) = run.many {
            rows.push([
                format!(
                    "{} sessions, requests/s, {how} (floor: multiplexer)",
                    many.sessions
                ),
                format!("{:.0}", many.shoal),
                format!("{:.0}", many.floor),
                format!("{:.2}", many.shoal / many.floor),
                format!("{:.0}", many.direct),
                String::new(),
                format!(
                    "≥ {TARGET_FLOOR_MANY_SHARE}×: {}",
                    verdict(many.shoal / many.floor >= TARGET_FLOOR_MANY_SHARE)
                ),
            ]);
            rows.push([
                "  the multiplexing process's CPU / wall time (daemon; mux-back)".to_owned(),
                format!("{:.2}", many.shoal_busy),
                format!("{:.2}", many.floor_busy),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            let us = |cpu: Duration| cpu.as_secs_f64() * 1e6;
            for (what, shoal, floor) in [
                (
                    "the multiplexing process",
                    many.shoal_daemon_cpu,
                    many.floor_mux_cpu,
                ),
                (
                    "the session processes (proxies; front relays)",
                    many.shoal_session_cpu,
                    many.floor_session_cpu,
                ),
            ] {
                rows.push([
                    format!("  CPU per request, {what} (µs)"),
                    format!("{:.1}", us(shoal)),
                    format!("{:.1}", us(floor)),
                    format!("{:.2}", us(shoal) / us(floor)),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        let shoal = FloorRun::big_mib_s(run.big_shoal);
        let floor = FloorRun::big_mib_s(run.big_floor);
        rows.push([
            format!("1 MiB results, {how} (MiB/s)"),
            format!("{shoal:.0}"),
            format!("{floor:.0}"),
            format!("{:.2}", shoal / floor),
            format!("{:.0}", FloorRun::big_mib_s(run.big_direct)),
            format!(
                "{:.0} / {:.0}",
                FloorRun::big_mib_s(run.big_half[0]),
                FloorRun::big_mib_s(run.big_half[1])
            ),
            format!(
                "≥ {TARGET_FLOOR_BIG_SHARE}×: {}",
                verdict(shoal / floor >= TARGET_FLOOR_BIG_SHARE)
            ),
        ]);
    }
    let header = [
        "figure",
        "shoal",
        "two-relay floor",
        "shoal/floor",
        "direct",
        "half-relay floor / with custody",
        "target",
    ];
    let mut text = format!(
        "| {} |\n|---|---:|---:|---:|---:|---:|---|\n",
        header.join(" | ")
    );
    for row in &rows {
        text.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    #[expect(clippy::print_stdout, reason = "the bench's table is its output")]
    {
        println!(
            "\nthe floors: shoal vs two relay processes that copy bytes and parse nothing (pipe + \
             unix socket), both in front of a server that answers in microseconds; \"pinned\": \
             every process on CPU 0; relay CPU: proxy + daemon vs the two relays; half-relay \
             floor: the front hands the host's stdin to the back, so only answers cross it, without and \
             with exact custody of the host's bytes (the floor of shoal's design on Linux since custody, \
             see docs/benchmarks.md); the load average was {} when the run began (the floors' \
             ratios depend on it)\n",
            f.load_before
                .map_or_else(|| "unknown".to_owned(), |load| format!("{load:.2}"))
        );
        print!("{text}");
    }
}

fn print_table(f: &Figures) {
    let ms = |times: &[Duration], q: f64| quantile_us(times, q) / 1000.0;
    let mut rows: Vec<[String; 5]> = Vec::new();
    let ratio = |a: f64, b: f64| format!("{:.2}", a / b);
    let pct = |a: f64, b: f64| format!("{:.1} %", 100.0 * a / b);

    for (label, times, baseline) in [
        ("warm attach, median (ms)", &f.warm_attach, 0.5),
        ("warm attach, p90 (ms)", &f.warm_attach, 0.9),
    ] {
        let ours = ms(times, baseline);
        let direct = ms(&f.direct_start, baseline);
        let target = if baseline == 0.5 {
            format!(
                "≤ {TARGET_WARM_ATTACH_MS} ms: {}",
                verdict(ours <= TARGET_WARM_ATTACH_MS)
            )
        } else {
            String::new()
        };
        rows.push([
            label.into(),
            format!("{ours:.2}"),
            format!("{direct:.1}"),
            pct(ours, direct),
            target,
        ]);
    }
    rows.push([
        "  (direct start, no delay: median / p90, ms)".into(),
        String::new(),
        format!(
            "{:.2} / {:.2}",
            ms(&f.bare_start, 0.5),
            ms(&f.bare_start, 0.9)
        ),
        format!(
            "warm/bare {}",
            ratio(ms(&f.warm_attach, 0.5), ms(&f.bare_start, 0.5))
        ),
        String::new(),
    ]);
    for (label, q) in [
        ("cold start, median (ms)", 0.5),
        ("cold start, p90 (ms)", 0.9),
    ] {
        let ours = ms(&f.cold_start, q);
        let direct = ms(&f.direct_start, q);
        rows.push([
            label.into(),
            format!("{ours:.1}"),
            format!("{direct:.1}"),
            ratio(ours, direct),
            String::new(),
        ]);
    }
    for (label, q) in [
        ("echo round trip, p50 (µs)", 0.5),
        ("echo round trip, p99 (µs)", 0.99),
    ] {
        let ours = quantile_us(&f.echo_shoal, q);
        let direct = quantile_us(&f.echo_direct, q);
        let target = if q == 0.5 {
            format!(
                "≤ {TARGET_ECHO_RATIO}×: {}",
                verdict(ours / direct <= TARGET_ECHO_RATIO)
            )
        } else {
            String::new()
        };
        rows.push([
            label.into(),
            format!("{ours:.0}"),
            format!("{direct:.0}"),
            ratio(ours, direct),
            target,
        ]);
    }
    let relay_p50 = quantile_us(&f.echo_relay, 0.5);
    let relay_p99 = quantile_us(&f.echo_relay, 0.99);
    rows.push([
        "  (echo through 2 `cat` relays each way, p50 / p99, µs)".into(),
        String::new(),
        format!("{relay_p50:.0} / {relay_p99:.0}"),
        format!(
            "shoal/cat {} / {}",
            ratio(quantile_us(&f.echo_shoal, 0.5), relay_p50),
            ratio(quantile_us(&f.echo_shoal, 0.99), relay_p99)
        ),
        String::new(),
    ]);
    let ours = throughput_mib_s(f.big_shoal);
    let direct = throughput_mib_s(f.big_direct);
    rows.push([
        "1 MiB results (MiB/s)".into(),
        format!("{ours:.0}"),
        format!("{direct:.0}"),
        pct(ours, direct),
        String::new(),
    ]);
    for c in &f.concurrent {
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            let ours = quantile_us(&c.shoal.times, q);
            let direct = quantile_us(&c.direct.times, q);
            rows.push([
                format!("{} sessions, echo {label} (µs)", c.sessions),
                format!("{ours:.0}"),
                format!("{direct:.0}"),
                ratio(ours, direct),
                String::new(),
            ]);
        }
        let ours = c.shoal.rate();
        let direct = c.direct.rate();
        rows.push([
            format!("{} sessions, requests/s", c.sessions),
            format!("{ours:.0}"),
            format!("{direct:.0}"),
            ratio(ours, direct),
            String::new(),
        ]);
    }
    let proxy = mib(f.proxy_rss.vm_rss);
    rows.push([
        "proxy RSS (MiB; anon)".into(),
        format!("{proxy:.1}; {:.1}", mib(f.proxy_rss.rss_anon)),
        format!(
            "{:.1}; {:.1}",
            mib(f.fixture_rss.vm_rss),
            mib(f.fixture_rss.rss_anon)
        ),
        String::new(),
        format!(
            "≤ {TARGET_PROXY_RSS_MIB} MiB: {}",
            verdict(proxy <= TARGET_PROXY_RSS_MIB)
        ),
    ]);
    if let Some((sessions, share)) = f.proxy_share {
        rows.push([
            format!("  proxy PSS; private, {sessions} proxies running (MiB)"),
            format!("{:.1}; {:.1}", mib(share.pss), mib(share.private)),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    rows.push([
        "  proxy RSS after 1 MiB results".into(),
        format!(
            "{:.1}; {:.1}",
            mib(f.proxy_rss_after_big.vm_rss),
            mib(f.proxy_rss_after_big.rss_anon)
        ),
        String::new(),
        String::new(),
        String::new(),
    ]);
    for (sessions, rss) in &f.daemon_rss {
        let daemon = mib(rss.vm_rss);
        let target = if *sessions == 256 {
            format!(
                "≤ {TARGET_DAEMON_RSS_MIB} MiB: {}",
                verdict(daemon <= TARGET_DAEMON_RSS_MIB)
            )
        } else {
            String::new()
        };
        rows.push([
            format!(
                "daemon RSS, {sessions} session{} (MiB; anon)",
                if *sessions == 1 { "" } else { "s" }
            ),
            format!("{daemon:.1}; {:.1}", mib(rss.rss_anon)),
            String::new(),
            String::new(),
            target,
        ]);
    }
    rows.push([
        "  daemon RSS, 1 session, after 1 MiB results".into(),
        format!(
            "{:.1}; {:.1}",
            mib(f.daemon_rss_after_big.vm_rss),
            mib(f.daemon_rss_after_big.rss_anon)
        ),
        String::new(),
        String::new(),
        String::new(),
    ]);

    rows.push([
        "daemon RSS, 1 session + 1 stalled at its bound (MiB; anon)".into(),
        format!(
            "{:.1}; {:.1}",
            mib(f.daemon_rss_stalled.vm_rss),
            mib(f.daemon_rss_stalled.rss_anon)
        ),
        String::new(),
        String::new(),
        String::new(),
    ]);
    rows.push([
        "  the same run without the stalled session (MiB; anon)".into(),
        format!(
            "{:.1}; {:.1}",
            mib(f.daemon_rss_unstalled.vm_rss),
            mib(f.daemon_rss_unstalled.rss_anon)
        ),
        String::new(),
        String::new(),
        String::new(),
    ]);

    let header = ["figure", "shoal", "direct", "shoal/direct", "target"];
    let mut text = format!("| {} |\n|---|---:|---:|---:|---|\n", header.join(" | "));
    for row in &rows {
        text.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    #[expect(clippy::print_stdout, reason = "the bench's table is its output")]
    {
        println!(
            "\nshoal end to end vs the fixture server spoken to directly (server start-up delay \
             {ATTACH_DELAY_MS} ms for the start figures; direct baseline for N sessions: N fixture \
             processes, one client each)\n"
        );
        print!("{text}");
    }
}
