//! Editing the JSON config files (Claude Code, Gemini CLI, Cursor, VS Code) in place: a server's
//! `command` value is replaced and `args` gains or loses its first elements, written in the
//! style of the elements already there; no other byte of the file changes.

use std::ops::Range;

use anyhow::{Context as _, anyhow};

use super::jsonc::{self, Kind, Member, Value};
use super::{Action, Mode, Row, Wrapped};

/// Where a file keeps a table of servers: the keys leading to the object, and how to name it.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub(crate) scope: String,
    pub(crate) keys: Vec<String>,
}

/// A replacement of `range` of the original text by `text`.
struct Edit {
    range: Range<usize>,
    text: String,
}

/// The rows of every server in the sections `sections_of` finds in the document, and the file's
/// text after `mode`.
pub(crate) fn plan(
    text: &str,
    sections_of: impl FnOnce(&Value) -> Vec<Section>,
    mode: &Mode,
    only: &[String],
) -> anyhow::Result<(Vec<Row>, String)> {
    let document = jsonc::parse(text).map_err(|error| anyhow!("it is not valid JSON: {error}"))?;
    let mut rows = Vec::new();
    let mut edits = Vec::new();
    for section in &sections_of(&document) {
        let Some(servers) = lookup(&document, &section.keys) else {
            continue;
        };
        let Kind::Object(members) = &servers.kind else {
            return Err(anyhow!("`{}` is not an object", section.keys.join(".")));
        };
        for member in members {
            if !only.is_empty() && !only.contains(&member.key) {
                continue;
            }
            let (action, entry_edits) = entry(text, &member.value, mode)
                .with_context(|| format!("read the server `{}`", member.key))?;
            edits.extend(entry_edits);
            rows.push(Row {
                scope: section.scope.clone(),
                name: member.key.clone(),
                action,
            });
        }
    }
    Ok((rows, apply(text, edits)))
}

fn lookup<'a>(document: &'a Value, keys: &[String]) -> Option<&'a Value> {
    keys.iter().try_fold(document, |value, key| {
        value.get(key).map(|member| &member.value)
    })
}

/// What to do with one server entry, and the edits that do it.
fn entry(text: &str, server: &Value, mode: &Mode) -> anyhow::Result<(Action, Vec<Edit>)> {
    if !matches!(server.kind, Kind::Object(_)) {
        return Ok((Action::LeftAlone("not an object".into()), Vec::new()));
    }
    if let Some(remote) = remote(server) {
        return Ok((Action::LeftAlone(remote), Vec::new()));
    }
    let Some(command) = server.get("command") else {
        return Ok((Action::LeftAlone("no command".into()), Vec::new()));
    };
    let Some(program) = command.value.as_str() else {
        return Err(anyhow!("`command` is not a string"));
    };
    let args = server.get("args");
    let (arg_values, words) = match args.map(|args| &args.value) {
        None => (Vec::new(), Vec::new()),
        Some(Value {
            kind: Kind::Array(elements),
            ..
        }) => {
            let words = elements
                .iter()
                .map(|element| element.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| anyhow!("`args` holds something other than strings"))?;
            (elements.iter().collect(), words)
        }
        Some(_) => return Err(anyhow!("`args` is not an array")),
    };
    let wrapped = match super::wrapped(program, &words) {
        Ok(wrapped) => wrapped,
        Err(why) => return Ok((Action::LeftAlone(why), Vec::new())),
    };
    match (mode, wrapped) {
        (Mode::Install { .. }, Some(Wrapped { server, .. })) => {
            Ok((Action::Shared(server), Vec::new()))
        }
        (Mode::Undo, None) => Ok((Action::NotShared, Vec::new())),
        (Mode::Install { shoal }, None) => {
            let mut line = vec![program.to_owned()];
            line.extend(words);
            let added = ["proxy", "--", program];
            let edits = share(text, shoal, command, args, &arg_values, &added);
            Ok((Action::Share(line), edits))
        }
        (
            Mode::Undo,
            Some(Wrapped {
                server, consumed, ..
            }),
        ) => {
            let edits = unshare(command, args, &arg_values, &server[0], consumed);
            Ok((Action::Unshare(server), edits))
        }
    }
}

/// Why an entry is a remote server, if it is one: a transport `type` other than stdio, or a
/// URL (Gemini CLI's `url` and `httpUrl`, Cursor's `url`, with no `type`).
fn remote(server: &Value) -> Option<String> {
    if let Some(kind) = server.get("type").and_then(|member| member.value.as_str())
        && kind != "stdio"
    {
        return Some(format!("{kind} server"));
    }
    for key in ["url", "httpUrl", "serverUrl"] {
        if server.get(key).is_some() {
            return Some("remote server (url)".into());
        }
    }
    None
}

/// `command` becomes shoal's path; `args` gains `proxy -- <program>` in front.
fn share(
    text: &str,
    shoal: &str,
    command: &Member,
    args: Option<&Member>,
    elements: &[&Value],
    added: &[&str],
) -> Vec<Edit> {
    let mut edits = vec![Edit {
        range: command.value.span.clone(),
        text: quoted(shoal),
    }];
    match (args, elements.first()) {
        (Some(_), Some(first)) => {
            let separator = separator(text, elements);
            let mut inserted = String::new();
            for word in added {
                inserted.push_str(&quoted(word));
                inserted.push_str(&separator);
            }
            edits.push(Edit {
                range: first.span.start..first.span.start,
                text: inserted,
            });
        }
        (Some(args), None) => edits.push(Edit {
            range: args.value.span.clone(),
            text: inline_array(added),
        }),
        (None, _) => {
            // Beside `command`, on a line of its own if `command` has one.
            let line_start = text[..command.start].rfind('\n').map_or(0, |at| at + 1);
            let indent = &text[line_start..command.start];
            let glue = if indent.trim().is_empty() {
                format!(",\n{indent}")
            } else {
                ", ".to_owned()
            };
            edits.push(Edit {
                range: command.value.span.end..command.value.span.end,
                text: format!("{glue}\"args\": {}", inline_array(added)),
            });
        }
    }
    edits
}

/// The reverse of [`share`]: `command` becomes the server's program again and `args` loses what
/// stood before the server's own arguments. An `args` left empty stays as `[]`: it may be the
/// user's own, and it means what no `args` means.
fn unshare(
    command: &Member,
    args: Option<&Member>,
    elements: &[&Value],
    program: &str,
    consumed: usize,
) -> Vec<Edit> {
    let mut edits = vec![Edit {
        range: command.value.span.clone(),
        text: quoted(program),
    }];
    match (args, elements.get(consumed)) {
        (Some(_), Some(kept)) => edits.push(Edit {
            range: elements[0].span.start..kept.span.start,
            text: String::new(),
        }),
        (Some(args), None) => edits.push(Edit {
            range: args.value.span.clone(),
            text: "[]".into(),
        }),
        (None, _) => {}
    }
    edits
}

/// What goes between two elements of this array: the text between its first two if it is only
/// a comma and blanks, else a comma and the first element's line break and indentation if it
/// stands on a line of its own, else `, `.
fn separator(text: &str, elements: &[&Value]) -> String {
    if let [first, second, ..] = elements {
        let between = &text[first.span.end..second.span.start];
        if between.trim() == "," {
            return between.to_owned();
        }
    }
    let first = elements[0];
    let line_start = text[..first.span.start].rfind('\n').map_or(0, |at| at + 1);
    let indent = &text[line_start..first.span.start];
    if indent.trim().is_empty() && line_start > 0 {
        format!(",\n{indent}")
    } else {
        ", ".to_owned()
    }
}

fn inline_array(words: &[&str]) -> String {
    let words: Vec<String> = words.iter().map(|word| quoted(word)).collect();
    format!("[{}]", words.join(", "))
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    // Serializing a `str` cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// The text with `edits` made; they never overlap.
fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|edit| edit.range.start);
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for edit in edits {
        out.push_str(&text[at..edit.range.start]);
        out.push_str(&edit.text);
        at = edit.range.end;
    }
    out.push_str(&text[at..]);
    out
}
