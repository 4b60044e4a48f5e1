//! Finding (and if needed building) the `shoal-fixture` binary from another crate's tests.
//!
//! Cargo builds a package's own binaries for its integration tests (`CARGO_BIN_EXE_<name>`), but
//! never the binaries of a dev-dependency, so the daemon's or xtask's tests cannot rely on
//! `shoal-fixture` being there, or being fresh.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Environment variable that, when set, is used as the fixture binary's path as is (e.g. when tests
/// run from an archive without cargo).
pub const FIXTURE_BIN_ENV: &str = "SHOAL_TESTKIT_FIXTURE_BIN";

const BIN_NAME: &str = "shoal-fixture";

/// The path of the `shoal-fixture` binary for the running test or bench executable.
///
/// In order: [`FIXTURE_BIN_ENV`] if set; else the binary next to the current executable
/// (`target/<profile>/`, also when the executable is in `target/<profile>/deps/`) if it is newer
/// than every file of the `shoal-fixture` crate's sources; else it builds it, once per process,
/// with `$CARGO build --bin shoal-fixture` on that crate's manifest (`cargo` if `$CARGO` is
/// unset), in the profile and target directory of the current executable.
///
/// The freshness check looks at the fixture crate's `Cargo.toml` and `src/` only: after a change
/// to a dependency alone, build the fixture (or run its tests) once by hand.
///
/// # Panics
///
/// If no binary can be found or built: tests cannot run without it, and the message says why.
pub fn fixture_bin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| locate().unwrap_or_else(|reason| panic!("{reason}")))
        .clone()
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = env::var_os(FIXTURE_BIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let exe = env::current_exe()
        .map_err(|error| format!("failed to find the current executable: {error}"))?;
    let profile_dir = profile_dir(&exe)
        .ok_or_else(|| format!("failed to find a target directory above {}", exe.display()))?;
    let candidate = profile_dir.join(format!("{BIN_NAME}{}", env::consts::EXE_SUFFIX));
    if is_fresh(&candidate) {
        return Ok(candidate);
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    match build(&cargo, &profile_dir) {
        Ok(()) if candidate.is_file() => Ok(candidate),
        Ok(()) => Err(format!(
            "built {BIN_NAME}, but {} is missing",
            candidate.display()
        )),
        Err(error) if candidate.is_file() => {
            let _ = writeln!(
                std::io::stderr(),
                "shoal-testkit: using {} although it may be stale: failed to rebuild it: {error}",
                candidate.display()
            );
            Ok(candidate)
        }
        Err(error) => Err(format!(
            "failed to build {BIN_NAME} ({error}); build it with `cargo build -p shoal-fixture --bin {BIN_NAME}` or set {FIXTURE_BIN_ENV}"
        )),
    }
}

/// Whether `binary` exists and is newer than the fixture crate's manifest and sources (true as
/// well if the sources are not there, e.g. tests run from an archive).
fn is_fresh(binary: &Path) -> bool {
    let Ok(built) = fs::metadata(binary).and_then(|metadata| metadata.modified()) else {
        return false;
    };
    let crate_dir = fixture_crate_dir();
    let mut newest = None;
    newest_mtime(&crate_dir.join("Cargo.toml"), &mut newest);
    newest_mtime(&crate_dir.join("src"), &mut newest);
    newest.is_none_or(|newest| built >= newest)
}

/// The `shoal-fixture` crate: this crate's sibling in the workspace. Not a dependency: the tests
/// need its binary, which cargo does not build for a dependency.
fn fixture_crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixture")
}

fn newest_mtime(path: &Path, newest: &mut Option<SystemTime>) {
    let Ok(metadata) = fs::metadata(path) else {
        return;
    };
    if metadata.is_dir() {
        for entry in fs::read_dir(path).into_iter().flatten().flatten() {
            newest_mtime(&entry.path(), newest);
        }
    } else if let Ok(modified) = metadata.modified()
        && newest.is_none_or(|newest| modified > newest)
    {
        *newest = Some(modified);
    }
}

/// `target/<profile>` for an executable in it or in its `deps/`, `examples/` or `build/`.
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    let is_nested = dir
        .file_name()
        .is_some_and(|name| name == "deps" || name == "examples");
    Some(if is_nested { dir.parent()? } else { dir }.to_path_buf())
}

/// Builds the fixture into `profile_dir`: `target/<profile>` (or `target/<triple>/<profile>`).
fn build(cargo: &OsString, profile_dir: &Path) -> Result<(), String> {
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| format!("{} has no profile name", profile_dir.display()))?;
    let mut target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent", profile_dir.display()))?;
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "--bin", BIN_NAME, "--manifest-path"])
        .arg(fixture_crate_dir().join("Cargo.toml"));
    // A cross build lives in target/<triple>/<profile>; cargo wants the triple as --target.
    if let Some(triple) = target_dir.file_name().and_then(|name| name.to_str())
        && target_dir.join("..").join("CACHEDIR.TAG").exists()
        && !target_dir.join("CACHEDIR.TAG").exists()
        && triple.contains('-')
    {
        command.args(["--target", triple]);
        target_dir = target_dir
            .parent()
            .ok_or_else(|| format!("{} has no parent", target_dir.display()))?;
    }
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        custom => {
            command.args(["--profile", custom]);
        }
    }
    command.arg("--target-dir").arg(target_dir);
    let status = command
        .status()
        .map_err(|error| format!("failed to run {command:?}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} exited with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(exe: &str, expected: Option<&str>) {
        assert_eq!(profile_dir(Path::new(exe)), expected.map(PathBuf::from));
    }

    #[test]
    fn profile_dirs() {
        check(
            "/w/target/debug/deps/daemon-0123abcd",
            Some("/w/target/debug"),
        );
        check("/w/target/release/xtask", Some("/w/target/release"));
        check("/w/target/debug/examples/demo", Some("/w/target/debug"));
        check(
            "/w/target/x86_64-unknown-linux-gnu/ci/deps/t",
            Some("/w/target/x86_64-unknown-linux-gnu/ci"),
        );
    }
}
