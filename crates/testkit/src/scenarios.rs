//! A runner for real-process scenario tests: test binaries with `harness = false` that re-execute
//! themselves as helper processes, so that no test harness writes on the helpers' stdout.
//!
//! It speaks libtest's command line (filters, `--exact`, `--list --format terse` for nextest) and
//! runs each scenario on its own thread under a deadline, so that a hang is a failure, not a stuck
//! run. (`shoal-lockfile` keeps its own copy: it must build with no workspace crates.)

use std::process::ExitCode;
use std::time::Duration;

/// A named scenario.
pub type Scenario = (&'static str, fn());

/// Run `scenarios` with libtest's command line; at most `default_threads` at once unless the
/// command line says otherwise, each failing if it takes longer than `deadline`.
pub fn run(scenarios: &[Scenario], deadline: Duration, default_threads: usize) -> ExitCode {
    let mut arguments = libtest_mimic::Arguments::from_args();
    arguments.test_threads.get_or_insert(default_threads);
    let trials = scenarios
        .iter()
        .map(|&(name, scenario)| {
            libtest_mimic::Trial::test(name, move || with_deadline(scenario, deadline))
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit_code()
}

fn with_deadline(scenario: fn(), deadline: Duration) -> Result<(), libtest_mimic::Failed> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(std::panic::catch_unwind(scenario).is_ok());
    });
    match receiver.recv_timeout(deadline) {
        Ok(true) => Ok(()),
        Ok(false) => Err("the scenario panicked (see above)".into()),
        Err(_) => Err(format!("timed out after {deadline:?}").into()),
    }
}
