//! fwd-gen: fwd's man pages and shell completions, generated from the same clap definitions
//! (`fwd::cli::Cli`) that the binary parses, so they cannot drift from the real interface.
//!
//!   fwd-gen DIR    writes DIR/man/fwd.8, DIR/man/fwd-SUBCOMMAND.8 (one per subcommand, nested
//!                  ones as fwd-rules-list.8) and DIR/completions/{fwd.bash,_fwd,fwd.fish}
//!
//! fwd.toml(5), the configuration file, is written by hand: `docs/fwd.toml.5`.

#![deny(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// The man pages: (file name, roff text).
fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = fwd::cli::Cli::command();
    cmd.build();
    let mut pages = Vec::new();
    render(&cmd, "fwd", &mut pages)?;
    Ok(pages)
}

fn render(cmd: &clap::Command, title: &str, pages: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(title)
        .section("8")
        .manual("fwd manual")
        .source(format!("fwd {}", env!("CARGO_PKG_VERSION")))
        .render(&mut roff)?;
    pages.push((format!("{title}.8"), roff));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        render(sub, &format!("{title}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

/// The completion scripts: (file name, text), named as bash-completion, zsh and fish look for them.
fn completions() -> Vec<(String, Vec<u8>)> {
    [
        (Shell::Bash, "fwd.bash"),
        (Shell::Zsh, "_fwd"),
        (Shell::Fish, "fwd.fish"),
    ]
    .into_iter()
    .map(|(shell, file)| {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut fwd::cli::Cli::command(), "fwd", &mut out);
        (file.to_string(), out)
    })
    .collect()
}

fn write_all(dir: &Path, files: &[(String, Vec<u8>)]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: fwd-gen DIR   (writes DIR/man/*.8 and DIR/completions/*)");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let result = man_pages()
        .and_then(|pages| write_all(&dir.join("man"), &pages))
        .and_then(|()| write_all(&dir.join("completions"), &completions()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fwd-gen: error: {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page<'a>(pages: &'a [(String, Vec<u8>)], name: &str) -> &'a str {
        let (_, text) = pages
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no man page {name}"));
        std::str::from_utf8(text).unwrap()
    }

    /// roff escapes '-' as '\-'; undo it to search for flags.
    fn plain(roff: &str) -> String {
        roff.replace("\\-", "-")
    }

    #[test]
    fn every_subcommand_has_a_page_and_fwd_8_lists_it() {
        let pages = man_pages().unwrap();
        let top = plain(page(&pages, "fwd.8"));
        assert!(top.starts_with(".ie") || top.contains(".TH fwd 8"), "{top}");
        assert!(top.contains(".TH fwd 8"), "section 8 title: {top}");
        let cmd = fwd::cli::Cli::command();
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = sub.get_name();
            assert!(top.contains(name), "fwd.8 does not mention {name}");
            let text = plain(page(&pages, &format!("fwd-{name}.8")));
            assert!(
                text.contains(&format!(".TH fwd-{name} 8")),
                "fwd-{name}.8 title"
            );
            for arg in sub.get_arguments() {
                if let Some(long) = arg.get_long() {
                    assert!(
                        text.contains(&format!("--{long}")),
                        "fwd-{name}.8 does not document --{long}"
                    );
                }
            }
        }
        // nested subcommands get their own pages too
        page(&pages, "fwd-rules-list.8");
        page(&pages, "fwd-rules-print.8");
    }

    #[test]
    fn completions_know_the_subcommands_and_flags() {
        let files = completions();
        assert_eq!(files.len(), 3);
        for (name, text) in &files {
            let text = std::str::from_utf8(text).unwrap();
            for word in [
                "check",
                "replay",
                "reload",
                "conntrack",
                "stats",
                "--config",
            ] {
                assert!(text.contains(word), "{name} does not complete {word}");
            }
        }
    }

    #[test]
    fn writes_into_the_directory_and_refuses_an_unwritable_one() {
        let dir = std::env::temp_dir().join(format!("fwd-gen-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_all(&dir.join("man"), &man_pages().unwrap()).unwrap();
        assert!(dir.join("man/fwd.8").is_file());
        assert!(dir.join("man/fwd-conntrack.8").is_file());
        // a file where the directory should be: an error, not a panic
        std::fs::write(dir.join("blocked"), b"").unwrap();
        assert!(write_all(&dir.join("blocked"), &completions()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// fwd.toml(5) is written by hand: every key and section that configs/fwd.example.toml
    /// shows (commented-out ones included) must be documented in it, as `.BR key` or `[section]`.
    #[test]
    fn fwd_toml_5_documents_every_key_of_the_example_config() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let example = std::fs::read_to_string(root.join("configs/fwd.example.toml")).unwrap();
        let man = std::fs::read_to_string(root.join("docs/fwd.toml.5")).unwrap();
        let keys = documented_keys(&example);
        assert!(
            keys.len() >= 20,
            "found only {keys:?} in the example config"
        );
        let missing: Vec<_> = keys
            .iter()
            .filter(|k| !mentions(&man, k))
            .cloned()
            .collect();
        assert!(missing.is_empty(), "docs/fwd.toml.5 lacks {missing:?}");
        // and the check can fail
        assert!(!mentions(&man, "no_such_key"));
    }

    /// `[section]` headers and `key =` (also `# key =`) of a TOML file.
    fn documented_keys(toml: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for line in toml.lines() {
            let line = line.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
            if let Some(section) = line.strip_prefix('[') {
                if let Some(end) = section.find(']') {
                    keys.push(format!("[{}]", &section[..end]));
                }
            } else if let Some((key, _)) = line.split_once(" = ") {
                if !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                {
                    keys.push(key.to_string());
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    fn mentions(man: &str, key: &str) -> bool {
        if key.starts_with('[') {
            // [ports.a] is documented under the heading "[ports.a], [ports.b]"
            man.lines().any(|l| l.starts_with(".SH") && l.contains(key))
                || man.contains(&format!(".B {key}"))
        } else {
            man.lines().any(|l| {
                (l.starts_with(".BR ") || l.starts_with(".B "))
                    && l.split([' ', '"']).any(|w| w == key)
            })
        }
    }
}
