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
