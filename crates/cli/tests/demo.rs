//! `shoal demo` end to end: real proxies, one daemon, one server, and nothing left behind.

/// `shoal`, reading no config file: the user's own must not change what the tests see.
fn shoal_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.env("SHOAL_CONFIG", "/nonexistent/shoal-tests/config.toml");
    command
}

#[test]
fn demo_shares_one_server_and_cleans_up() {
    let output = shoal_command()
        .args(["demo", "--sessions", "3", "--server-startup-ms", "50"])
        .output()
        .expect("run shoal demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("3 sessions, 1 server process: shoal saved 2 server processes."),
        "{stdout}"
    );
    let pids: std::collections::BTreeSet<&str> = stdout
        .lines()
        .filter(|line| line.contains(" ms cold ") || line.contains(" ms warm "))
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    assert_eq!(pids.len(), 1, "every session talks to one server: {stdout}");
    let server_pid: i32 = pids
        .first()
        .and_then(|pid| pid.parse().ok())
        .expect("a pid");
    assert!(
        !std::path::Path::new(&format!("/proc/{server_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{server_pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z ")),
        "the shared server is gone after the demo"
    );
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("list the temp dir")
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("shoal-demo-")
        })
        .collect();
    assert!(leftovers.is_empty(), "scratch left behind: {leftovers:?}");
}

#[test]
fn demo_help() {
    let output = shoal_command()
        .args(["demo", "--help"])
        .output()
        .expect("run shoal demo --help");
    assert!(output.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stdout));
}
