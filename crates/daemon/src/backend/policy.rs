//! When to restart a crashed backend: exponential backoff, and a crash-loop breaker.
//!
//! A server that crashes once (an OOM, a bug hit by one request) should come back quickly and
//! transparently. A server that crashes on every start (bad config, missing dependency) must not be
//! restarted forever: that burns CPU, floods the log and makes every request wait on a start that
//! will fail. After `max_crashes` within `window` the daemon stops restarting and answers requests
//! with an error pointing at `shoal logs` and `shoal restart`.
//!
//! A server that never gets as far as answering `initialize` fails slowly (the start-up deadline
//! is a minute), so its failures never crowd a window: consecutive failed starts therefore count
//! on their own, whatever the time between them, and `max_crashes` of them in a row is a loop too.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Tunables for [`CrashHistory`].
#[derive(Clone, Debug)]
pub(crate) struct RestartPolicy {
    /// This many crashes within [`RestartPolicy::window`] is a crash loop.
    pub(crate) max_crashes: usize,
    /// The window over which crashes are counted.
    pub(crate) window: Duration,
    /// The delay before restarting after a first crash; doubles with each crash in the window.
    pub(crate) initial_backoff: Duration,
    /// The longest delay between restarts.
    pub(crate) max_backoff: Duration,
}

impl Default for RestartPolicy {
    /// 5 crashes in 60 s is a loop; restarts wait 100 ms, 200 ms, 400 ms, 800 ms. A healthy
    /// server that crashed once is back before a host's request times out, and a loop is
    /// declared within about 2 s of wall time plus the server's own start-up time.
    fn default() -> Self {
        RestartPolicy {
            max_crashes: 5,
            window: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What to do after a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestartDecision {
    /// Restart after this delay.
    RestartAfter(Duration),
    /// Too many crashes: stop restarting until someone asks (`shoal restart`).
    CrashLoop,
}

/// The recent crashes of one backend.
#[derive(Debug)]
pub(crate) struct CrashHistory {
    policy: RestartPolicy,
    crashes: VecDeque<Instant>,
    /// Failures in a row of processes that never answered `initialize`.
    failed_starts: usize,
}

impl CrashHistory {
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        CrashHistory {
            policy,
            crashes: VecDeque::new(),
            failed_starts: 0,
        }
    }

    /// Record a crash at `now` of a process that had (`initialized`) or had not answered
    /// `initialize`, and decide what to do.
    pub(crate) fn on_crash(&mut self, now: Instant, initialized: bool) -> RestartDecision {
        self.failed_starts = if initialized {
            0
        } else {
            self.failed_starts + 1
        };
        while let Some(&oldest) = self.crashes.front() {
            if now.saturating_duration_since(oldest) > self.policy.window {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        self.crashes.push_back(now);
        if self.crashes.len() >= self.policy.max_crashes
            || self.failed_starts >= self.policy.max_crashes
        {
            return RestartDecision::CrashLoop;
        }
        let doublings = u32::try_from(self.crashes.len() - 1).unwrap_or(u32::MAX);
        let backoff = self
            .policy
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.policy.max_backoff);
        RestartDecision::RestartAfter(backoff)
    }

    /// Forget past crashes: an explicit restart gets a fresh budget.
    pub(crate) fn reset(&mut self) {
        self.crashes.clear();
        self.failed_starts = 0;
    }

    /// Allow exactly one more attempt after a crash loop: the next failure declares the loop
    /// again at once, a success starts afresh.
    pub(crate) fn one_more_try(&mut self) {
        self.crashes.clear();
        self.failed_starts = self.policy.max_crashes.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed crashes at the given offsets (ms from a common start) and compare the decisions.
    fn check(policy: RestartPolicy, crash_offsets_ms: &[u64], expected: &[RestartDecision]) {
        let start = Instant::now();
        let mut history = CrashHistory::new(policy);
        let decisions: Vec<_> = crash_offsets_ms
            .iter()
            .map(|&offset| history.on_crash(start + Duration::from_millis(offset), true))
            .collect();
        assert_eq!(decisions, expected, "crashes at {crash_offsets_ms:?} ms");
    }

    use RestartDecision::{CrashLoop, RestartAfter};
    const fn ms(n: u64) -> RestartDecision {
        RestartAfter(Duration::from_millis(n))
    }

    #[test]
    fn backoff_doubles_then_a_loop_is_declared() {
        check(
            RestartPolicy::default(),
            &[0, 1_000, 2_000, 3_000, 4_000],
            &[ms(100), ms(200), ms(400), ms(800), CrashLoop],
        );
    }

    #[test]
    fn crashes_outside_the_window_are_forgotten() {
        check(
            RestartPolicy::default(),
            &[0, 1_000, 2_000, 3_000, 70_000, 71_000],
            &[ms(100), ms(200), ms(400), ms(800), ms(100), ms(200)],
        );
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RestartPolicy {
            max_crashes: 100,
            max_backoff: Duration::from_millis(500),
            ..RestartPolicy::default()
        };
        check(
            policy,
            &[0, 1, 2, 3, 4, 5],
            &[ms(100), ms(200), ms(400), ms(500), ms(500), ms(500)],
        );
    }

    #[test]
    fn reset_gives_a_fresh_budget() {
        let start = Instant::now();
        let mut history = CrashHistory::new(RestartPolicy::default());
        for _ in 0..5 {
            history.on_crash(start, true);
        }
        assert_eq!(history.on_crash(start, true), CrashLoop);
        history.reset();
        assert_eq!(history.on_crash(start, true), ms(100));
    }

    #[test]
    fn failed_starts_in_a_row_are_a_loop_however_far_apart() {
        let start = Instant::now();
        let mut history = CrashHistory::new(RestartPolicy::default());
        let minutes = |n: u64| start + Duration::from_secs(60 * n);
        for n in 0..4 {
            assert!(
                matches!(history.on_crash(minutes(2 * n), false), RestartAfter(_)),
                "failed start {n}"
            );
        }
        assert_eq!(history.on_crash(minutes(8), false), CrashLoop);
        history.reset();
        for n in 0..4 {
            history.on_crash(minutes(10 + 2 * n), false);
        }
        assert!(
            matches!(history.on_crash(minutes(20), true), RestartAfter(_)),
            "a crash after a good start breaks the row"
        );
    }

    #[test]
    fn one_more_try_after_a_loop_fails_fast_or_starts_afresh() {
        let start = Instant::now();
        let mut history = CrashHistory::new(RestartPolicy::default());
        for _ in 0..5 {
            history.on_crash(start, false);
        }
        history.one_more_try();
        assert_eq!(
            history.on_crash(start, false),
            CrashLoop,
            "the try failed to start"
        );
        history.one_more_try();
        assert_eq!(
            history.on_crash(start, true),
            ms(100),
            "the try served, then crashed"
        );
    }
}
