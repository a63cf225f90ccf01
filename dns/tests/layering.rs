//! The answering modules form a DAG in the order `dns/src/lib.rs` lists them: each may use only the
//! modules listed after it. (They once imported each other in a circle; this keeps them from drifting
//! back.) Read from the sources: every `crate::MODULE` a module names, in code or in its documentation.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Highest first: a module may name only modules to its right.
const ORDER: [&str; 10] = [
    "respond", "resolve", "memo", "decide", "write", "request", "context", "info", "zone", "dnssec",
];

#[test]
fn answering_modules_form_a_dag() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (i, module) in ORDER.iter().enumerate() {
        let text = std::fs::read_to_string(src.join(format!("{module}.rs"))).unwrap();
        assert!(
            !text.contains("crate::{"),
            "{module}.rs: name modules one per path (`use crate::a::X;`), so that this test sees them"
        );
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if let Some(j) = ORDER.iter().position(|m| *m == name)
                && j <= i
            {
                violations.push(format!("{module} names crate::{name}"));
            }
        }
    }
    assert!(violations.is_empty(), "modules out of order: {violations:?}");
}
