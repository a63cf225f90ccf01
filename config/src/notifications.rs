//! The notifications file (`--notify FILE` of `meridian up|dns|proxy|health`, `docs/dashboard.md`): which webhooks receive which
//! events. A file of its own, not part of the deployment configuration: that one is stored in the state
//! store and shown by the admin API, and webhook secrets must be in neither.
//!
//! ```toml
//! [[webhook]]
//! name = "ops"                                # for metrics and logs
//! url = "https://hooks.example/meridian"      # https; http only to a loopback address
//! secret-file = "/etc/meridian/webhook.key"   # or secret = "..." (at least 16 characters)
//! events = ["region-down", "region-up"]       # default: every event
//! timeout-ms = 5000                           # per attempt
//! max-attempts = 5                            # retries with exponential backoff
//! ca-file = "/etc/meridian/hooks-ca.pem"      # CAs to trust for https (default: the web PKI roots)
//! ```
//!
//! Validation collects every problem with its path (`webhook[1].url: ...`), as the main configuration's.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::Problem;

/// Every event a webhook can receive, as written in the file and sent in the payload's `event` field.
pub const EVENTS: &[&str] = &[
    "region-down",
    "region-up",
    "drill-start",
    "drill-end",
    "rrl-engaged",
    "rrl-subsided",
    "rate-limit-engaged",
    "rate-limit-subsided",
    "store-lost",
    "store-regained",
];

/// The shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// One webhook, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its name (metrics label).
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: String,
    /// The events it receives (names from [`EVENTS`]).
    pub events: Vec<String>,
    /// Deadline of one attempt, milliseconds.
    pub timeout_ms: u32,
    /// Attempts per event, the first included.
    pub max_attempts: u32,
    /// PEM file of the CA certificates to trust over https (`None`: the web PKI roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"..")
            .field("events", &self.events)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Webhook {
    /// Whether it receives `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

/// The notifications file, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notifications {
    /// The webhooks, in file order.
    pub webhooks: Vec<Webhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    webhook: Vec<RawWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWebhook {
    name: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    secret_file: Option<String>,
    events: Option<Vec<String>>,
    timeout_ms: Option<i64>,
    max_attempts: Option<i64>,
    ca_file: Option<String>,
}

impl Notifications {
    /// Reads and validates `path`; relative `secret-file`s are relative to its directory. Every problem is
    /// reported, each with its path.
    pub fn from_file(path: &Path) -> Result<Self, Vec<Problem>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Problem {
                path: path.display().to_string(),
                message: format!("cannot read: {e}"),
            }]
        })?;
        Self::from_toml_str(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Validates `text`; `base` is where relative secret files are.
    pub fn from_toml_str(text: &str, base: &Path) -> Result<Self, Vec<Problem>> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            vec![Problem {
                path: "(file)".to_owned(),
                message: e.message().to_owned(),
            }]
        })?;
        let mut problems = Vec::new();
        let mut webhooks = Vec::new();
        for (i, w) in raw.webhook.into_iter().enumerate() {
            let hook = webhook(i, w, base, &webhooks, &mut problems);
            webhooks.push(hook);
        }
        if problems.is_empty() {
            Ok(Self { webhooks })
        } else {
            Err(problems)
        }
    }
}

/// Checks the `i`th webhook (`earlier`: those before it), reporting its problems; what is wrong is left
/// empty or at its default.
fn webhook(
    i: usize,
    w: RawWebhook,
    base: &Path,
    earlier: &[Webhook],
    problems: &mut Vec<Problem>,
) -> Webhook {
    let at = |field: &str| format!("webhook[{i}].{field}");
    let name = name(w.name, &at("name"), problems);
    if !name.is_empty() && earlier.iter().any(|o| o.name == name) {
        push(
            problems,
            at("name"),
            format!("{name:?} is used by an earlier webhook"),
        );
    }
    let url = match w.url {
        Some(u) => match check_url(&u) {
            Ok(()) => u,
            Err(m) => {
                push(problems, at("url"), m);
                String::new()
            }
        },
        None => {
            push(problems, at("url"), "is required".to_owned());
            String::new()
        }
    };
    let secret = secret(w.secret, w.secret_file, base, &at, problems);
    let events = events(w.events, i, problems);
    let mut int = |v: Option<i64>, default: u32, lo: u32, hi: u32, field: &str| match v {
        None => default,
        Some(n) if (i64::from(lo)..=i64::from(hi)).contains(&n) => n as u32,
        Some(n) => {
            push(problems, at(field), format!("{n} is out of range ({lo} to {hi})"));
            default
        }
    };
    let timeout_ms = int(w.timeout_ms, 5000, 100, 60_000, "timeout-ms");
    let max_attempts = int(w.max_attempts, 5, 1, 20, "max-attempts");
    let ca_file = w.ca_file.map(|f| base.join(f));
    if let Some(f) = &ca_file
        && !f.is_file()
    {
        push(
            problems,
            at("ca-file"),
            format!("{} is not a readable file", f.display()),
        );
    }
    Webhook {
        name,
        url,
        secret,
        events,
        timeout_ms,
        max_attempts,
        ca_file,
    }
}

/// `name`: 1 to 64 of a-z, A-Z, 0-9, - and _ (a metrics label).
fn name(name: Option<String>, path: &str, problems: &mut Vec<Problem>) -> String {
    match name {
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            n
        }
        Some(n) => {
            push(
                problems,
                path.to_owned(),
                format!("{n:?}: 1 to 64 of a-z, A-Z, 0-9, - and _"),
            );
            String::new()
        }
        None => {
            push(problems, path.to_owned(), "is required".to_owned());
            String::new()
        }
    }
}

/// `secret` or `secret-file` (relative to `base`), one of them, of at least [`MIN_SECRET_LEN`] characters.
fn secret(
    secret: Option<String>,
    secret_file: Option<String>,
    base: &Path,
    at: &dyn Fn(&str) -> String,
    problems: &mut Vec<Problem>,
) -> String {
    let secret = match (secret, secret_file) {
        (Some(_), Some(_)) => {
            push(
                problems,
                at("secret"),
                "give secret or secret-file, not both".to_owned(),
            );
            None
        }
        (Some(s), None) => Some((s, at("secret"))),
        (None, Some(f)) => {
            let p = base.join(&f);
            match std::fs::read_to_string(&p) {
                Ok(s) => Some((s.trim().to_owned(), at("secret-file"))),
                Err(e) => {
                    push(
                        problems,
                        at("secret-file"),
                        format!("cannot read {}: {e}", p.display()),
                    );
                    None
                }
            }
        }
        (None, None) => {
            push(
                problems,
                at("secret"),
                "is required (secret or secret-file)".to_owned(),
            );
            None
        }
    };
    match secret {
        Some((s, _)) if s.len() >= MIN_SECRET_LEN => s,
        Some((_, path)) => {
            push(
                problems,
                path,
                format!(
                    "the secret must have at least {MIN_SECRET_LEN} characters (try: openssl rand -hex 32)"
                ),
            );
            String::new()
        }
        None => String::new(),
    }
}

/// `events`: names from [`EVENTS`]; left out, every event.
fn events(events: Option<Vec<String>>, i: usize, problems: &mut Vec<Problem>) -> Vec<String> {
    match events {
        None => EVENTS.iter().map(|e| (*e).to_owned()).collect(),
        Some(list) if list.is_empty() => {
            push(
                problems,
                format!("webhook[{i}].events"),
                "is empty (leave it out for every event)".to_owned(),
            );
            Vec::new()
        }
        Some(list) => {
            for (j, e) in list.iter().enumerate() {
                if !EVENTS.contains(&e.as_str()) {
                    push(
                        problems,
                        format!("webhook[{i}].events[{j}]"),
                        format!("unknown event {e:?} (known: {})", EVENTS.join(", ")),
                    );
                }
            }
            list
        }
    }
}

fn push(problems: &mut Vec<Problem>, path: String, message: String) {
    problems.push(Problem { path, message });
}

/// `https://HOST[:PORT]/PATH`, or `http://` to a loopback address (tests, a local relay).
fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL (https://host/path)"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "{url:?}: no host (or user information, which is not allowed)"
        ));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(
            authority,
            |(h, port)| {
                if port.parse::<u16>().is_err() { "" } else { h }
            },
        )
    };
    if host.is_empty() {
        return Err(format!("{url:?}: not a host and port"));
    }
    match scheme {
        "https" => Ok(()),
        "http" => {
            let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "{url:?}: plain http is only allowed to a loopback address; use https"
                ))
            }
        }
        other => Err(format!("{url:?}: scheme {other:?} (use https)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Notifications, Vec<String>> {
        Notifications::from_toml_str(text, Path::new("/nonexistent"))
            .map_err(|ps| ps.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_complete_file() {
        let n = parse(
            r#"
            [[webhook]]
            name = "ops"
            url = "https://hooks.example/meridian"
            secret = "0123456789abcdef"
            events = ["region-down", "store-lost"]
            [[webhook]]
            name = "local"
            url = "http://127.0.0.1:8080/x"
            secret = "0123456789abcdef"
            max-attempts = 2
            "#,
        )
        .unwrap();
        assert_eq!(n.webhooks.len(), 2);
        assert!(n.webhooks[0].wants("region-down") && !n.webhooks[0].wants("region-up"));
        assert_eq!(n.webhooks[1].events.len(), EVENTS.len());
        assert_eq!((n.webhooks[1].timeout_ms, n.webhooks[1].max_attempts), (5000, 2));
        assert!(
            !format!("{:?}", n.webhooks[0]).contains("0123456789abcdef"),
            "Debug hides the secret"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let errors = parse(
            r#"
            [[webhook]]
            name = "ops"
            url = "http://hooks.example/meridian"
            secret = "short"
            events = ["region-down", "regoin-up"]
            timeout-ms = 10
            [[webhook]]
            name = "ops"
            url = "ftp://x"
            max-attempts = 0
            "#,
        )
        .unwrap_err();
        let want = [
            "webhook[0].url: \"http://hooks.example/meridian\": plain http is only allowed to a loopback address; use https",
            "webhook[0].secret: the secret must have at least 16 characters (try: openssl rand -hex 32)",
            "webhook[0].events[1]: unknown event \"regoin-up\"",
            "webhook[0].timeout-ms: 10 is out of range (100 to 60000)",
            "webhook[1].name: \"ops\" is used by an earlier webhook",
            "webhook[1].url: \"ftp://x\": scheme \"ftp\" (use https)",
            "webhook[1].secret: is required (secret or secret-file)",
            "webhook[1].max-attempts: 0 is out of range (1 to 20)",
        ];
        for w in want {
            assert!(
                errors.iter().any(|e| e.starts_with(w)),
                "missing {w:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
    }

    #[test]
    fn unknown_fields_and_missing_secret_files_are_errors() {
        let e = parse(
            "[[webhook]]\nname = \"a\"\nurl = \"https://x/\"\nsecret = \"0123456789abcdef\"\nsecrte = 1\n",
        )
        .unwrap_err();
        assert!(e[0].contains("unknown field `secrte`"), "{e:?}");
        let e = parse("[[webhook]]\nname = \"a\"\nurl = \"https://x/\"\nsecret-file = \"nope.key\"\n")
            .unwrap_err();
        assert!(
            e[0].starts_with("webhook[0].secret-file: cannot read /nonexistent/nope.key"),
            "{e:?}"
        );
        let e = parse(
            "[[webhook]]\nname = \"a\"\nurl = \"https://x/\"\nsecret = \"0123456789abcdef\"\nca-file = \"ca.pem\"\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            ["webhook[0].ca-file: /nonexistent/ca.pem is not a readable file"]
        );
    }

    #[test]
    fn urls() {
        for ok in [
            "https://h/",
            "https://h:8443/p?q",
            "http://127.0.0.1:9/x",
            "http://[::1]:9/",
            "http://localhost/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "h/x",
            "https:///x",
            "https://u@h/",
            "http://10.0.0.1/",
            "https://h:port/",
            "gopher://h/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
