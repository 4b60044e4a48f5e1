//! SCENARIO 33, nothing lost: many clients × many requests, with random cancellations and
//! disconnects, through one daemon. Every request of a connected client gets exactly one answer,
//! with its own id and JSON type and its own payload; cancelled requests get at most one; no
//! client ever sees an answer, progress or id that is not its own; the backend never sees a
//! duplicate id.
//!
//! Scale comes from the environment so that `cargo xtask race router` can run it large:
//! `SHOAL_SOAK_ROUNDS` (daemons, default 1), `SHOAL_SOAK_PHASES` (churn phases per daemon, default
//! 1), `SHOAL_SOAK_CLIENTS` (concurrent clients, default 8), `SHOAL_SOAK_REQUESTS` (requests per
//! client per phase, default 150), `SHOAL_SOAK_SEED` (to replay a run).
//!
//! With several phases, the daemon's resident memory is read after each: phases repeat the same
//! load, so what the first one grew the next ones must reuse. Growth beyond
//! [`RSS_GROWTH_ALLOWED`] between the first phase and the last is a leak and fails the soak.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shoal_testkit::client::{Client, IdStyle};

use super::{Shared, WAIT, session};

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: expected a non-negative integer")),
        Err(_) => default,
    }
}

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How much the daemon's RSS may grow from the end of the first phase to the end of the last:
/// allocator noise, not a per-request cost (a leak of 100 bytes per request is 10 MiB over the
/// full-scale soak's phases).
const RSS_GROWTH_ALLOWED: u64 = 3 * 1024 * 1024;

/// The resident set of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/<pid>/status")
        * 1024
}

pub(super) fn run() {
    let rounds = env_number("SHOAL_SOAK_ROUNDS", 1);
    let phases = env_number("SHOAL_SOAK_PHASES", 1).max(1);
    let clients = env_number("SHOAL_SOAK_CLIENTS", 8);
    let requests = env_number("SHOAL_SOAK_REQUESTS", 150);
    let seed = env_number(
        "SHOAL_SOAK_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            | 1,
    );
    eprintln!(
        "soak: {rounds} round(s) × {phases} phase(s) × {clients} clients × {requests} requests, \
         SHOAL_SOAK_SEED={seed}"
    );
    for round in 0..rounds {
        // Spread the rounds' seeds apart: xorshift's `| 1` would map neighbours onto one stream.
        let round_seed = seed ^ (round + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let tally = soak_round(round, phases, clients, requests, round_seed);
        eprintln!(
            "soak round {round}: {} answered, {} cancelled, {} disconnects, {} progress",
            tally.answered, tally.cancelled, tally.disconnects, tally.progress
        );
    }
}

#[derive(Default)]
struct Tally {
    answered: u64,
    cancelled: u64,
    disconnects: u64,
    progress: u64,
}

fn soak_round(round: u64, phases: u64, clients: u64, requests: u64, seed: u64) -> Tally {
    let shared = Shared::start(&format!("soak{round}"), &[]);
    let mut total = Tally::default();
    let mut after_first = None;
    for phase in 0..phases {
        let phase_seed = seed ^ (phase + 1).wrapping_mul(0x94D0_49BB_1331_11EB);
        let tally = soak_phase(&shared, clients, requests, phase_seed);
        total.answered += tally.answered;
        total.cancelled += tally.cancelled;
        total.disconnects += tally.disconnects;
        total.progress += tally.progress;
        // A status request is answered after everything the phase did (its events come first)
        // and gives freed memory back before it is answered: the RSS read after it is the
        // daemon's need, not the allocator's hoard.
        let _ = super::util::status(&shared.socket);
        let rss = rss(shared.daemon.pid());
        eprintln!(
            "soak round {round} phase {phase}: daemon RSS {:.1} MiB",
            rss as f64 / (1024.0 * 1024.0)
        );
        let first = *after_first.get_or_insert(rss);
        assert!(
            rss <= first + RSS_GROWTH_ALLOWED,
            "round {round} phase {phase}: the daemon's RSS grew from {first} to {rss} bytes under \
             the same load: something is kept per request or per session"
        );
    }
    total
}

fn soak_phase(shared: &Shared, clients: u64, requests: u64, seed: u64) -> Tally {
    let start = Arc::new(Barrier::new(
        usize::try_from(clients).expect("client count"),
    ));
    let workers: Vec<_> = (0..clients)
        .map(|n| {
            let socket: PathBuf = shared.socket.clone();
            let start = Arc::clone(&start);
            let seed = seed ^ (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            std::thread::spawn(move || {
                start.wait();
                worker(&socket, n, requests, seed)
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker
            .join()
            .expect("a soak client failed; see its panic above");
        total.answered += tally.answered;
        total.cancelled += tally.cancelled;
        total.disconnects += tally.disconnects;
        total.progress += tally.progress;
    }
    let mut checker = shared.session("checker");
    let stats = checker.stats().expect("stats");
    assert_eq!(
        stats["duplicateIds"],
        json!([]),
        "the backend saw a duplicate id: {stats}"
    );
    assert_eq!(stats["initializeCount"], 1, "{stats}");
    total
}

/// One client identity: its requests, what it expects, and what it saw.
struct Session {
    client: Client,
    tag: String,
    /// Id → the echo text expected (or `None` for a call with no checkable text).
    outstanding: HashMap<Value, Option<String>>,
    cancelled: HashSet<Value>,
    answered: HashSet<Value>,
    /// Ids whose calls asked for progress.
    progress_tokens: HashSet<Value>,
}

impl Session {
    fn open(socket: &Path, tag: String, rng: &mut Rng) -> Session {
        let mut client = session(socket, &tag);
        client.set_next_id(i64::try_from(rng.below(3)).unwrap_or(0));
        client.set_id_style(if rng.below(2) == 0 {
            IdStyle::Number
        } else {
            IdStyle::String
        });
        client.set_timeout(WAIT);
        Session {
            client,
            tag,
            outstanding: HashMap::new(),
            cancelled: HashSet::new(),
            answered: HashSet::new(),
            progress_tokens: HashSet::new(),
        }
    }

    /// Check one message that is not the answer being waited for.
    fn check_other(&mut self, message: &Value, tally: &mut Tally) {
        let tag = &self.tag;
        if message.get("method").and_then(Value::as_str) == Some("notifications/progress") {
            let token = &message["params"]["progressToken"];
            assert!(
                self.progress_tokens.contains(token),
                "{tag}: progress for a token not its own: {message}"
            );
            tally.progress += 1;
            return;
        }
        if message.get("method").is_some() {
            // Broadcasts (list_changed, log messages) are everyone's.
            return;
        }
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        assert!(
            self.cancelled.contains(&id) && !self.answered.contains(&id),
            "{tag}: an answer it did not expect (not its own, or a second one): {message}"
        );
        self.answered.insert(id);
    }

    fn settle(&mut self, tally: &mut Tally) {
        let mut ids: Vec<Value> = self.outstanding.keys().cloned().collect();
        ids.sort_by_key(Value::to_string);
        for id in ids {
            let expected = self.outstanding.remove(&id).flatten();
            let response = self
                .client
                .wait_response(&id, WAIT)
                .unwrap_or_else(|error| panic!("{}: request {id} lost: {error}", self.tag));
            assert_eq!(response.id, id, "{}: id type changed", self.tag);
            assert!(
                self.answered.insert(id.clone()),
                "{}: {id} answered twice",
                self.tag
            );
            let result = response
                .into_result()
                .unwrap_or_else(|error| panic!("{}: {error}", self.tag));
            if let Some(expected) = expected {
                assert_eq!(
                    result["content"][0]["text"],
                    expected.as_str(),
                    "{}: someone else's answer",
                    self.tag
                );
            }
            tally.answered += 1;
        }
        for message in self.client.drain() {
            self.check_other(&message, tally);
        }
    }
}

fn worker(socket: &Path, n: u64, requests: u64, seed: u64) -> Tally {
    let mut rng = Rng(seed | 1);
    let mut tally = Tally::default();
    let mut generation = 0;
    let mut session = Session::open(socket, format!("c{n}g{generation}"), &mut rng);
    let mut sent = 0;
    while sent < requests {
        let burst = 1 + rng.below(8);
        for _ in 0..burst {
            let id = session.client.next_id();
            let dice = rng.below(100);
            let (params, expected, cancel) = if dice < 70 {
                let text = format!("{}:{id}", session.tag);
                (
                    json!({"name": "echo", "arguments": {"text": text}}),
                    Some(text),
                    false,
                )
            } else if dice < 85 {
                session.progress_tokens.insert(id.clone());
                (
                    json!({"name": "slow", "arguments": {"ms": 20, "steps": 2, "late": 1}, "_meta": {"progressToken": id}}),
                    None,
                    false,
                )
            } else {
                (
                    json!({"name": "wait_cancel", "arguments": {"timeout_ms": 20000}}),
                    None,
                    true,
                )
            };
            session
                .client
                .send_request_with_id(id.clone(), "tools/call", params)
                .expect("send");
            sent += 1;
            if cancel {
                session
                    .client
                    .notify("notifications/cancelled", json!({"requestId": id}))
                    .expect("cancel");
                session.cancelled.insert(id);
                tally.cancelled += 1;
            } else {
                session.outstanding.insert(id, expected);
            }
        }
        if rng.below(100) < 4 {
            // Leave with requests in flight: nothing is owed to a gone client, and the others
            // must not notice.
            tally.disconnects += 1;
            generation += 1;
            session = Session::open(socket, format!("c{n}g{generation}"), &mut rng);
            continue;
        }
        session.settle(&mut tally);
    }
    session.settle(&mut tally);
    // Late answers to cancelled requests, or late progress, would show up now.
    let _ = session
        .client
        .expect_none("settle", Duration::from_millis(50), |_| false);
    for message in session.client.drain() {
        session.check_other(&message, &mut tally);
    }
    tally
}
