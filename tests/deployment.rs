//! The systemd template unit of docs/deployment.md, as written there and in
//! contrib/cssc@.service: `systemd-analyze verify` accepts its instance `cssc@db-dr`
//! without a warning (no PID-1 systemd is needed for that), with a solution binary in
//! place of /usr/lib/cssc/db-dr, and that binary takes the unit's command lines.
//! Running it under systemd is not tested here.

use std::path::Path;
use std::process::Command;

/// The unit file in docs/deployment.md (its ```ini block).
fn documented_unit() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deployment.md"))
        .expect("docs/deployment.md");
    let start = doc.find("```ini\n").expect("an ini block") + "```ini\n".len();
    let end = start + doc[start..].find("```").expect("its end");
    doc[start..end].to_string()
}

/// `systemd-analyze verify` of `unit`: (success, what it said).
fn verify(dir: &Path, unit: &str) -> (bool, String) {
    let path = dir.join("cssc@db-dr.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian: systemd)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn the_documented_systemd_unit_verifies_without_warnings() {
    let binary = format!(
        "{} mirror-freeze-switch",
        env!("CARGO_BIN_EXE_cssc-solutions")
    );
    let template = documented_unit();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/cssc@.service"
    ))
    .expect("contrib/cssc@.service");
    assert_eq!(template, shipped, "the documented unit is the shipped one");
    let unit = template.replace("/usr/lib/cssc/%i", &binary);
    assert!(unit.contains(&binary), "the unit runs the solution binary");
    let dir = std::env::temp_dir().join(format!("cssc-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, said) = verify(&dir, &unit);
    assert!(ok && said.is_empty(), "{said}");
    // The check can fail: a misspelt key is a warning.
    let (_, said) = verify(&dir, &unit.replace("ProtectSystem=", "ProtectSytem="));
    assert!(said.contains("Unknown key 'ProtectSytem'"), "{said}");

    // The binary takes the unit's command lines: with a missing run-time file, both
    // say so (exit 2, which the unit does not restart), not a usage error.
    for line in unit.lines().filter_map(|l| {
        l.strip_prefix("ExecStartPre=")
            .or_else(|| l.strip_prefix("ExecStart="))
    }) {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.replace("/etc/cssc/%i.toml", "/nonexistent/db-dr.toml"))
            .collect();
        let out = Command::new(&words[0])
            .args(&words[1..])
            .env("STATE_DIRECTORY", &dir)
            .output()
            .expect("run");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {said}");
        assert!(said.contains("/nonexistent/db-dr.toml"), "{line}: {said}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Under systemd, stderr is the journal's stream (`JOURNAL_STREAM` names it): every
/// line starts with its syslog priority, so `journalctl -p warning` shows the errors
/// and warnings. Redirected elsewhere, the lines are as they are on a terminal.
#[test]
fn under_the_journal_each_line_carries_its_priority() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("cssc-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("unreachable.toml");
    std::fs::write(
        &config,
        "[storage.siteA]\nendpoint = \"unix:/nonexistent/siteA.qmp\"\n\
         [storage.siteB]\nendpoint = \"unix:/nonexistent/siteB.qmp\"\n",
    )
    .unwrap();
    let run = |journal: bool| {
        let path = dir.join(format!("stderr-{journal}"));
        let stderr = std::fs::File::create(&path).unwrap();
        let meta = stderr.metadata().unwrap();
        let stream = if journal {
            format!("{}:{}", meta.dev(), meta.ino())
        } else {
            format!("{}:{}", meta.dev(), meta.ino() + 1)
        };
        let status = Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
            .args(["mirror-freeze-switch", "run", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.join(format!("state-{journal}")))
            .env("JOURNAL_STREAM", stream)
            .stderr(stderr)
            .status()
            .expect("run");
        assert_eq!(status.code(), Some(3), "cannot start: exit 3");
        std::fs::read_to_string(&path).unwrap()
    };
    let said = run(true);
    assert!(!said.is_empty());
    for line in said.lines() {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "a line without its priority: {line}"
        );
    }
    assert!(
        said.lines()
            .any(|l| l.starts_with("<3>") && l.contains("ERROR")),
        "{said}"
    );
    let said = run(false);
    assert!(said.lines().all(|l| !l.starts_with('<')), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without `--config`, `run` and `cleanup` read /etc/cssc/SESSION.toml when it exists
/// (`CSSC_CONFIG_DIR` stands in for /etc/cssc here), as the template unit expects.
#[test]
fn the_run_time_file_defaults_to_the_session_s_file_in_etc_cssc() {
    let dir = std::env::temp_dir().join(format!("cssc-etc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mirror-freeze-switch.toml"),
        "[storage.siteA]\nendpoint = \"unix:/nonexistent/from-etc-siteA.qmp\"\n\
         [storage.siteB]\nendpoint = \"unix:/nonexistent/from-etc-siteB.qmp\"\n",
    )
    .unwrap();
    let run = |config_dir: &Path, command: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cssc-solutions"));
        c.args(["mirror-freeze-switch", command]);
        if command == "run" {
            c.arg("--state-dir").arg(dir.join("state"));
        }
        c.env("CSSC_CONFIG_DIR", config_dir).output().expect("run")
    };
    for command in ["run", "cleanup"] {
        let out = run(&dir, command);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{command}: {said}");
        assert!(said.contains("from-etc-siteA.qmp"), "{command}: {said}");
        // No file there: the document's own storages.
        let out = run(&dir.join("empty"), command);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!said.contains("from-etc-"), "{command}: {said}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The run-time file of docs/deployment.md (its first ```toml block) is one `run`
/// accepts: `check-config` parses it and checks it against the session (its
/// storages across the network have TLS, as the secure default asks), then stops at
/// the first thing this machine lacks (the certificates named there): exit 3, not 2.
#[test]
fn the_documented_run_time_file_is_accepted_up_to_the_storages() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deployment.md"))
        .expect("docs/deployment.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("its end");
    let dir = std::env::temp_dir().join(format!("cssc-doc-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("db-dr.toml");
    // `check-config` of `text`: its exit code and what it said.
    let check = |text: &str| {
        std::fs::write(&config, text).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
            .args(["mirror-freeze-switch", "check-config", "--config"])
            .arg(&config)
            .output()
            .expect("check-config");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, said) = check(&doc[start..end]);
    assert_eq!(code, Some(3), "{said}");
    assert!(
        said.contains("storage siteB: cannot read /etc/cssc/pki/cssc-cert.pem"),
        "{said}"
    );
    // Without its [tls] tables the same file is refused: the secure default.
    let plain: String = doc[start..end]
        .split("\n\n")
        .filter(|block| !block.contains(".tls]"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let (code, said) = check(&plain);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("is reached over the network without TLS"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
