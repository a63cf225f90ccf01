//! `meridian config get | diff | apply` against the embedded store and a real etcd.

use meridian_store::schema::{DOC_SCHEMA, DrainOverride, encode};
use meridian_store::testing::EtcdServer;
use meridian_store::{EmbeddedStore, Keys, KvStore};

use crate::support::{example, meridian, run, stderr, stdout};

fn example_text() -> String {
    std::fs::read_to_string(example()).unwrap()
}

/// The same operator session against any store, selected by `store_args`.
fn operator_session(store_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let with = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(store_args);
        run(&all)
    };
    // Nothing stored yet.
    let out = with(&["config", "get"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no configuration in"), "{}", stderr(&out));

    // Apply the example; get returns it byte for byte.
    let ex = example();
    let out = with(&["config", "apply", ex.to_str().unwrap(), "--author", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("applied") && stderr(&out).contains("(was none)"),
        "{}",
        stderr(&out)
    );
    let out = with(&["config", "get"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), example_text());
    let header = stderr(&out);
    assert!(header.contains("applied by alice"), "{header}");
    let rev: i64 = header
        .split("revision ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // Diff: nothing, then a change.
    let out = with(&["config", "diff", ex.to_str().unwrap(), "--exit-code"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no differences"));
    let changed = dir.path().join("changed.toml");
    std::fs::write(&changed, example_text().replace("ttl = 60", "ttl = 90")).unwrap();
    let out = with(&["config", "diff", changed.to_str().unwrap(), "--exit-code"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("-ttl = 60\n+ttl = 90"), "{}", stdout(&out));

    // Bob applies against the revision he read.
    let bob = dir.path().join("bob.toml");
    std::fs::write(&bob, example_text().replace("ttl = 30", "ttl = 15")).unwrap();
    let out = with(&[
        "config",
        "apply",
        bob.to_str().unwrap(),
        "--author",
        "bob",
        "--expect-revision",
        &rev.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Alice, still on the old revision, is refused, shown what her file would change now, and nothing moves.
    let out = with(&[
        "config",
        "apply",
        changed.to_str().unwrap(),
        "--author",
        "alice",
        "--expect-revision",
        &rev.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("changed since revision {rev}")) && err.contains("applied by bob"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("-ttl = 15\n+ttl = 30"),
        "her file would undo Bob's change: {}",
        stdout(&out)
    );
    assert!(stdout(&with(&["config", "get"])).contains("ttl = 15"));

    // An invalid file is refused with its problems; nothing is written.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        example_text().replace(r#"regions = ["waw", "fra"]"#, r#"regions = ["waw", "frx"]"#),
    )
    .unwrap();
    let out = with(&["config", "apply", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("services.files.regions[1]: unknown region \"frx\""),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&with(&["config", "get"])).contains("ttl = 15"));

    // Dry run writes nothing.
    let out = with(&["config", "apply", changed.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success());
    assert!(stdout(&with(&["config", "get"])).contains("ttl = 15"));
}

async fn audit_authors(store: &dyn KvStore) -> Vec<String> {
    let keys = Keys::new("/meridian/").unwrap();
    store
        .list(&keys.audit_prefix())
        .await
        .unwrap()
        .kvs
        .iter()
        .map(|kv| {
            serde_json::from_slice::<serde_json::Value>(&kv.value).unwrap()["who"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    operator_session(&["--data-dir", data.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(&data).unwrap();
        assert_eq!(audit_authors(&store).await, ["alice", "bob"]);
        // While a process holds the directory, the CLI says so instead of corrupting it.
        let out = run(&["config", "get", "--data-dir", data.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("in use by another Meridian process"),
            "{}",
            stderr(&out)
        );
    });
}

/// Without --author: `$MERIDIAN_AUTHOR`, else the OS user at the host — named even when `$USER` is unset.
#[test]
fn the_default_author_is_never_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let apply = |file: &std::path::Path, author: Option<&str>| {
        let mut c = meridian();
        c.args(["config", "apply"])
            .arg(file)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("USER")
            .env_remove("MERIDIAN_AUTHOR");
        if let Some(a) = author {
            c.env("MERIDIAN_AUTHOR", a);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    apply(&example(), None);
    let changed = dir.path().join("changed.toml");
    std::fs::write(&changed, example_text().replace("ttl = 60", "ttl = 90")).unwrap();
    apply(&changed, Some("release-bot"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let authors = rt.block_on(async { audit_authors(&EmbeddedStore::open(&data).unwrap()).await });
    assert_eq!(authors.len(), 2, "{authors:?}");
    assert!(
        !authors[0].is_empty() && !authors[0].starts_with("unknown"),
        "{authors:?}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if !host.trim().is_empty() {
        assert!(authors[0].ends_with(&format!("@{}", host.trim())), "{authors:?}");
    }
    assert_eq!(authors[1], "release-bot");
}

#[test]
fn on_etcd() {
    let etcd = EtcdServer::start();
    operator_session(&["--etcd", &etcd.client_url]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store =
            meridian_store::EtcdStore::new(meridian_store::EtcdOptions::new(vec![etcd.client_url.clone()]))
                .unwrap();
        assert_eq!(audit_authors(&store).await, ["alice", "bob"]);
    });
}

#[test]
fn an_unreachable_etcd_is_a_clear_error() {
    let out = run(&[
        "config",
        "get",
        "--etcd",
        "http://127.0.0.1:9",
        "--etcd-timeout-ms",
        "500",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("state store unavailable"),
        "{}",
        stderr(&out)
    );
    let out = run(&["config", "get", "--etcd", "127.0.0.1:2379"]);
    assert!(stderr(&out).contains("expected a URL"), "{}", stderr(&out));
}

/// `config apply` refuses what `PUT /v1/config` refuses, by the same check: with every EU region of
/// `meet` but fra drained, a file without fra for `meet` leaves its GDPR clients no answer. Refused with
/// the reason and nothing written; with --force, applied, and the audit record says what was forced.
#[test]
fn unsafe_changes_are_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store_args = ["--data-dir", data.to_str().unwrap()];
    let with = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&store_args);
        run(&all)
    };
    let out = with(&[
        "config",
        "apply",
        example().to_str().unwrap(),
        "--author",
        "alice",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The drains an operator would make with `meridian region drain` (the store is free: no process runs).
    rt.block_on(async {
        let store = EmbeddedStore::open(&data).unwrap();
        let keys = Keys::new("/meridian/").unwrap();
        for r in ["waw", "sbg", "gra"] {
            let doc = DrainOverride {
                schema: DOC_SCHEMA,
                author: "bob".into(),
                reason: "maintenance".into(),
                at_ms: meridian_store::now_ms(),
            };
            store.put(&keys.drain(r), encode(&doc), None).await.unwrap();
        }
    });
    let meet = r#"regions = ["waw", "fra", "lon", "sbg", "gra", "bhs", "vin", "hil"]
residency = ["gdpr"]
unknown-location = ["fra", "vin"]"#;
    assert!(example_text().contains(meet));
    let without_fra = dir.path().join("without-fra.toml");
    std::fs::write(
        &without_fra,
        example_text().replace(
            meet,
            r#"regions = ["waw", "lon", "sbg", "gra", "bhs", "vin", "hil"]
residency = ["gdpr"]
unknown-location = ["waw", "vin"]"#,
        ),
    )
    .unwrap();
    let file = without_fra.to_str().unwrap();

    for dry_run in [false, true] {
        let mut args = vec!["config", "apply", file, "--author", "carol"];
        if dry_run {
            args.push("--dry-run");
        }
        let out = with(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("refused: this change would break a safety guarantee:\n  - service meet: clients covered by residency rule gdpr would have no usable region of jurisdiction \"eu\"")
                && err.contains("repeat with --force")
                && err.contains("Nothing was written."),
            "{err}"
        );
        assert_eq!(
            stdout(&with(&["config", "get"])),
            example_text(),
            "nothing was written"
        );
    }

    let out = with(&["config", "apply", file, "--author", "carol", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: forced past a safety check: service meet: clients covered by residency rule gdpr"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&with(&["config", "get"])),
        std::fs::read_to_string(&without_fra).unwrap()
    );
    let record = rt.block_on(async {
        let store = EmbeddedStore::open(&data).unwrap();
        let keys = Keys::new("/meridian/").unwrap();
        let audit = store.list(&keys.audit_prefix()).await.unwrap();
        let records: Vec<serde_json::Value> = audit
            .kvs
            .iter()
            .map(|kv| serde_json::from_slice(&kv.value).unwrap())
            .collect();
        records.into_iter().find(|r| r["who"] == "carol").unwrap()
    });
    assert_eq!(record["what"], "config apply", "{record}");
    assert_eq!(
        record["after"]["forced"],
        serde_json::json!([{"kind": "residency-without-region", "service": "meet", "rule": "gdpr", "jurisdiction": "eu"}]),
        "{record}"
    );
}
