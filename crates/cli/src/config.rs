//! `~/.config/shoal/config.toml`: settings that hold for every host.
//!
//! Hosts pass their servers different environments (Codex CLI keeps only a fixed list of
//! variables), so a `SHOAL_*` variable exported in a shell reaches some sessions of a project and
//! not others, which can split them across daemons. The config file is read by every `shoal`
//! process whatever its environment: its home is the user's home directory from the password
//! database, not `$HOME` or `$XDG_CONFIG_HOME`. Each setting is the default of one variable,
//! and the variable (then the flag) still overrides it:
//!
//! ```toml
//! runtime_dir = "/run/user/1000/shoal"   # SHOAL_RUNTIME_DIR
//! idle_timeout = 600                     # SHOAL_IDLE_TIMEOUT (seconds; 0 = never)
//! log = "debug"                          # SHOAL_LOG
//! ```
//!
//! `SHOAL_CONFIG` names another file (tests use it); a missing file is no settings.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow, bail};

/// The settings and the variable each stands for.
const SETTINGS: [(&str, &str); 3] = [
    ("runtime_dir", "SHOAL_RUNTIME_DIR"),
    ("idle_timeout", "SHOAL_IDLE_TIMEOUT"),
    ("log", "SHOAL_LOG"),
];

/// The values read from the config file, by variable name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    values: Vec<(&'static str, String)>,
}

impl Settings {
    /// Parse a config file's text; `path` names it in errors.
    pub(crate) fn parse(text: &str, path: &str) -> anyhow::Result<Settings> {
        let document = toml_edit::Document::parse(text)
            .map_err(|error: toml_edit::TomlError| anyhow!("{error}"))
            .with_context(|| format!("read {path}: it is not valid TOML"))?;
        let mut values = Vec::new();
        for (key, item) in document.as_table() {
            let Some(&(_, variable)) = SETTINGS.iter().find(|(name, _)| *name == key) else {
                let known: Vec<&str> = SETTINGS.iter().map(|(name, _)| *name).collect();
                bail!(
                    "read {path}: unknown setting `{key}`; the settings are {}",
                    known.join(", ")
                );
            };
            let value = item.as_value();
            let text = match value {
                Some(toml_edit::Value::String(text)) => text.value().clone(),
                Some(toml_edit::Value::Integer(number)) if key == "idle_timeout" => {
                    number.value().to_string()
                }
                Some(toml_edit::Value::Float(number)) if key == "idle_timeout" => {
                    number.value().to_string()
                }
                _ => bail!(
                    "read {path}: `{key}` must be {}",
                    if key == "idle_timeout" {
                        "a number of seconds"
                    } else {
                        "a string"
                    }
                ),
            };
            values.push((variable, text));
        }
        Ok(Settings { values })
    }

    fn get(&self, variable: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(name, _)| *name == variable)
            .map(|(_, value)| value.as_str())
    }
}

/// Where the config file is: `$SHOAL_CONFIG`, else `.config/shoal/config.toml` in the home
/// directory the password database gives the effective user.
fn path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SHOAL_CONFIG").filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok()??;
    Some(user.dir.join(".config/shoal/config.toml"))
}

/// The config file's settings, read once per process. A missing file is empty settings; an
/// unreadable or invalid one is an error that names it.
pub(crate) fn settings() -> Result<&'static Settings, &'static anyhow::Error> {
    static SETTINGS: OnceLock<anyhow::Result<Settings>> = OnceLock::new();
    SETTINGS
        .get_or_init(|| {
            let Some(path) = path() else {
                return Ok(Settings::default());
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => Settings::parse(&text, &path.display().to_string()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    Ok(Settings::default())
                }
                Err(error) => {
                    Err(anyhow::Error::new(error).context(format!("read {}", path.display())))
                }
            }
        })
        .as_ref()
}

/// The value of `variable`: the environment's if set and not empty, else the config file's.
pub(crate) fn var(variable: &str) -> anyhow::Result<Option<OsString>> {
    if let Some(value) = std::env::var_os(variable).filter(|value| !value.is_empty()) {
        return Ok(Some(value));
    }
    let settings = settings().map_err(|error| anyhow!("{error:#}"))?;
    Ok(settings.get(variable).map(OsString::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &str) {
        let actual = match Settings::parse(text, "config.toml") {
            Ok(settings) => format!("{:?}", settings.values),
            Err(error) => format!("error: {error:#}"),
        };
        assert_eq!(actual, expected, "{text}");
    }

    #[test]
    fn settings_stand_for_variables() {
        check("", "[]");
        check(
            "# mine\nruntime_dir = \"/run/shoal\"\nidle_timeout = 600\nlog = \"debug\"\n",
            r#"[("SHOAL_RUNTIME_DIR", "/run/shoal"), ("SHOAL_IDLE_TIMEOUT", "600"), ("SHOAL_LOG", "debug")]"#,
        );
        check("idle_timeout = 0.5", r#"[("SHOAL_IDLE_TIMEOUT", "0.5")]"#);
        check(
            "idle_timeout = \"300\"",
            r#"[("SHOAL_IDLE_TIMEOUT", "300")]"#,
        );
    }

    #[test]
    fn mistakes_name_the_file_and_the_setting() {
        check(
            "idle_timout = 5",
            "error: read config.toml: unknown setting `idle_timout`; the settings are runtime_dir, idle_timeout, log",
        );
        check("log = 3", "error: read config.toml: `log` must be a string");
        check(
            "idle_timeout = true",
            "error: read config.toml: `idle_timeout` must be a number of seconds",
        );
        let error = Settings::parse("runtime_dir = ", "config.toml").unwrap_err();
        assert!(
            format!("{error:#}").starts_with("read config.toml: it is not valid TOML: "),
            "{error:#}"
        );
    }
}
