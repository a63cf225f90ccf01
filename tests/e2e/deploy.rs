//! The deployment files in `deploy/` stay true to the binaries: every flag a systemd unit passes exists
//! (`meridian ROLE --help`, `etcd --help`), and every variable it uses is set by the environment files it
//! reads.

use std::path::Path;
use std::process::Command;

use crate::support::meridian;

fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The unit's `ExecStart` with its continuation lines joined.
fn exec_start(unit: &str) -> String {
    let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
    let mut line = String::new();
    let mut inside = false;
    for l in text.lines() {
        if l.starts_with("ExecStart=") {
            inside = true;
        }
        if inside {
            line.push_str(l.trim_end_matches('\\'));
            line.push(' ');
            if !l.ends_with('\\') {
                break;
            }
        }
    }
    line.trim_start_matches("ExecStart=").to_owned()
}

fn env_files(unit: &str) -> String {
    let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("EnvironmentFile=/etc/meridian/"))
        .map(|f| std::fs::read_to_string(deploy().join("env").join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_flag_and_variable_of_the_units_exists() {
    for unit in [
        "meridian-dns.service",
        "meridian-proxy.service",
        "meridian-health.service",
        "meridian-etcd.service",
        "meridian-etcd-zone.service",
    ] {
        let exec = exec_start(unit);
        let env = env_files(unit);
        // `$VAR` (unbraced) stands for zero or more words (systemd splits it): its flags are checked too.
        let mut words: Vec<&str> = Vec::new();
        for w in exec.split_whitespace() {
            match w.strip_prefix('$').filter(|v| !v.starts_with('{')) {
                Some(var) => {
                    let value = env
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("{var}=")))
                        .unwrap_or_else(|| panic!("{unit}: ${var} is set by none of its environment files"));
                    words.extend(value.split_whitespace());
                }
                None => words.push(w),
            }
        }
        let help = if words[0].ends_with("/meridian") {
            let out = meridian().args([words[1], "--help"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            let out = Command::new("etcd").arg("--help").output().unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            assert!(
                help.contains(&format!("{flag} "))
                    || help.contains(&format!("{flag}\n"))
                    || help.contains(&format!("{flag}="))
                    || help.contains(&format!("{flag} '")),
                "{unit}: {flag} is not a flag of {}",
                words[0]
            );
        }
        for var in exec.split("${").skip(1).map(|s| s.split('}').next().unwrap()) {
            assert!(
                env.lines().any(|l| l.starts_with(&format!("{var}="))),
                "{unit}: ${{{var}}} is set by none of its environment files"
            );
        }
    }
}

#[test]
fn the_example_notifications_file_is_valid() {
    // Its secret files are the deployment's own: made up here, where the file names them.
    let text = std::fs::read_to_string(deploy().join("notify.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut local = text.clone();
    for name in ["webhook-oncall.key", "webhook-log.key"] {
        let path = dir.path().join(name);
        std::fs::write(&path, "a-secret-of-at-least-16-characters\n").unwrap();
        local = local.replace(&format!("/etc/meridian/{name}"), path.to_str().unwrap());
    }
    assert_ne!(local, text, "the example names its secret files");
    let parsed = meridian_config::notifications::Notifications::from_toml_str(&local, dir.path())
        .unwrap_or_else(|problems| panic!("deploy/notify.toml: {problems:?}"));
    assert_eq!(parsed.webhooks.len(), 2);
    assert!(parsed.webhooks[0].wants("region-down") && !parsed.webhooks[0].wants("drill-start"));
    assert!(parsed.webhooks[1].wants("rate-limit-engaged"));
}
