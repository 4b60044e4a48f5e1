//! Guard a single instance of a program: the first run holds the lock until Enter is pressed (or
//! it is killed); every other run prints who holds it and exits with status 1.
//!
//! ```text
//! cargo run -p shoal-lockfile --example single_instance          # terminal 1: holds the lock
//! cargo run -p shoal-lockfile --example single_instance          # terminal 2: "already running"
//! ```

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example program talks to its user"
)]

use std::process::ExitCode;

use shoal_lockfile::{LockFile, ensure_private_dir};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("single_instance: failed to {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, shoal_lockfile::Error> {
    // A per-user directory: lock files must live where no other user can write.
    let uid = std::env::var("USER").unwrap_or_else(|_| "user".to_owned());
    let dir = std::env::temp_dir().join(format!("single-instance-example-{uid}"));
    ensure_private_dir(&dir)?;

    let lock = LockFile::new(dir.join("instance.lock"))?
        .program_version(env!("CARGO_PKG_VERSION"))
        .data(format!(
            "started in {}",
            std::env::current_dir().unwrap_or_default().display()
        ));

    match lock.try_acquire() {
        Ok(guard) => {
            println!("running as {}; press Enter to exit", guard.record());
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            guard.release()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if error.is_held() => {
            match error.holder() {
                Some(holder) => println!("already running: {holder}; it says: {}", holder.data()),
                None => println!("already running (its record is unreadable)"),
            }
            Ok(ExitCode::from(1))
        }
        Err(error) => Err(error),
    }
}
