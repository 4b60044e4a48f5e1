//! `shoal install`: route the stdio servers of every MCP host's config through `shoal proxy`,
//! and `--undo` it.
//!
//! Each host's files are found where the host reads them ([`config_files`]); each server entry
//! gets a [`Row`] saying what happens to it; a file's new text comes from editing the old one in
//! place (JSON through [`jsonc`] spans, TOML through `toml_edit`), so that the diff shown is the
//! whole change and formatting and comments survive. Nothing is written without `--write`;
//! then each file is backed up beside itself and replaced atomically, and only if no one wrote
//! it in the meantime.
//!
//! A server is shared by turning `"command": P, "args": [A…]` into `"command": "shoal", "args":
//! ["proxy", "--", P, A…]`; undoing it parses the `shoal proxy` line as `shoal proxy` would and
//! puts `P, A…` back, so that install then undo gives the original bytes back (but for a server
//! that had no `args`: it gets an empty one).

mod codex;
mod diff;
mod json;
mod jsonc;
mod write;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::Parser as _;

use crate::status::{command_line, home_root, keep_both_ends};
use crate::{exit, write_stdout};

/// Share the stdio MCP servers of your hosts: rewrite each host's MCP config so that it starts
/// `shoal proxy -- <server command>` instead of the server.
///
/// Reads the configs of Claude Code (.mcp.json, ~/.claude.json), Codex CLI
/// (~/.codex/config.toml, .codex/config.toml), Gemini CLI (.gemini/settings.json, user and
/// project), Cursor (.cursor/mcp.json, user and project) and VS Code (.vscode/mcp.json) for the
/// project of the current directory, and shows the change to each file as a diff. Nothing is
/// written without --write; then each file is first copied to <file>.shoal-backup. Remote
/// (http, sse) servers and servers shared already are left alone, so running it again changes
/// nothing. Formatting and comments are kept. Codex CLI also gets `env_vars` for the SHOAL_*
/// variables, which it would otherwise not pass to shoal.
///
/// Project files (.mcp.json, .cursor/mcp.json, .vscode/mcp.json…) are often committed: whoever
/// else uses them needs shoal too. Pick what to change with --host and --server. Restart the
/// hosts' sessions to use the new commands.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
#[command(after_help = "\
Examples:
  shoal install                      show what would change
  shoal install --write              change it
  shoal install --host codex --server github --write
  shoal install --undo --write       put the servers' own commands back")]
pub(crate) struct InstallArgs {
    /// Write the changes (each file is backed up to <file>.shoal-backup first)
    #[arg(long)]
    write: bool,

    /// Put back the servers' own commands instead: every `shoal proxy` entry is unwrapped
    #[arg(long)]
    undo: bool,

    /// Only this host's configs (repeatable)
    #[arg(long, value_enum, value_name = "HOST")]
    host: Vec<Host>,

    /// Only servers of this name (repeatable)
    #[arg(long, value_name = "NAME")]
    server: Vec<String>,

    /// The project whose configs to change [default: the git top level of the current
    /// directory, else the current directory]
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,

    /// The shoal command to write into the configs; its file name must be `shoal` [default:
    /// `shoal` if that is this binary on PATH, else this binary's absolute path]
    #[arg(long, value_name = "PATH")]
    shoal: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Host {
    Claude,
    Codex,
    Gemini,
    Cursor,
    Vscode,
}

impl Host {
    fn name(self) -> &'static str {
        match self {
            Host::Claude => "Claude Code",
            Host::Codex => "Codex CLI",
            Host::Gemini => "Gemini CLI",
            Host::Cursor => "Cursor",
            Host::Vscode => "VS Code",
        }
    }
}

/// Install or undo.
#[derive(Debug)]
pub(crate) enum Mode {
    Install { shoal: String },
    Undo,
}

/// One server entry of a config file and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) scope: String,
    pub(crate) name: String,
    pub(crate) action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Will be (or was) wrapped; its command line.
    Share(Vec<String>),
    /// Is wrapped already; the server's own command line.
    Shared(Vec<String>),
    /// Is wrapped already, but Codex CLI was not told to pass it these variables (added now).
    SharedPassing(Vec<String>, Vec<String>),
    /// Will be (or was) unwrapped; the server's own command line.
    Unshare(Vec<String>),
    /// Undo found nothing to unwrap.
    NotShared,
    /// Never touched, and why.
    LeftAlone(String),
}

impl Action {
    fn changes(&self) -> bool {
        matches!(
            self,
            Action::Share(_) | Action::Unshare(_) | Action::SharedPassing(..)
        )
    }
}

/// An entry that runs `shoal proxy`: the server's own command line, and how many elements of
/// `args` stand before its arguments (`proxy`, shoal's options, `--`, the program).
pub(crate) struct Wrapped {
    pub(crate) server: Vec<String>,
    pub(crate) consumed: usize,
    /// Its `--key-env` names.
    pub(crate) key_env: Vec<String>,
}

/// `shoal proxy` as its own parser reads it.
#[derive(clap::Parser)]
#[command(name = "proxy", no_binary_name = false)]
struct ProxyLine {
    #[command(flatten)]
    args: crate::proxy::ProxyArgs,
}

/// Whether `program args` runs `shoal proxy`, and what server it shares; `Err` says why a
/// `shoal proxy` line cannot be read (it is then left alone, never wrapped twice).
pub(crate) fn wrapped(program: &str, args: &[String]) -> Result<Option<Wrapped>, String> {
    let is_shoal = Path::new(program)
        .file_name()
        .is_some_and(|name| name == "shoal");
    if !is_shoal || args.first().map(String::as_str) != Some("proxy") {
        return Ok(None);
    }
    let line = ProxyLine::try_parse_from(args.iter().map(OsString::from))
        .map_err(|_| "a `shoal proxy` line shoal cannot read".to_owned())?;
    let server: Vec<String> = line
        .args
        .server_command()
        .iter()
        .map(|word| word.to_string_lossy().into_owned())
        .collect();
    Ok(Some(Wrapped {
        consumed: args.len() + 1 - server.len(),
        server,
        key_env: line
            .args
            .key_env()
            .iter()
            .map(|name| name.to_string_lossy().into_owned())
            .collect(),
    }))
}

/// A config file a host reads, and how to read it.
#[derive(Debug, Clone)]
pub(crate) struct ConfigFile {
    pub(crate) host: Host,
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
}

#[derive(Debug, Clone)]
pub(crate) enum Format {
    /// JSON with these server tables.
    Json(Vec<json::Section>),
    /// Claude Code's `~/.claude.json`: user servers at the top, local ones under the project.
    ClaudeUser { project: PathBuf },
    /// Codex CLI's `config.toml`, of this scope.
    Codex(&'static str),
}

/// Where the hosts keep what they need to find their files.
pub(crate) struct Places {
    pub(crate) home: PathBuf,
    pub(crate) project: PathBuf,
    pub(crate) claude_config_dir: Option<PathBuf>,
    pub(crate) codex_home: Option<PathBuf>,
}

/// Every config file of every host, in the order they are shown.
pub(crate) fn config_files(places: &Places) -> Vec<ConfigFile> {
    let Places {
        home,
        project,
        claude_config_dir,
        codex_home,
    } = places;
    let servers = |scope: &str, key: &str| {
        Format::Json(vec![json::Section {
            scope: scope.to_owned(),
            keys: vec![key.to_owned()],
        }])
    };
    let file = |host, path: PathBuf, format| ConfigFile { host, path, format };
    vec![
        file(
            Host::Claude,
            project.join(".mcp.json"),
            servers("project", "mcpServers"),
        ),
        file(
            Host::Claude,
            claude_config_dir
                .as_ref()
                .unwrap_or(home)
                .join(".claude.json"),
            Format::ClaudeUser {
                project: project.clone(),
            },
        ),
        file(
            Host::Codex,
            codex_home
                .clone()
                .unwrap_or_else(|| home.join(".codex"))
                .join("config.toml"),
            Format::Codex("user"),
        ),
        file(
            Host::Codex,
            project.join(".codex/config.toml"),
            Format::Codex("project"),
        ),
        file(
            Host::Gemini,
            home.join(".gemini/settings.json"),
            servers("user", "mcpServers"),
        ),
        file(
            Host::Gemini,
            project.join(".gemini/settings.json"),
            servers("project", "mcpServers"),
        ),
        file(
            Host::Cursor,
            home.join(".cursor/mcp.json"),
            servers("user", "mcpServers"),
        ),
        file(
            Host::Cursor,
            project.join(".cursor/mcp.json"),
            servers("project", "mcpServers"),
        ),
        file(
            Host::Vscode,
            project.join(".vscode/mcp.json"),
            servers("workspace", "servers"),
        ),
    ]
}

/// What one config file holds and becomes.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) file: ConfigFile,
    pub(crate) rows: Vec<Row>,
    pub(crate) old: String,
    pub(crate) new: String,
}

/// The plan for one file's text.
pub(crate) fn plan(
    file: &ConfigFile,
    text: &str,
    mode: &Mode,
    only: &[String],
) -> anyhow::Result<Plan> {
    let (rows, new) = match &file.format {
        Format::Json(sections) => json::plan(text, |_| sections.clone(), mode, only)?,
        Format::ClaudeUser { project } => json::plan(
            text,
            |document| claude_sections(document, project),
            mode,
            only,
        )?,
        Format::Codex(scope) => codex::plan(text, scope, mode, only)?,
    };
    Ok(Plan {
        file: file.clone(),
        rows,
        old: text.to_owned(),
        new,
    })
}

/// `~/.claude.json`'s server tables: the user's, and the local ones of the project and of the
/// directories in it (Claude Code keys them by the directory it was started in).
fn claude_sections(document: &jsonc::Value, project: &Path) -> Vec<json::Section> {
    let mut sections = vec![json::Section {
        scope: "user".into(),
        keys: vec!["mcpServers".into()],
    }];
    if let Some(projects) = document.get("projects")
        && let jsonc::Kind::Object(members) = &projects.value.kind
    {
        for member in members {
            let Ok(inside) = Path::new(&member.key).strip_prefix(project) else {
                continue;
            };
            let scope = if inside.as_os_str().is_empty() {
                "local".to_owned()
            } else {
                format!("local: {}", inside.display())
            };
            sections.push(json::Section {
                scope,
                keys: vec!["projects".into(), member.key.clone(), "mcpServers".into()],
            });
        }
    }
    sections
}

pub(crate) fn run(args: &InstallArgs) -> ExitCode {
    match install(args) {
        Ok(code) => code,
        Err(error) => {
            crate::report(&error);
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn install(args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("read the current directory")?;
    let project = crate::root::project_root(args.project.as_deref(), &cwd).with_context(|| {
        format!(
            "use {} as the project",
            args.project.as_deref().unwrap_or(&cwd).display()
        )
    })?;
    let home = home_dir().ok_or_else(|| {
        anyhow!("find the home directory: HOME is not set and the user has no home directory")
    })?;
    let places = Places {
        home: home.clone(),
        project,
        claude_config_dir: env_path("CLAUDE_CONFIG_DIR"),
        codex_home: env_path("CODEX_HOME"),
    };
    let mode = if args.undo {
        Mode::Undo
    } else {
        Mode::Install {
            shoal: match &args.shoal {
                // What install wrote is recognised by the program's name: another name would
                // be wrapped again by the next run, and never unwrapped by --undo.
                Some(shoal)
                    if Path::new(shoal)
                        .file_name()
                        .is_none_or(|name| name != "shoal") =>
                {
                    return Err(anyhow!(
                        "use {shoal:?} as the shoal command: its file name must be `shoal`, so \
                         that `shoal install` recognises the entries it wrote; link or rename it"
                    ));
                }
                Some(shoal) => shoal.clone(),
                None => shoal_command()?,
            },
        }
    };
    let mut files = config_files(&places);
    if !args.host.is_empty() {
        files.retain(|file| args.host.contains(&file.host));
    }
    let mut plans = Vec::new();
    let mut failures = Vec::new();
    for file in &files {
        match std::fs::read_to_string(&file.path) {
            Ok(text) => match plan(file, &text, &mode, &args.server) {
                Ok(plan) => plans.push(plan),
                Err(error) => failures.push(error.context(format!("read {}", file.path.display()))),
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => failures
                .push(anyhow::Error::new(error).context(format!("read {}", file.path.display()))),
        }
    }
    let home = home.to_string_lossy().into_owned();
    let mut out = render(&plans, Some(home.as_str()), crate::terminal::stdout_width());
    if args.write {
        for plan in plans.iter().filter(|plan| plan.old != plan.new) {
            match write::replace(&plan.file.path, &plan.old, &plan.new) {
                Ok(backup) => {
                    let _ = writeln!(
                        out,
                        "Wrote {} (it was copied to {}).",
                        home_root(&plan.file.path.to_string_lossy(), Some(&home)),
                        home_root(&backup.to_string_lossy(), Some(&home)),
                    );
                }
                Err(error) => failures.push(error),
            }
        }
    }
    // A file that could not be read is reported below, not as a missing config.
    if !plans.is_empty() || failures.is_empty() {
        out.push_str(&summary(&plans, &files, &mode, args.write, Some(&home)));
    }
    let code = write_stdout(&out);
    for failure in &failures {
        crate::report(failure);
    }
    Ok(if failures.is_empty() {
        code
    } else {
        ExitCode::from(exit::FAILURE)
    })
}

/// Each file with servers: a heading, a row per server, and the diff of its change.
pub(crate) fn render(plans: &[Plan], home: Option<&str>, width: Option<usize>) -> String {
    let mut out = String::new();
    let rows = plans.iter().flat_map(|plan| &plan.rows);
    let scope_width = rows.clone().map(|row| row.scope.chars().count()).max();
    let name_width = rows.map(|row| row.name.chars().count()).max();
    let (Some(scope_width), Some(name_width)) = (scope_width, name_width) else {
        return out;
    };
    for plan in plans.iter().filter(|plan| !plan.rows.is_empty()) {
        let path = home_root(&plan.file.path.to_string_lossy(), home);
        let _ = writeln!(out, "{} · {path}", plan.file.host.name());
        for row in &plan.rows {
            let (verb, detail) = match &row.action {
                Action::Share(line) => ("share", command_line(line)),
                Action::Shared(line) => ("shared", command_line(line)),
                Action::SharedPassing(line, names) => (
                    "shared",
                    format!("{}; env_vars += {}", command_line(line), names.join(" ")),
                ),
                Action::Unshare(line) => ("unshare", command_line(line)),
                Action::NotShared => ("not shared", String::new()),
                Action::LeftAlone(why) => ("left alone", why.clone()),
            };
            let _ = write!(
                out,
                "  {:scope_width$}  {:name_width$}  {verb:10}  ",
                row.scope, row.name
            );
            let used = 2 + scope_width + 2 + name_width + 2 + 10 + 2;
            let detail = match width {
                Some(width) => keep_both_ends(&detail, width.saturating_sub(used).max(12)),
                None => detail,
            };
            out.push_str(detail.trim_end());
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        out.push_str(&diff::unified(&path, &plan.old, &plan.new));
        out.push('\n');
    }
    out
}

/// The closing lines: what changed or would, and what to do next.
fn summary(
    plans: &[Plan],
    files: &[ConfigFile],
    mode: &Mode,
    written: bool,
    home: Option<&str>,
) -> String {
    let changing: Vec<&Plan> = plans.iter().filter(|plan| plan.old != plan.new).collect();
    let servers = changing
        .iter()
        .flat_map(|plan| &plan.rows)
        .filter(|row| row.action.changes())
        .count();
    let noun = |count: usize, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    if plans.is_empty() {
        let looked: Vec<String> = files
            .iter()
            .map(|file| home_root(&file.path.to_string_lossy(), home))
            .collect();
        return format!(
            "No MCP host config found. Looked for:\n  {}\n",
            looked.join("\n  ")
        );
    }
    let (verb, done) = match mode {
        Mode::Install { .. } => (
            "shared through shoal",
            "every stdio server found is shared already",
        ),
        Mode::Undo => ("unshared", "no server found runs through shoal"),
    };
    if servers == 0 {
        let left_alone = plans.iter().flat_map(|plan| &plan.rows).any(
            |row| matches!(&row.action, Action::LeftAlone(why) if why.contains("shoal proxy")),
        );
        if left_alone {
            return "Nothing to change: the servers found are shared already or left alone, as \
                    listed above.\n"
                .to_owned();
        }
        return format!("Nothing to change: {done}.\n");
    }
    let what = format!(
        "{} in {}",
        noun(servers, "server", "servers"),
        noun(changing.len(), "file", "files")
    );
    if written {
        format!("{what} {verb}.\nRestart the hosts' sessions to use the new commands.\n")
    } else {
        format!(
            "{what} would be {verb}.\nRun this again with --write to write the change; each \
             file is backed up first.\n"
        )
    }
}

/// `$name` as a path, if set and not empty.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// The home directory the hosts use: `$HOME` (what Node.js and Rust programs read), else the
/// password database's.
fn home_dir() -> Option<PathBuf> {
    env_path("HOME").or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|user| user.dir)
    })
}

/// `shoal` when that name on `PATH` is this very binary, else this binary's absolute path: a
/// host may start servers with another `PATH` than this shell's, and a bare name that is
/// another shoal, or none, would break every server.
fn shoal_command() -> anyhow::Result<String> {
    let this = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("find this shoal binary's path")?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("shoal"))
        .find(|candidate| candidate.is_file());
    if on_path.and_then(|found| std::fs::canonicalize(found).ok()) == Some(this.clone()) {
        return Ok("shoal".into());
    }
    this.into_os_string()
        .into_string()
        .map_err(|_| anyhow!("write this shoal binary's path into a config: it is not UTF-8"))
}

#[cfg(test)]
mod tests;
