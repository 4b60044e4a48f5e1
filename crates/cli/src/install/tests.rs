//! `shoal install` on real hosts' config files: `claude mcp add` (project, local and user
//! scopes), `codex mcp add` and `gemini mcp add` wrote the `*-user`/`*-project` fixtures; the
//! `codex-edited`, Cursor and VS Code ones are written by hand in those hosts' documented formats,
//! with the comments, trailing commas and layouts people write.

use super::*;

const HOME: &str = "/home/me";
const PROJECT: &str = "/home/me/src/app";

/// Each fixture, as the file of the host that reads it, with its text.
fn fixtures() -> Vec<(ConfigFile, &'static str)> {
    let places = Places {
        home: HOME.into(),
        project: PROJECT.into(),
        claude_config_dir: None,
        codex_home: None,
    };
    let files = config_files(&places);
    let find = |path: &str| {
        files
            .iter()
            .find(|file| file.path == Path::new(path))
            .unwrap_or_else(|| panic!("no config file {path}"))
            .clone()
    };
    let codex_project = find("/home/me/src/app/.codex/config.toml");
    vec![
        (
            find("/home/me/src/app/.mcp.json"),
            include_str!("fixtures/claude-project.mcp.json"),
        ),
        (
            find("/home/me/.claude.json"),
            include_str!("fixtures/claude-user.claude.json"),
        ),
        (
            find("/home/me/.codex/config.toml"),
            include_str!("fixtures/codex-user.config.toml"),
        ),
        (
            codex_project,
            include_str!("fixtures/codex-edited.config.toml"),
        ),
        (
            find("/home/me/.gemini/settings.json"),
            include_str!("fixtures/gemini-user.settings.json"),
        ),
        (
            find("/home/me/src/app/.cursor/mcp.json"),
            include_str!("fixtures/cursor-project.mcp.json"),
        ),
        (
            find("/home/me/src/app/.vscode/mcp.json"),
            include_str!("fixtures/vscode-workspace.mcp.json"),
        ),
    ]
}

fn install() -> Mode {
    Mode::Install {
        shoal: "shoal".into(),
    }
}

fn plans(mode: &Mode) -> Vec<Plan> {
    fixtures()
        .iter()
        .map(|(file, text)| plan(file, text, mode, &[]).unwrap())
        .collect()
}

#[test]
fn install_at_80_columns() {
    let out = render(&plans(&install()), Some(HOME), Some(80));
    for line in out
        .lines()
        .filter(|line| !line.starts_with(['+', '-', ' ', '@']))
    {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn install_piped() {
    insta::assert_snapshot!(render(&plans(&install()), Some(HOME), None));
}

#[test]
fn undo_piped() {
    let installed: Vec<(ConfigFile, String)> = plans(&install())
        .into_iter()
        .map(|plan| (plan.file, plan.new))
        .collect();
    let undone: Vec<Plan> = installed
        .iter()
        .map(|(file, text)| plan(file, text, &Mode::Undo, &[]).unwrap())
        .collect();
    insta::assert_snapshot!(render(&undone, Some(HOME), None));
}

/// Install then undo gives every file back byte for byte, but for the entries shared by hand
/// before (undo unshares them too) and those without `args` (they keep an empty one); a second
/// install changes nothing.
#[test]
fn undo_restores_every_byte_and_install_is_idempotent() {
    for (file, text) in fixtures() {
        let unshared = plan(&file, text, &Mode::Undo, &[]).unwrap().new;
        if !text.contains("shared-by-hand") {
            assert_eq!(unshared, text, "{}", file.path.display());
        }
        let shared = plan(&file, text, &install(), &[]).unwrap();
        assert_ne!(
            shared.new,
            text,
            "{}: nothing was shared",
            file.path.display()
        );
        let again = plan(&file, &shared.new, &install(), &[]).unwrap();
        assert_eq!(again.new, shared.new, "{}", file.path.display());
        assert!(
            again.rows.iter().all(|row| !row.action.changes()),
            "{}: {:?}",
            file.path.display(),
            again.rows
        );
        let undone = plan(&file, &shared.new, &Mode::Undo, &[]).unwrap();
        let unshared = unshared
            .replace(r#""./bin/tool" }"#, r#""./bin/tool", "args": [] }"#)
            .replace("command = \"uvx\"\n", "command = \"uvx\"\nargs = []\n");
        assert_eq!(undone.new, unshared, "{}", file.path.display());
        let undone_again = plan(&file, &undone.new, &Mode::Undo, &[]).unwrap();
        assert_eq!(undone_again.new, undone.new, "{}", file.path.display());
    }
}

/// What a host reads from the new file: every stdio server runs `shoal proxy -- <its command>`,
/// the rest is as it was.
#[test]
fn hosts_read_the_servers_command_behind_shoal_proxy() {
    let fixtures = fixtures();
    let (claude_file, claude) = &fixtures[1];
    let shared = plan(claude_file, claude, &install(), &[]).unwrap();
    let before: serde_json::Value = serde_json::from_str(claude).unwrap();
    let mut after: serde_json::Value = serde_json::from_str(&shared.new).unwrap();
    let memory = &after["projects"][PROJECT]["mcpServers"]["memory"];
    assert_eq!(memory["command"], "shoal");
    assert_eq!(
        memory["args"],
        serde_json::json!([
            "proxy",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-memory"
        ])
    );
    assert_eq!(
        after["projects"]["/home/me/src/other"], before["projects"]["/home/me/src/other"],
        "another project's servers are left alone"
    );
    assert_eq!(
        after["mcpServers"]["legacy-sse"],
        before["mcpServers"]["legacy-sse"]
    );
    // Put the commands back by hand: then the documents are equal.
    for pointer in [
        "/projects/~1home~1me~1src~1app/mcpServers/memory",
        "/projects/~1home~1me~1src~1app/mcpServers/web-tools",
        "/mcpServers/everything",
    ] {
        let server = after.pointer_mut(pointer).unwrap();
        let args = server["args"].as_array().unwrap()[3..].to_vec();
        server["command"] = server["args"][2].clone();
        server["args"] = args.into();
    }
    assert_eq!(after, before);

    let (codex_file, codex) = &fixtures[3];
    let shared = plan(codex_file, codex, &install(), &[]).unwrap();
    let document: toml_edit::DocumentMut = shared.new.parse().unwrap();
    let server = &document["mcp_servers"]["filesystem"];
    assert_eq!(server["command"].as_str(), Some("shoal"));
    let words = |item: &toml_edit::Item| -> Vec<String> {
        item.as_array()
            .unwrap()
            .iter()
            .map(|word| word.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        words(&server["args"]),
        [
            "proxy",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "."
        ]
    );
    assert_eq!(
        words(&server["env_vars"]),
        [
            "GITHUB_TOKEN",
            "SHOAL_RUNTIME_DIR",
            "SHOAL_IDLE_TIMEOUT",
            "SHOAL_LOG",
            "SHOAL_CONFIG"
        ]
    );
    assert_eq!(
        words(&document["mcp_servers"]["git"]["args"]),
        ["proxy", "--", "uvx"]
    );
    assert!(
        shared.new.contains("# runs from the registry"),
        "{}",
        shared.new
    );
    assert!(document["mcp_servers"]["docs"].get("env_vars").is_none());
}

/// The edit on entries of every shape, and what is left alone and why.
#[test]
fn entries_of_every_shape() {
    let file = ConfigFile {
        host: Host::Cursor,
        path: "/p/.cursor/mcp.json".into(),
        format: Format::Json(vec![json::Section {
            scope: "project".into(),
            keys: vec!["mcpServers".into()],
        }]),
    };
    let check = |text: &str, mode: &Mode, expected: &str| {
        let document = format!("{{\"mcpServers\": {{\"s\": {text}}}}}");
        let actual = match plan(&file, &document, mode, &[]) {
            Ok(plan) => {
                let new = plan.new;
                let inner = &new["{\"mcpServers\": {\"s\": ".len()..new.len() - 2];
                format!("{:?} {inner}", plan.rows[0].action)
            }
            Err(error) => format!("error: {error:#}"),
        };
        assert_eq!(actual, expected, "{text}");
    };
    let install = install();
    check(
        r#"{"command": "x"}"#,
        &install,
        r#"Share(["x"]) {"command": "shoal", "args": ["proxy", "--", "x"]}"#,
    );
    check(
        "{\n  \"command\": \"x\",\n  \"env\": {}\n}",
        &install,
        "Share([\"x\"]) {\n  \"command\": \"shoal\",\n  \"args\": [\"proxy\", \"--\", \"x\"],\n  \"env\": {}\n}",
    );
    check(
        r#"{"command": "x", "args": []}"#,
        &install,
        r#"Share(["x"]) {"command": "shoal", "args": ["proxy", "--", "x"]}"#,
    );
    check(
        r#"{"command": "x", "args": ["a"]}"#,
        &install,
        r#"Share(["x", "a"]) {"command": "shoal", "args": ["proxy", "--", "x", "a"]}"#,
    );
    check(
        "{\"command\": \"a b\", \"args\": [\n    \"it's\"\n  ]}",
        &install,
        "Share([\"a b\", \"it's\"]) {\"command\": \"shoal\", \"args\": [\n    \"proxy\",\n    \"--\",\n    \"a b\",\n    \"it's\"\n  ]}",
    );
    // Undo reads the line as `shoal proxy` does: options, `--` or not.
    check(
        r#"{"command": "/opt/bin/shoal", "args": ["proxy", "--key-env", "DB", "node", "s.js"]}"#,
        &Mode::Undo,
        r#"Unshare(["node", "s.js"]) {"command": "node", "args": ["s.js"]}"#,
    );
    check(
        r#"{"command": "shoal", "args": ["proxy", "--", "x"], "env": {}}"#,
        &Mode::Undo,
        r#"Unshare(["x"]) {"command": "x", "args": [], "env": {}}"#,
    );
    check(
        r#"{"command": "shoal", "args": ["proxy", "--", "x"]}"#,
        &install,
        r#"Shared(["x"]) {"command": "shoal", "args": ["proxy", "--", "x"]}"#,
    );
    check(
        r#"{"command": "shoal", "args": ["proxy"]}"#,
        &install,
        r#"LeftAlone("a `shoal proxy` line shoal cannot read") {"command": "shoal", "args": ["proxy"]}"#,
    );
    check(
        r#"{"command": "shoal", "args": ["status"]}"#,
        &install,
        r#"Share(["shoal", "status"]) {"command": "shoal", "args": ["proxy", "--", "shoal", "status"]}"#,
    );
    check(
        r#"{"command": "x"}"#,
        &Mode::Undo,
        r#"NotShared {"command": "x"}"#,
    );
    check(
        r#"{"type": "sse", "url": "u"}"#,
        &install,
        r#"LeftAlone("sse server") {"type": "sse", "url": "u"}"#,
    );
    check(
        r#"{"httpUrl": "u"}"#,
        &install,
        r#"LeftAlone("remote server (url)") {"httpUrl": "u"}"#,
    );
    check(
        r#"{"env": {}}"#,
        &install,
        r#"LeftAlone("no command") {"env": {}}"#,
    );
    check(
        r#"{"command": "x", "args": ["a", 1]}"#,
        &install,
        "error: read the server `s`: `args` holds something other than strings",
    );
    check(
        r#"{"command": ["x"]}"#,
        &install,
        "error: read the server `s`: `command` is not a string",
    );
    check(
        r#"{"command": "x",,}"#,
        &install,
        "error: it is not valid JSON: line 1, column 38: expected a key in quotes or `}`",
    );
}

#[test]
fn only_the_named_servers_change() {
    let fixtures = fixtures();
    let (file, text) = &fixtures[2];
    let shared = plan(file, text, &install(), &["github".into()]).unwrap();
    let names: Vec<&str> = shared.rows.iter().map(|row| row.name.as_str()).collect();
    assert_eq!(names, ["github"]);
    assert!(shared.new.contains(
        "command = \"npx\"\nargs = [\"-y\", \"@modelcontextprotocol/server-filesystem\""
    ));
}

#[test]
fn claude_local_servers_of_directories_inside_the_project() {
    let text = r#"{"projects": {
        "/home/me/src/app/web": {"mcpServers": {"a": {"command": "x"}}},
        "/home/me/src/application": {"mcpServers": {"b": {"command": "y"}}}
    }}"#;
    let file = ConfigFile {
        host: Host::Claude,
        path: "/home/me/.claude.json".into(),
        format: Format::ClaudeUser {
            project: PROJECT.into(),
        },
    };
    let shared = plan(&file, text, &install(), &[]).unwrap();
    let rows: Vec<(&str, &str)> = shared
        .rows
        .iter()
        .map(|row| (row.scope.as_str(), row.name.as_str()))
        .collect();
    assert_eq!(
        rows,
        [("local: web", "a")],
        "a sibling with a common prefix is another project"
    );
}

#[test]
fn summaries() {
    let files = config_files(&Places {
        home: HOME.into(),
        project: PROJECT.into(),
        claude_config_dir: Some("/home/me/.config/claude".into()),
        codex_home: Some("/srv/codex".into()),
    });
    insta::assert_snapshot!(summary(&[], &files, &install(), false, Some(HOME)), @r"
    No MCP host config found. Looked for:
      ~/src/app/.mcp.json
      ~/.config/claude/.claude.json
      /srv/codex/config.toml
      ~/src/app/.codex/config.toml
      ~/.gemini/settings.json
      ~/src/app/.gemini/settings.json
      ~/.cursor/mcp.json
      ~/src/app/.cursor/mcp.json
      ~/src/app/.vscode/mcp.json
    ");
    let shared = plans(&install());
    insta::assert_snapshot!(summary(&shared, &files, &install(), false, Some(HOME)), @"
    15 servers in 7 files would be shared through shoal.
    Run this again with --write to write the change; each file is backed up first.
    ");
    insta::assert_snapshot!(summary(&shared, &files, &install(), true, Some(HOME)), @"
    15 servers in 7 files shared through shoal.
    Restart the hosts' sessions to use the new commands.
    ");
    let installed: Vec<Plan> = shared
        .iter()
        .map(|plan| super::plan(&plan.file, &plan.new, &install(), &[]).unwrap())
        .collect();
    insta::assert_snapshot!(summary(&installed, &files, &install(), false, Some(HOME)), @"Nothing to change: every stdio server found is shared already.");
    let unsharing = plans(&Mode::Undo);
    insta::assert_snapshot!(summary(&unsharing, &files, &Mode::Undo, false, Some(HOME)), @"
    1 server in 1 file would be unshared.
    Run this again with --write to write the change; each file is backed up first.
    ");
}

#[test]
fn writes_are_backed_up_keep_permissions_follow_symlinks_and_never_clobber() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("shoal-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dotfiles")).unwrap();
    let real = dir.join("dotfiles/claude.json");
    std::fs::write(&real, "old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join(".claude.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let backup = write::replace(&link, "old", "new").unwrap();
    assert_eq!(backup, dir.join("dotfiles/claude.json.shoal-backup"));
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "the link stays"
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), "old");
    for path in [&real, &backup] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }

    let error = write::replace(&link, "old", "newer").unwrap_err();
    assert!(
        format!("{error:#}").contains("it changed while shoal install ran"),
        "{error:#}"
    );
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        "new",
        "left as it was"
    );
    // A second write keeps the first backup and numbers its own.
    let second = write::replace(&link, "new", "newer").unwrap();
    assert_eq!(second, dir.join("dotfiles/claude.json.shoal-backup.1"));
    assert_eq!(std::fs::read_to_string(&second).unwrap(), "new");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), "old");
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("dotfiles"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 3, "no temporary files: {leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
