//! `meridian up --acme-directory URL [--acme-ca FILE]`: certificates for every service hostname from a
//! local ACME test CA (Pebble), validated by DNS-01 against `up`'s own DNS server (`docs/up.md`). Adds an
//! `[acme]` section to the configuration `up` runs and `tls = "acme"` to every service (a configuration
//! with its own `[acme]` keeps it, with the directory and CA root replaced), with the operator key made
//! once in DATA_DIR/acme.key.

use std::path::Path;

use anyhow::Context;

/// The configuration text with `[acme]` for `directory` (trusting `ca` for its HTTPS, when given).
pub(crate) fn with_acme(
    text: &str,
    directory: &str,
    ca: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<String> {
    let key_file = data_dir.join("acme.key");
    if !key_file.exists() {
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
            .context("reading /dev/urandom for the ACME key")?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        write_private(&key_file, &hex).with_context(|| format!("writing {}", key_file.display()))?;
    }
    let mut doc: toml::Table = toml::from_str(text)?;
    let mut acme = match doc.remove("acme") {
        Some(toml::Value::Table(t)) => t,
        _ => {
            // Every service's hostname by `tls = "acme"`.
            if let Some(services) = doc.get_mut("services").and_then(toml::Value::as_table_mut) {
                for (_, service) in services.iter_mut() {
                    if let Some(service) = service.as_table_mut() {
                        service.insert("tls".into(), "acme".into());
                    }
                }
            }
            let mut t = toml::Table::new();
            // A local CA answers at once: retry soon after a failure, publish quickly.
            t.insert("retry-initial-ms".into(), 5_000.into());
            t.insert("propagation-delay-ms".into(), 200.into());
            t.insert("key-file".into(), key_file.display().to_string().into());
            t
        }
    };
    acme.insert("directory".into(), directory.into());
    if let Some(ca) = ca {
        let ca = std::path::absolute(ca).with_context(|| format!("--acme-ca {}", ca.display()))?;
        acme.insert("ca-root".into(), ca.display().to_string().into());
    }
    doc.insert("acme".into(), toml::Value::Table(acme));
    Ok(toml::to_string(&doc)?)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
