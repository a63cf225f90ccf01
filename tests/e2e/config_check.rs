//! `meridian config check`.

use crate::support::{example, run, stderr, stdout};

#[test]
fn the_example_is_valid() {
    let out = run(&["config", "check", example().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ok (schema 1, 8 regions, 1 zones, 3 services, 1 residency rules)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn every_problem_is_printed_with_its_path_and_the_exit_code_is_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace(r#"regions = ["waw", "fra"]"#, r#"regions = ["waw", "frx"]"#)
        .replace("lat = 52.2297", "lat = 152.2297");
    std::fs::write(&bad, text).unwrap();
    let out = run(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("services.files.regions[1]: unknown region \"frx\""),
        "{err}"
    );
    assert!(
        err.contains("regions.waw.lat: 152.2297 is not a latitude"),
        "{err}"
    );
    assert!(err.contains("2 problem(s); nothing was applied"), "{err}");
}

#[test]
fn syntax_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "schema-version = 1\n\n[regions.waw]\nnmae = \"Warsaw\"\n").unwrap();
    let out = run(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 4"), "{}", stderr(&out));
    assert!(stderr(&out).contains("nmae"), "{}", stderr(&out));
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = run(&["config", "check", "/nonexistent/meridian.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/meridian.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_arguments_exit_2() {
    let out = run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A self-signed ECDSA certificate for `host` valid from 10 days ago until `days` from now (negative:
/// expired), written to DIR/NAME.pem and DIR/NAME.key.
fn dated_cert(dir: &std::path::Path, name: &str, host: &str, days: i64) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |secs: i64| rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs as u64);
    let mut p = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
    p.not_before = at(now - 10 * 86_400);
    p.not_after = at(now + days * 86_400);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = p.self_signed(&key).unwrap();
    let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

fn check_with_tls(dir: &std::path::Path, tls: &str) -> std::process::Output {
    let file = dir.join("meridian.toml");
    let origin: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    std::fs::write(&file, crate::edge_tls::config(origin, tls)).unwrap();
    run(&["config", "check", file.to_str().unwrap()])
}

fn certificates(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("[tls]\n");
    for (cert, key) in pairs {
        out += &format!("[[tls.certificates]]\ncert = \"{cert}\"\nkey = \"{key}\"\n");
    }
    out
}

#[test]
fn tls_files_are_read_and_every_problem_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, api_key) = dated_cert(d, "api", "api.gslb.example", 60);
    let (_, other_key) = dated_cert(d, "other", "www.gslb.example", 60);
    let (www, www_key) = dated_cert(d, "www", "www.gslb.example", 60);

    // A key that is not the certificate's, and a file that is not there: both named, nothing passes.
    let out = check_with_tls(
        d,
        &certificates(&[(&api, &other_key), ("/nonexistent/www.pem", &www_key)]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tls.certificates[0].key: ") && err.contains("does not match the certificate"),
        "{err}"
    );
    assert!(
        err.contains("tls.certificates[1].cert: /nonexistent/www.pem: cannot read"),
        "{err}"
    );

    // A proxied hostname no certificate covers.
    let out = check_with_tls(d, &certificates(&[(&api, &api_key)]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("services.www: hostname www.gslb.example is covered by no certificate"),
        "{}",
        stderr(&out)
    );

    // Expired: an error. Expiring within the warning window: a warning, and the check passes.
    let (old, old_key) = dated_cert(d, "old", "www.gslb.example", -1);
    let out = check_with_tls(d, &certificates(&[(&api, &api_key), (&old, &old_key)]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("tls.certificates[1].cert: certificate for www.gslb.example expired on"),
        "{}",
        stderr(&out)
    );
    let (soon, soon_key) = dated_cert(d, "soon", "www.gslb.example", 3);
    let out = check_with_tls(d, &certificates(&[(&api, &api_key), (&soon, &soon_key)]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("warning: tls.certificates[1].cert: certificate for www.gslb.example expires on"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("2 TLS certificate(s)"), "{}", stdout(&out));

    // Garbage where a PEM certificate should be, and a relative path.
    std::fs::write(d.join("garbage.pem"), "hello\n").unwrap();
    let garbage = d.join("garbage.pem").display().to_string();
    let out = check_with_tls(d, &certificates(&[(&garbage, &www_key), (&www, &www_key)]));
    assert!(
        stderr(&out).contains("tls.certificates[0].cert: ") && stderr(&out).contains("no PEM certificate"),
        "{}",
        stderr(&out)
    );
    let out = check_with_tls(d, &certificates(&[("certs/www.pem", &www_key)]));
    assert!(
        stderr(&out).contains("tls.certificates[0].cert: \"certs/www.pem\" is not an absolute path"),
        "{}",
        stderr(&out)
    );
}
