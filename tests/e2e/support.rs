//! Running the binary and reading what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn meridian() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
}

pub(crate) fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/meridian.toml")
}

pub(crate) fn run(args: &[&str]) -> Output {
    meridian().args(args).output().expect("meridian runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
