//! `shoal install` as a user runs it: on a home and a project holding the files real hosts
//! wrote (`claude mcp add`, `codex mcp add`, `gemini mcp add`), from a dry run to `--write`, a
//! second run, and `--undo --write`.

use std::path::{Path, PathBuf};
use std::process::Output;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/install/fixtures");

/// A home and a project (a git checkout) with each host's files where the host keeps them.
struct Setup {
    base: PathBuf,
    home: PathBuf,
    project: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let base =
            std::env::temp_dir().join(format!("shoal-install-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let home = base.join("home");
        let project = base.join("home/src/app");
        std::fs::create_dir_all(project.join(".git")).unwrap();
        let project = std::fs::canonicalize(project).unwrap();
        let home = std::fs::canonicalize(home).unwrap();
        let setup = Setup {
            base,
            home,
            project,
        };
        let claude = std::fs::read_to_string(Path::new(FIXTURES).join("claude-user.claude.json"))
            .unwrap()
            .replace("/home/me/src/app", &setup.project.to_string_lossy());
        setup.put(&setup.home.join(".claude.json"), &claude);
        for (fixture, path) in [
            ("claude-project.mcp.json", setup.project.join(".mcp.json")),
            (
                "codex-user.config.toml",
                setup.home.join(".codex/config.toml"),
            ),
            (
                "gemini-user.settings.json",
                setup.home.join(".gemini/settings.json"),
            ),
        ] {
            let text = std::fs::read_to_string(Path::new(FIXTURES).join(fixture)).unwrap();
            setup.put(&path, &text);
        }
        setup
    }

    fn put(&self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![
            self.home.join(".claude.json"),
            self.project.join(".mcp.json"),
            self.home.join(".codex/config.toml"),
            self.home.join(".gemini/settings.json"),
        ]
    }

    fn contents(&self) -> Vec<String> {
        self.files()
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap())
            .collect()
    }

    /// `shoal install <args>` from a directory inside the project, with this home.
    fn install(&self, args: &[&str]) -> Output {
        let cwd = self.project.join("src");
        std::fs::create_dir_all(&cwd).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("install")
            .args(args)
            .current_dir(cwd)
            .env("HOME", &self.home)
            .env("PATH", "/usr/bin:/bin")
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("CODEX_HOME")
            .env("SHOAL_CONFIG", "/nonexistent/shoal-tests/config.toml")
            .output()
            .unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn dry_run_then_write_then_nothing_then_undo() {
    let setup = Setup::new("cycle");
    let original = setup.contents();

    let dry = setup.install(&["--shoal", "shoal"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    let out = text(&dry.stdout);
    for wanted in [
        "Claude Code · ~/.claude.json",
        "+      \"command\": \"shoal\",",
        "+env_vars = [\"SHOAL_RUNTIME_DIR\"",
        "left alone  sse server",
        "would be shared through shoal",
    ] {
        assert!(out.contains(wanted), "{wanted:?} missing from:\n{out}");
    }
    assert!(
        !out.contains("elsewhere"),
        "another project's local servers are not shown:\n{out}"
    );
    assert_eq!(setup.contents(), original, "a dry run writes nothing");

    let write = setup.install(&["--shoal", "shoal", "--write"]);
    assert_eq!(write.status.code(), Some(0), "{}", text(&write.stderr));
    let shared = setup.contents();
    for ((path, before), after) in setup.files().iter().zip(&original).zip(&shared) {
        assert_ne!(before, after, "{} was not changed", path.display());
        let mut backup = path.clone().into_os_string();
        backup.push(".shoal-backup");
        assert_eq!(&std::fs::read_to_string(backup).unwrap(), before);
    }
    let claude: serde_json::Value = serde_json::from_str(&shared[0]).unwrap();
    let project = setup.project.to_string_lossy();
    assert_eq!(
        claude["projects"][&*project]["mcpServers"]["memory"]["args"],
        serde_json::json!([
            "proxy",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-memory"
        ])
    );

    let again = setup.install(&["--shoal", "shoal", "--write"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout)
            .contains("Nothing to change: every stdio server found is shared already."),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(setup.contents(), shared, "a second run changes nothing");

    let undo = setup.install(&["--undo", "--write"]);
    assert_eq!(undo.status.code(), Some(0), "{}", text(&undo.stderr));
    assert_eq!(setup.contents(), original, "undo gives back every byte");
}

#[test]
fn the_default_command_is_this_binary_unless_it_is_shoal_on_path() {
    let setup = Setup::new("command");
    let write = setup.install(&["--host", "codex", "--write"]);
    assert_eq!(write.status.code(), Some(0), "{}", text(&write.stderr));
    let config = std::fs::read_to_string(setup.home.join(".codex/config.toml")).unwrap();
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_shoal")).unwrap();
    assert!(
        config.contains(&format!("command = \"{}\"", binary.display())),
        "not on PATH: the absolute path\n{config}"
    );
    assert_eq!(
        std::fs::read_to_string(setup.project.join(".mcp.json")).unwrap(),
        std::fs::read_to_string(Path::new(FIXTURES).join("claude-project.mcp.json")).unwrap(),
        "--host codex leaves the other hosts' files alone"
    );

    let undo = setup.install(&["--undo", "--write"]);
    assert_eq!(undo.status.code(), Some(0), "{}", text(&undo.stderr));
    let bin_dir = binary.parent().unwrap().to_string_lossy().into_owned();
    let on_path = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["install", "--host", "codex"])
        .current_dir(&setup.project)
        .env("HOME", &setup.home)
        .env("PATH", format!("{bin_dir}:/usr/bin:/bin"))
        .env_remove("CODEX_HOME")
        .output()
        .unwrap();
    assert!(
        text(&on_path.stdout).contains("+command = \"shoal\""),
        "{}",
        text(&on_path.stdout)
    );
}

#[test]
fn a_broken_file_is_named_and_the_others_are_still_done() {
    let setup = Setup::new("broken");
    setup.put(
        &setup.home.join(".gemini/settings.json"),
        "{\n  \"mcpServers\": {\n",
    );
    let write = setup.install(&["--shoal", "shoal", "--write"]);
    assert_eq!(write.status.code(), Some(1), "{}", text(&write.stdout));
    let stderr = text(&write.stderr);
    let gemini = setup.home.join(".gemini/settings.json");
    assert!(
        stderr.contains(&format!(
            "shoal: failed to read {}: it is not valid JSON: line 3, column 1:",
            gemini.display()
        )),
        "{stderr}"
    );
    assert!(
        std::fs::read_to_string(setup.project.join(".mcp.json"))
            .unwrap()
            .contains("\"proxy\""),
        "the readable files are written"
    );
}

#[test]
fn no_configs_says_where_it_looked() {
    let setup = Setup::new("none");
    for path in setup.files() {
        std::fs::remove_file(path).unwrap();
    }
    let dry = setup.install(&[]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    let out = text(&dry.stdout);
    assert!(
        out.starts_with("No MCP host config found. Looked for:\n"),
        "{out}"
    );
    assert!(out.contains("  ~/.codex/config.toml\n"), "{out}");
}

#[test]
fn a_shoal_command_of_another_name_is_refused_and_a_broken_lone_file_is_not_called_missing() {
    let setup = Setup::new("refusals");
    let output = setup.install(&["--shoal", "/opt/shoal-0.2/bin/shoal-0.2", "--write"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("its file name must be `shoal`"),
        "{}",
        text(&output.stderr)
    );
    for path in setup.files() {
        std::fs::remove_file(path).unwrap();
    }
    setup.put(&setup.project.join(".mcp.json"), "");
    let output = setup.install(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        !text(&output.stdout).contains("No MCP host config found"),
        "{}",
        text(&output.stdout)
    );
    assert!(
        text(&output.stderr).contains("it is not valid JSON"),
        "{}",
        text(&output.stderr)
    );
}
