//! The fixture's knobs: [`Config`], read from `SHOAL_FIXTURE_*` environment variables and flags.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::LogLevel;

/// The protocol versions the fixture speaks by default, oldest first.
pub const DEFAULT_PROTOCOL_VERSIONS: &[&str] =
    &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// `--help` text of `shoal-fixture` (also the reference for every flag and variable).
pub const USAGE: &str = "\
shoal-fixture: a configurable MCP server (stdio, newline-delimited JSON-RPC) for shoal's tests

USAGE: shoal-fixture [FLAGS]

Every flag can also be set by an environment variable (flags win):
  --name NAME                  serverInfo.name                      SHOAL_FIXTURE_NAME (default shoal-fixture)
  --protocol-versions LIST     comma-separated versions it speaks   SHOAL_FIXTURE_PROTOCOL_VERSIONS
                               (default 2024-11-05,2025-03-26,2025-06-18,2025-11-25)
  --startup-delay-ms N         sleep N ms before reading stdin      SHOAL_FIXTURE_STARTUP_DELAY_MS
  --spawn-counter PATH         append \"<pid>\\n\" to PATH at start   SHOAL_FIXTURE_SPAWN_COUNTER
  --chatty                     after notifications/initialized send SHOAL_FIXTURE_CHATTY=1
                               tools/resources/prompts list_changed
                               and roots/list (if the client has roots)
  --grandchild-pid-file PATH   start a long-lived grandchild (same  SHOAL_FIXTURE_GRANDCHILD_PID_FILE
                               process group), write its pid there
  --ignore-stdin-eof           keep running after stdin closes      SHOAL_FIXTURE_IGNORE_STDIN_EOF=1
  --ignore-sigterm             ignore SIGTERM (inherited by the     SHOAL_FIXTURE_IGNORE_SIGTERM=1
                               grandchild)
  --tools-variant N            N > 0 adds a tool `variant_N`        SHOAL_FIXTURE_TOOLS_VARIANT
  --crash-after-requests N     exit(1) on receiving request N+1     SHOAL_FIXTURE_CRASH_AFTER_REQUESTS
  --page-size N                resources/list page size (default 2) SHOAL_FIXTURE_PAGE_SIZE
  --log-level LEVEL            level before logging/setLevel        SHOAL_FIXTURE_LOG_LEVEL (default info)
  -h, --help                   print this text

Tools: echo, big, slow, wait_cancel, sample, elicit, roots, ping_client, log, notify_list_changed, touch, stats,
crash, fail, tool_error (see the shoal_testkit::server rustdoc for arguments).
";

/// Everything that makes one fixture run differ from another.
///
/// Build it with [`Config::default`] and struct update syntax, or from the process's environment and
/// arguments with [`Config::from_env`] and [`Config::apply_args`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `serverInfo.name` in the initialize result. Default `shoal-fixture`.
    pub name: String,
    /// Protocol versions the fixture accepts. A client asking for one of them gets it echoed; any
    /// other gets the latest (greatest) of this list. Default [`DEFAULT_PROTOCOL_VERSIONS`].
    pub protocol_versions: Vec<String>,
    /// Sleep this long before reading stdin (after the spawn counter and grandchild are written), to
    /// stand in for a slow-starting server. Default zero.
    pub startup_delay: Duration,
    /// Append one line `"<pid>\n"` to this file at start (`O_APPEND`), so a test can count how many
    /// times the backend was started.
    pub spawn_counter: Option<PathBuf>,
    /// After `notifications/initialized`, send the three `list_changed` notifications and (if the
    /// client declared `roots`) a `roots/list` request, like the reference "everything" server.
    pub chatty: bool,
    /// Start a grandchild process (in the fixture's process group, stdio closed) that lives until
    /// killed (at most [`GRANDCHILD_MAX_LIFETIME`](super::GRANDCHILD_MAX_LIFETIME)), and write its pid
    /// to this file (atomically, via rename) before reading stdin.
    pub grandchild_pid_file: Option<PathBuf>,
    /// Keep running after stdin reaches EOF (until killed), to test the daemon's stop escalation.
    pub ignore_stdin_eof: bool,
    /// Ignore SIGTERM (process-wide, inherited by the grandchild), to test SIGKILL escalation.
    pub ignore_sigterm: bool,
    /// `0` is the base tool list; `N > 0` adds a tool named `variant_N`, so a test can see that the
    /// tool list really changed after a restart with a different variant.
    pub tools_variant: u32,
    /// Serve this many requests, then exit with status 1 on receiving the next one, without
    /// answering it. `initialize` counts as a request.
    pub crash_after_requests: Option<u64>,
    /// Page size of `resources/list` (five static resources), so cursors can be tested. Default 2.
    pub page_size: usize,
    /// Log level in force until a `logging/setLevel`. Default `info` (the spec leaves the default
    /// to the server).
    pub log_level: LogLevel,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            name: "shoal-fixture".to_owned(),
            protocol_versions: DEFAULT_PROTOCOL_VERSIONS
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
            startup_delay: Duration::ZERO,
            spawn_counter: None,
            chatty: false,
            grandchild_pid_file: None,
            ignore_stdin_eof: false,
            ignore_sigterm: false,
            tools_variant: 0,
            crash_after_requests: None,
            page_size: 2,
            log_level: LogLevel::Info,
        }
    }
}

/// A flag or environment variable the fixture could not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

fn error(message: String) -> ConfigError {
    ConfigError { message }
}

/// What [`Config::apply_args`] found on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run with this configuration.
    Run(Config),
    /// `--help` was given: print [`USAGE`] and exit successfully.
    Help,
}

impl Config {
    /// The default configuration overridden by the process's `SHOAL_FIXTURE_*` variables.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::default().apply_env(std::env::vars_os())
    }

    /// Overrides fields from `SHOAL_FIXTURE_*` variables in `vars`; other variables are ignored.
    pub fn apply_env(
        mut self,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config, ConfigError> {
        for (key, value) in vars {
            let Some(key) = key.to_str() else { continue };
            let Some(option) = key.strip_prefix("SHOAL_FIXTURE_") else {
                continue;
            };
            let flag = option.to_ascii_lowercase().replace('_', "-");
            let value = value
                .into_string()
                .map_err(|_| error(format!("{key} is not valid UTF-8")))?;
            match Knob::from_flag(&flag) {
                Some(option) if option.takes_value() => self.set(option, &value, key)?,
                Some(option) => {
                    if parse_bool(&value, key)? {
                        self.set(option, "", key)?;
                    }
                }
                None => return Err(error(format!("unknown variable {key}"))),
            }
        }
        Ok(self)
    }

    /// Overrides fields from command-line flags (`--flag value` or `--flag=value`), without the
    /// program name.
    pub fn apply_args(
        mut self,
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<Parsed, ConfigError> {
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let arg = arg
                .into_string()
                .map_err(|arg| error(format!("argument {arg:?} is not valid UTF-8")))?;
            if arg == "-h" || arg == "--help" {
                return Ok(Parsed::Help);
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(error(format!("unexpected argument {arg:?} (see --help)")));
            };
            let (flag, inline_value) = match flag.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_owned())),
                None => (flag, None),
            };
            let option = Knob::from_flag(flag)
                .ok_or_else(|| error(format!("unknown flag --{flag} (see --help)")))?;
            let label = format!("--{flag}");
            if option.takes_value() {
                let value = match inline_value {
                    Some(value) => value,
                    None => args
                        .next()
                        .and_then(|value| value.into_string().ok())
                        .ok_or_else(|| error(format!("{label} needs a value")))?,
                };
                self.set(option, &value, &label)?;
            } else if inline_value.is_some() {
                return Err(error(format!("{label} takes no value")));
            } else {
                self.set(option, "", &label)?;
            }
        }
        Ok(Parsed::Run(self))
    }

    /// The protocol version the fixture answers to a client that asked for `requested`.
    pub fn negotiate(&self, requested: &str) -> String {
        if self.protocol_versions.iter().any(|v| v == requested) {
            return requested.to_owned();
        }
        self.protocol_versions
            .iter()
            .max()
            .cloned()
            .unwrap_or_else(|| requested.to_owned())
    }

    fn set(&mut self, option: Knob, value: &str, label: &str) -> Result<(), ConfigError> {
        match option {
            Knob::Name => self.name = value.to_owned(),
            Knob::ProtocolVersions => {
                let versions: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect();
                if versions.is_empty() {
                    return Err(error(format!("{label} needs at least one version")));
                }
                self.protocol_versions = versions;
            }
            Knob::StartupDelayMs => {
                self.startup_delay = Duration::from_millis(parse_number(value, label)?);
            }
            Knob::SpawnCounter => self.spawn_counter = Some(PathBuf::from(value)),
            Knob::Chatty => self.chatty = true,
            Knob::GrandchildPidFile => self.grandchild_pid_file = Some(PathBuf::from(value)),
            Knob::IgnoreStdinEof => self.ignore_stdin_eof = true,
            Knob::IgnoreSigterm => self.ignore_sigterm = true,
            Knob::ToolsVariant => {
                self.tools_variant = u32::try_from(parse_number(value, label)?)
                    .map_err(|_| error(format!("{label} is too large")))?;
            }
            Knob::CrashAfterRequests => {
                self.crash_after_requests = Some(parse_number(value, label)?);
            }
            Knob::PageSize => {
                let size = parse_number(value, label)?;
                if size == 0 {
                    return Err(error(format!("{label} must be at least 1")));
                }
                self.page_size = usize::try_from(size).unwrap_or(usize::MAX);
            }
            Knob::LogLevel => {
                self.log_level = LogLevel::parse(value).ok_or_else(|| {
                    error(format!("{label}: unknown log level {value:?} (debug, info, notice, warning, error, critical, alert, emergency)"))
                })?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Knob {
    Name,
    ProtocolVersions,
    StartupDelayMs,
    SpawnCounter,
    Chatty,
    GrandchildPidFile,
    IgnoreStdinEof,
    IgnoreSigterm,
    ToolsVariant,
    CrashAfterRequests,
    PageSize,
    LogLevel,
}

impl Knob {
    fn from_flag(flag: &str) -> Option<Knob> {
        Some(match flag {
            "name" => Knob::Name,
            "protocol-versions" => Knob::ProtocolVersions,
            "startup-delay-ms" => Knob::StartupDelayMs,
            "spawn-counter" => Knob::SpawnCounter,
            "chatty" => Knob::Chatty,
            "grandchild-pid-file" => Knob::GrandchildPidFile,
            "ignore-stdin-eof" => Knob::IgnoreStdinEof,
            "ignore-sigterm" => Knob::IgnoreSigterm,
            "tools-variant" => Knob::ToolsVariant,
            "crash-after-requests" => Knob::CrashAfterRequests,
            "page-size" => Knob::PageSize,
            "log-level" => Knob::LogLevel,
            _ => return None,
        })
    }

    fn takes_value(self) -> bool {
        !matches!(
            self,
            Knob::Chatty | Knob::IgnoreStdinEof | Knob::IgnoreSigterm
        )
    }
}

fn parse_number(value: &str, label: &str) -> Result<u64, ConfigError> {
    value.trim().parse().map_err(|_| {
        error(format!(
            "{label}: expected a non-negative integer, got {value:?}"
        ))
    })
}

fn parse_bool(value: &str, label: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(error(format!("{label}: expected 1 or 0, got {value:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    fn check(env: &[(&str, &str)], args: &[&str], expected: Result<Parsed, &str>) {
        let vars = env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let actual = Config::default()
            .apply_env(vars)
            .and_then(|config| config.apply_args(os(args)));
        match (actual, expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(actual, expected),
            (Err(actual), Err(expected)) => assert_eq!(actual.to_string(), expected),
            (actual, expected) => panic!("got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn defaults() {
        check(&[], &[], Ok(Parsed::Run(Config::default())));
        check(&[], &["--help"], Ok(Parsed::Help));
    }

    #[test]
    fn flags_and_env() {
        let expected = Config {
            name: "x".to_owned(),
            startup_delay: Duration::from_millis(250),
            chatty: true,
            tools_variant: 3,
            ignore_sigterm: true,
            page_size: 1,
            log_level: LogLevel::Debug,
            protocol_versions: vec!["2025-03-26".to_owned()],
            ..Config::default()
        };
        check(
            &[
                ("SHOAL_FIXTURE_STARTUP_DELAY_MS", "250"),
                ("SHOAL_FIXTURE_CHATTY", "1"),
                ("SHOAL_FIXTURE_IGNORE_STDIN_EOF", "0"),
                ("SHOAL_FIXTURE_NAME", "from-env"),
                ("SHOAL_FIXTURE_PROTOCOL_VERSIONS", "2025-03-26"),
                ("PATH", "/bin"),
            ],
            &[
                "--name",
                "x",
                "--tools-variant=3",
                "--ignore-sigterm",
                "--page-size",
                "1",
                "--log-level",
                "debug",
            ],
            Ok(Parsed::Run(expected)),
        );
    }

    #[test]
    fn errors() {
        check(&[], &["--nope"], Err("unknown flag --nope (see --help)"));
        check(&[], &["--name"], Err("--name needs a value"));
        check(&[], &["--chatty=1"], Err("--chatty takes no value"));
        check(
            &[],
            &["--startup-delay-ms", "soon"],
            Err("--startup-delay-ms: expected a non-negative integer, got \"soon\""),
        );
        check(
            &[("SHOAL_FIXTURE_CHATTY", "maybe")],
            &[],
            Err("SHOAL_FIXTURE_CHATTY: expected 1 or 0, got \"maybe\""),
        );
        check(
            &[("SHOAL_FIXTURE_BOGUS", "1")],
            &[],
            Err("unknown variable SHOAL_FIXTURE_BOGUS"),
        );
        check(
            &[],
            &["--page-size", "0"],
            Err("--page-size must be at least 1"),
        );
    }

    #[test]
    fn negotiation() {
        let config = Config::default();
        assert_eq!(config.negotiate("2025-03-26"), "2025-03-26");
        assert_eq!(config.negotiate("2099-01-01"), "2025-11-25");
        assert_eq!(config.negotiate("1999-01-01"), "2025-11-25");
    }
}
