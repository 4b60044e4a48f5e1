//! Editing Codex CLI's `config.toml` with `toml_edit`, which keeps the file's comments, order and
//! layout: only the `command`, `args` and `env_vars` values of the servers change, and the new
//! array elements take the spacing of the ones already there.

use anyhow::{Context as _, anyhow};
use toml_edit::{Array, DocumentMut, Item, TableLike, Value};

use super::{Action, Mode, Row, Wrapped};

/// The variables Codex must pass to `shoal proxy`. Codex gives a stdio server only a fixed list
/// of variables (`HOME`, `PATH`, `USER`…) plus the names in its `env_vars`, so a `SHOAL_*`
/// variable exported in the shell that reaches the project's other hosts' sessions would not
/// reach Codex's: its sessions would use another runtime dir or idle timeout than theirs.
pub(crate) const PASSED_VARIABLES: [&str; 4] = [
    "SHOAL_RUNTIME_DIR",
    "SHOAL_IDLE_TIMEOUT",
    "SHOAL_LOG",
    "SHOAL_CONFIG",
];

/// The rows of every server in `[mcp_servers]` and the file's text after `mode`.
pub(crate) fn plan(
    text: &str,
    scope: &str,
    mode: &Mode,
    only: &[String],
) -> anyhow::Result<(Vec<Row>, String)> {
    let mut document: DocumentMut = text
        .parse()
        .map_err(|error: toml_edit::TomlError| anyhow!("it is not valid TOML: {error}"))?;
    let mut rows = Vec::new();
    if let Some(servers) = document.get_mut("mcp_servers") {
        let servers = servers
            .as_table_like_mut()
            .ok_or_else(|| anyhow!("`mcp_servers` is not a table"))?;
        for (name, server) in servers.iter_mut() {
            let name = name.get().to_owned();
            if !only.is_empty() && !only.contains(&name) {
                continue;
            }
            let action = match server.as_table_like_mut() {
                Some(server) => {
                    entry(server, mode).with_context(|| format!("read the server `{name}`"))?
                }
                None => Action::LeftAlone("not a table".into()),
            };
            rows.push(Row {
                scope: scope.to_owned(),
                name,
                action,
            });
        }
    }
    Ok((rows, document.to_string()))
}

fn entry(server: &mut dyn TableLike, mode: &Mode) -> anyhow::Result<Action> {
    if server.contains_key("url") {
        return Ok(Action::LeftAlone("remote server (url)".into()));
    }
    let Some(program) = server.get("command") else {
        return Ok(Action::LeftAlone("no command".into()));
    };
    let program = program
        .as_str()
        .ok_or_else(|| anyhow!("`command` is not a string"))?
        .to_owned();
    let words = match server.get("args") {
        None => Vec::new(),
        Some(args) => args
            .as_array()
            .ok_or_else(|| anyhow!("`args` is not an array"))?
            .iter()
            .map(|arg| arg.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| anyhow!("`args` holds something other than strings"))?,
    };
    let wrapped = match super::wrapped(&program, &words) {
        Ok(wrapped) => wrapped,
        Err(why) => return Ok(Action::LeftAlone(why)),
    };
    match (mode, wrapped) {
        (
            Mode::Install { .. },
            Some(Wrapped {
                server: line,
                key_env,
                ..
            }),
        ) => {
            // Shared already; the variables may still be missing (an entry wrapped by hand).
            let added = pass_variables(server, &key_env)?;
            if added.is_empty() {
                Ok(Action::Shared(line))
            } else {
                Ok(Action::SharedPassing(line, added))
            }
        }
        (Mode::Undo, None) => Ok(Action::NotShared),
        (Mode::Install { shoal }, None) => {
            set_string(server, "command", shoal);
            let added = ["proxy", "--", program.as_str()];
            match server.get_mut("args").and_then(Item::as_array_mut) {
                Some(args) => prepend(args, &added),
                None => {
                    let args: Array = added.iter().copied().collect();
                    server.insert("args", Item::Value(Value::Array(args)));
                }
            }
            pass_variables(server, &[])?;
            let mut line = vec![program];
            line.extend(words);
            Ok(Action::Share(line))
        }
        (
            Mode::Undo,
            Some(Wrapped {
                server: line,
                consumed,
                ..
            }),
        ) => {
            set_string(server, "command", &line[0]);
            // An `args` left empty stays, as in the JSON files.
            if let Some(args) = server.get_mut("args").and_then(Item::as_array_mut) {
                drop_front(args, consumed);
            }
            forget_variables(server);
            Ok(Action::Unshare(line))
        }
    }
}

/// Replace a string value, keeping the spacing and comment around it.
fn set_string(table: &mut dyn TableLike, key: &str, text: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(value) => {
            let decor = value.decor().clone();
            let mut replaced = Value::from(text);
            *replaced.decor_mut() = decor;
            *value = replaced;
        }
        None => {
            table.insert(key, toml_edit::value(text));
        }
    }
}

/// Put `words` in front of `args`, spaced as its elements are.
fn prepend(args: &mut Array, words: &[&str]) {
    let prefix = |value: Option<&Value>| {
        value
            .and_then(|value| value.decor().prefix())
            .and_then(|prefix| prefix.as_str())
            .map(str::to_owned)
    };
    let first = prefix(args.get(0)).unwrap_or_default();
    let between = prefix(args.get(1)).unwrap_or_else(|| {
        if first.contains('\n') {
            first.clone()
        } else {
            " ".to_owned()
        }
    });
    if let Some(old_first) = args.get_mut(0) {
        old_first.decor_mut().set_prefix(between.clone());
    }
    for (at, word) in words.iter().enumerate() {
        let spacing = if at == 0 { &first } else { &between };
        args.insert_formatted(at, Value::from(*word).decorated(spacing.as_str(), ""));
    }
}

/// Remove the first `count` elements; the first one left takes the spacing of the old first.
fn drop_front(args: &mut Array, count: usize) {
    let first = args
        .get(0)
        .and_then(|value| value.decor().prefix())
        .and_then(|prefix| prefix.as_str())
        .unwrap_or_default()
        .to_owned();
    for _ in 0..count {
        args.remove(0);
    }
    if let Some(new_first) = args.get_mut(0) {
        new_first.decor_mut().set_prefix(first);
    }
}

/// Add [`PASSED_VARIABLES`] and the entry's `--key-env` names (its daemon's identity depends on
/// them) to the server's `env_vars`, those not there yet; return those added.
fn pass_variables(server: &mut dyn TableLike, key_env: &[String]) -> anyhow::Result<Vec<String>> {
    let names = match server.get_mut("env_vars") {
        Some(item) => item
            .as_array_mut()
            .ok_or_else(|| anyhow!("`env_vars` is not an array"))?,
        None => {
            server.insert("env_vars", Item::Value(Value::Array(Array::new())));
            server
                .get_mut("env_vars")
                .and_then(Item::as_array_mut)
                .ok_or_else(|| anyhow!("`env_vars` could not be added"))?
        }
    };
    let mut added = Vec::new();
    for variable in PASSED_VARIABLES
        .iter()
        .copied()
        .chain(key_env.iter().map(String::as_str))
    {
        let present = names.iter().any(|name| {
            name.as_str() == Some(variable)
                || name
                    .as_inline_table()
                    .and_then(|table| table.get("name"))
                    .and_then(Value::as_str)
                    == Some(variable)
        });
        if !present {
            names.push(variable);
            added.push(variable.to_owned());
        }
    }
    Ok(added)
}

/// Remove [`PASSED_VARIABLES`] from `env_vars` when all of them are there (as install adds them;
/// a user's own `SHOAL_LOG` alone stays), and `env_vars` if that left it empty.
fn forget_variables(server: &mut dyn TableLike) {
    let Some(names) = server.get_mut("env_vars").and_then(Item::as_array_mut) else {
        return;
    };
    let listed = |variable: &str| names.iter().any(|name| name.as_str() == Some(variable));
    if !PASSED_VARIABLES.iter().all(|variable| listed(variable)) {
        return;
    }
    names.retain(|name| {
        !name
            .as_str()
            .is_some_and(|name| PASSED_VARIABLES.contains(&name))
    });
    if names.is_empty() {
        server.remove("env_vars");
    }
}
