//! The web dashboard of `meridian up`, in a real browser (headless Chromium through chromedriver) and over
//! raw HTTP: login, the live map, drills from the CLI appearing and ending, explain, bad input, and no data
//! without the token. Screenshots go to `target/tmp/dashboard/`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{example, meridian, stderr, stdout};
use crate::up::{Ports, start_with};
use crate::webdriver::Browser;

/// Where screenshots are kept (test artifacts).
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// One raw HTTP/1.1 request: (status, head, body).
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    // An event stream never ends: read what arrives within the timeout.
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// The region ids of the reference deployment, in order.
fn example_regions() -> Vec<String> {
    let text = std::fs::read_to_string(example()).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc["regions"].as_table().unwrap().keys().cloned().collect()
}

/// The configured region names (the page shows "Name (id)").
fn example_names() -> Vec<String> {
    let text = std::fs::read_to_string(example()).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc["regions"]
        .as_table()
        .unwrap()
        .values()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn without_the_token_the_dashboard_gives_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let (_up, banner) = start_with(&ports, dir.path(), &[]);
    let url = format!("http://{}/dashboard", ports.admin);
    assert!(banner.contains(&url), "the banner names the dashboard: {banner}");
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let token = token.trim();
    let names = example_names();
    let leaks = |body: &str| names.iter().find(|n| body.contains(n.as_str())).cloned();

    // The page without credentials is the login form, naming no region.
    let (status, head, body) = request(ports.admin, "GET", "/dashboard", "", "");
    assert_eq!(status, 200, "{head}");
    assert!(body.contains("id=\"login-form\""), "{body}");
    assert_eq!(leaks(&body), None);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    // Its data endpoints: 401, nothing in the body.
    for path in [
        "/v1/dashboard/state",
        "/v1/dashboard/events",
        "/v1/status",
        "/v1/audit",
    ] {
        let (status, _, body) = request(ports.admin, "GET", path, "", "");
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(leaks(&body), None, "{path}");
        assert!(body.contains("authentication required"), "{path}: {body}");
    }
    // A forged session cookie: 401.
    let forged = "Cookie: meridian_session=99999999999.00ff\r\n";
    let (status, _, body) = request(ports.admin, "GET", "/v1/dashboard/state", forged, "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired or the token changed"), "{body}");

    // Login: a wrong token, an empty one, malformed JSON — clear errors, no cookie.
    for (body, code, says) in [
        (
            r#"{"token": "wrong-token-0123456789"}"#,
            401,
            "not valid for this node",
        ),
        (r#"{"token": "  "}"#, 400, "token: empty"),
        ("token=abc", 400, "request body: expected ident"),
        (r#"{"token": "x", "extra": 1}"#, 400, "unknown field"),
    ] {
        let (status, head, answer) = request(
            ports.admin,
            "POST",
            "/dashboard/login",
            "Content-Type: application/json\r\n",
            body,
        );
        assert_eq!(status, code, "{body}: {answer}");
        assert!(answer.contains(says), "{body}: {answer}");
        assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    }
    // The right token: an HttpOnly, SameSite=Strict session cookie that opens the data.
    let (status, head, _) = request(
        ports.admin,
        "POST",
        "/dashboard/login",
        "",
        &json!({ "token": token }).to_string(),
    );
    assert_eq!(status, 204, "{head}");
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    assert!(
        !cookie_line.contains(token),
        "the cookie is derived from the token, not the token"
    );
    let value = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap();
    let cookie = format!("Cookie: {value}\r\n");
    let (status, _, body) = request(ports.admin, "GET", "/v1/dashboard/state", &cookie, "");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["regions"].as_array().unwrap().len(), example_regions().len());
    // A Polish client goes to Warsaw; a Canadian one to Beauharnois (the reference deployment).
    let meet = &doc["steering"]["services"][0]["countries"];
    assert_eq!(meet["PL"]["regions"][0], "waw", "{meet}");
    assert_eq!(meet["CA"]["regions"][0], "bhs", "{meet}");
    assert_eq!(meet["PL"]["fence"], json!(["gdpr"]), "{meet}");
    // A write with the cookie but without the page's header (what a cross-site form would send): refused,
    // nothing written.
    let (status, _, body) = request(
        ports.admin,
        "PUT",
        "/v1/regions/waw/drain",
        &cookie,
        r#"{"reason": "csrf"}"#,
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("x-meridian-dashboard"), "{body}");
    let (_, _, after) = request(ports.admin, "GET", "/v1/dashboard/state", &cookie, "");
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["regions"][0]["drained"], serde_json::Value::Null);
}

#[test]
fn the_dashboard_in_a_browser_follows_drills_and_explains_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let (_up, _banner) = start_with(&ports, dir.path(), &[]);
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let token = token.trim().to_owned();
    let url = format!("http://{}/dashboard", ports.admin);
    let browser = Browser::start();

    // Without the token: the login form, and the page has no data to show.
    browser.goto(&url);
    assert_eq!(
        browser.eval("return !!document.getElementById('map')", json!([])),
        json!(false)
    );
    browser.type_into("#token", "not-the-token-0123456789");
    browser.click("#login-form button");
    browser.wait_for(
        "a wrong token is refused with a message",
        "return document.getElementById('login-error').textContent",
        Duration::from_secs(5),
    );
    assert_eq!(
        browser.eval("return !!document.getElementById('map')", json!([])),
        json!(false)
    );
    browser.screenshot(&artifacts().join("login.png"));
    // The browser logs the refused login as a failed request; nothing else went wrong.
    let severe = |entries: Vec<(String, String)>| -> Vec<String> {
        entries
            .into_iter()
            .filter(|(level, _)| level == "SEVERE")
            .map(|(_, m)| m)
            .collect()
    };
    let errors = severe(browser.console());
    assert!(
        errors.len() == 1 && errors[0].contains("/dashboard/login") && errors[0].contains("401"),
        "{errors:?}"
    );

    browser.type_into("#token", &token);
    browser.click("#login-form button");
    // Every region of the reference deployment is on the map and in the table.
    let regions = example_regions();
    let shown = browser.wait_for(
        "the map shows every region",
        &format!(
            "const ids = [...document.querySelectorAll('#map g.region')].map(g => g.dataset.region);
             return ids.length === {} ? ids : null",
            regions.len()
        ),
        Duration::from_secs(10),
    );
    let mut shown: Vec<String> = serde_json::from_value(shown).unwrap();
    let mut want = regions.clone();
    shown.sort();
    want.sort();
    assert_eq!(shown, want);
    let rows = browser.eval(
        "return document.querySelectorAll('#regions tbody tr').length",
        json!([]),
    );
    assert_eq!(rows, json!(regions.len()));
    // Countries are coloured by where their clients go: Poland by Warsaw.
    browser.wait_for(
        "Poland is coloured by Warsaw",
        "const p = document.querySelector('#countries path[data-cc=PL]'); return p && p.dataset.region === 'waw'",
        Duration::from_secs(5),
    );
    // Wait for the probers' first opinions, so the screenshot shows live health.
    browser.wait_for(
        "regions are probed up",
        "return document.querySelectorAll('#map g.region.up').length > 0",
        Duration::from_secs(15),
    );
    browser.screenshot(&artifacts().join("dashboard.png"));
    // The page loaded and runs without a console error.
    let errors = severe(browser.console());
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // A drill started through the CLI appears on the map within 2 s, and its end too.
    let cli = |args: &[&str]| {
        let o = meridian()
            .env("MERIDIAN_SERVER", format!("http://{}", ports.admin))
            .env("MERIDIAN_TOKEN", &token)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    cli(&[
        "drill",
        "start",
        "--region",
        "waw",
        "--mode",
        "down",
        "--for",
        "10m",
        "--id",
        "browser-drill",
        "--reason",
        "dashboard test",
    ]);
    let started = Instant::now();
    browser.wait_for(
        "the drill on the map",
        "const g = document.querySelector('#map g.region[data-region=waw]'); return g && g.dataset.drill === 'browser-drill'",
        Duration::from_secs(2),
    );
    eprintln!("drill start shown after {:?}", started.elapsed());
    // Polish clients moved away from Warsaw, and the map says so.
    browser.wait_for(
        "Poland moved",
        "const p = document.querySelector('#countries path[data-cc=PL]'); return p.classList.contains('moved') && p.dataset.region !== 'waw'",
        Duration::from_secs(2),
    );
    browser.screenshot(&artifacts().join("drill.png"));
    cli(&["drill", "stop", "browser-drill"]);
    let stopped = Instant::now();
    browser.wait_for(
        "the drill's end on the map",
        "const g = document.querySelector('#map g.region[data-region=waw]'); return g && !g.dataset.drill",
        Duration::from_secs(2),
    );
    eprintln!("drill end shown after {:?}", stopped.elapsed());
    // The history lists it, and the audit log has both records.
    browser.wait_for(
        "the drill history",
        "return !!document.querySelector('#drills tr[data-drill=browser-drill]')",
        Duration::from_secs(5),
    );
    browser.wait_for(
        "the audit log",
        "return [...document.querySelectorAll('#audit td')].some(td => td.textContent.startsWith('drill stop browser-drill'))",
        Duration::from_secs(5),
    );

    // Explain: a Polish client and a Canadian one.
    for (client, country, region) in [
        ("83.0.0.1", "PL (Poland)", "waw"),
        ("24.48.0.0/24", "CA (Canada)", "bhs"),
    ] {
        browser.type_into("#explain-client", client);
        browser.click("#explain-form button");
        let text = browser.wait_for(
            "the explain report",
            &format!(
                "const o = document.getElementById('explain-out'); return o.dataset.client === '{client}' ? o.textContent : null"
            ),
            Duration::from_secs(5),
        );
        let text = text.as_str().unwrap();
        assert!(text.contains(country), "{client}: {text}");
        assert!(text.contains(region), "{client}: {text}");
    }
    browser.screenshot(&artifacts().join("explain.png"));
    // Bad input in the explain form: a clear message, no report.
    browser.type_into("#explain-client", "not-an-address");
    browser.click("#explain-form button");
    let msg = browser.wait_for(
        "the explain form's error",
        "return document.getElementById('explain-error').textContent",
        Duration::from_secs(5),
    );
    assert!(
        msg.as_str().unwrap().contains("not an IP address or subnet"),
        "{msg}"
    );
    assert_eq!(
        browser.eval(
            "return document.getElementById('explain-out').textContent",
            json!([])
        ),
        json!("")
    );

    // Drain from the page, with its confirmation; then undrain.
    let newest_audit = "return document.querySelector('#audit tbody tr td:nth-child(3)').textContent";
    let before = browser.eval(newest_audit, json!([]));
    browser.click("#regions tr[data-region=sbg] button.drain-button");
    browser.click("#confirm-ok");
    let msg = browser.wait_for(
        "a drain without a reason is refused by the page",
        "return document.getElementById('confirm-error').textContent",
        Duration::from_secs(2),
    );
    assert!(msg.as_str().unwrap().contains("reason is required"), "{msg}");
    // Nothing was written: sbg is not drained, the audit log has no new record.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        browser.eval(
            "return document.querySelector('#map g.region[data-region=sbg]').classList.contains('drained')",
            json!([])
        ),
        json!(false)
    );
    assert_eq!(
        browser.eval(newest_audit, json!([])),
        before,
        "nothing was written"
    );
    browser.type_into("#confirm-reason", "browser test");
    browser.click("#confirm-ok");
    browser.wait_for(
        "the drain on the map",
        "return document.querySelector('#map g.region[data-region=sbg]').classList.contains('drained')",
        Duration::from_secs(3),
    );
    browser.click("#regions tr[data-region=sbg] button.drain-button");
    browser.click("#confirm-ok");
    browser.wait_for(
        "the undrain on the map",
        "return !document.querySelector('#map g.region[data-region=sbg]').classList.contains('drained')",
        Duration::from_secs(3),
    );

    // A drill started and stopped from the page.
    browser.eval(
        "document.getElementById('drill-region').value = 'bhs'; document.getElementById('drill-mode').value = 'drain'",
        json!([]),
    );
    browser.type_into("#drill-minutes", "5");
    browser.type_into("#drill-reason", "page drill");
    browser.click("#drill-form button");
    browser.click("#confirm-ok");
    let drill = browser.wait_for(
        "the page's drill on the map",
        "const g = document.querySelector('#map g.region[data-region=bhs]'); return g && g.dataset.drill",
        Duration::from_secs(3),
    );
    let listed = cli(&["drill", "list"]);
    assert!(
        listed.contains(drill.as_str().unwrap()) && listed.contains("drain"),
        "{listed}"
    );
    browser.wait_for(
        "the stop button",
        "return !!document.querySelector('#regions tr[data-region=bhs] button:not(.drain-button)')",
        Duration::from_secs(3),
    );
    browser.click("#regions tr[data-region=bhs] button:not(.drain-button)");
    browser.click("#confirm-ok");
    browser.wait_for(
        "the page's drill stopped",
        "const g = document.querySelector('#map g.region[data-region=bhs]'); return g && !g.dataset.drill",
        Duration::from_secs(3),
    );
    browser.wait_for(
        "the stopped drill in the history",
        &format!(
            "const td = document.querySelector('#drills tr[data-drill=\"{}\"] td:nth-child(5)'); return td && td.textContent.startsWith('stopped')",
            drill.as_str().unwrap()
        ),
        Duration::from_secs(3),
    );

    // The safety check and force, as on the CLI: with sbg, gra and waw drained, draining fra would leave
    // the EU residency rule of `meet` without a region (and `files` without any). The page shows the
    // refusal, changes nothing, and offers force.
    for r in ["sbg", "gra", "waw"] {
        cli(&["region", "drain", r, "--reason", "safety test"]);
    }
    browser.wait_for(
        "three drains on the map",
        "return document.querySelectorAll('#map g.region.drained').length === 3",
        Duration::from_secs(3),
    );
    browser.click("#regions tr[data-region=fra] button.drain-button");
    browser.type_into("#confirm-reason", "one too many");
    browser.click("#confirm-ok");
    let refusal = browser.wait_for(
        "the refusal",
        "return document.getElementById('confirm-error').textContent",
        Duration::from_secs(3),
    );
    let refusal = refusal.as_str().unwrap();
    assert!(
        refusal.contains("refused") && refusal.contains("gdpr") && refusal.contains("Nothing was changed"),
        "{refusal}"
    );
    assert_eq!(
        browser.eval(
            "return document.getElementById('confirm-force').hidden",
            json!([])
        ),
        json!(false)
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        browser.eval(
            "return document.querySelectorAll('#map g.region.drained').length",
            json!([])
        ),
        json!(3),
        "nothing was changed"
    );
    browser.screenshot(&artifacts().join("refused.png"));
    browser.click("#confirm-force");
    browser.wait_for(
        "the forced drain",
        "return document.querySelector('#map g.region[data-region=fra]').classList.contains('drained')",
        Duration::from_secs(3),
    );
    browser.wait_for(
        "the forced drain in the audit log",
        "return [...document.querySelectorAll('#audit td')].some(td => td.textContent.startsWith('region drain fra'))",
        Duration::from_secs(3),
    );

    // Nothing went wrong in the page but the two refused requests (the browser logs them).
    let errors = severe(browser.console());
    assert!(
        errors.len() == 2
            && errors[0].contains("/v1/explain?")
            && errors[0].contains("400")
            && errors[1].contains("/v1/regions/fra/drain")
            && errors[1].contains("422"),
        "console errors: {errors:?}"
    );
}
