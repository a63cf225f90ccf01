//! The web dashboard of `meridian up`, in a real browser (headless Chromium through chromedriver) and over
//! raw HTTP: login, the live map and what pointing at a region shows, residency fences and the legend
//! following a configuration change, drills from the CLI appearing and ending (stopped or expired),
//! explain, bad input in every form, a lost store and stale health, and no data without the token.
//! Every browser step saves a screenshot under `target/tmp/dashboard/TEST/` (the path is printed), and a
//! failing test one more of the page as it failed.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use meridian_store::now_ms;

use crate::support::{example, meridian, stderr, stdout};
use crate::up::{Ports, start_with};
use crate::webdriver::Browser;

/// Where screenshots are kept (test artifacts).
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// A browser test's screenshots: one per step, numbered, in `artifacts()/TEST/` (emptied first), each
/// path printed; and `failed.png` when the test fails, taken while it unwinds.
struct Shots<'a> {
    browser: &'a Browser,
    dir: PathBuf,
    taken: Cell<u32>,
}

impl<'a> Shots<'a> {
    fn new(browser: &'a Browser, test: &str) -> Self {
        let dir = artifacts().join(test);
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("screenshots of {test}: {}", dir.display());
        Self {
            browser,
            dir,
            taken: Cell::new(0),
        }
    }

    /// Saves the window as `NN-step.png`.
    fn step(&self, step: &str) {
        let n = self.taken.get() + 1;
        self.taken.set(n);
        self.browser
            .screenshot(&self.dir.join(format!("{n:02}-{step}.png")));
    }
}

impl Drop for Shots<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Err(e) = self.browser.try_screenshot(&self.dir.join("failed.png"))
        {
            eprintln!("no screenshot of the failure: {e}");
        }
    }
}

/// The admin API with the bearer token: (status, JSON body).
fn api(addr: SocketAddr, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let headers = format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n");
    let body = body.map(Value::to_string).unwrap_or_default();
    let (status, head, answer) = request(addr, method, path, &headers, &body);
    let doc =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{method} {path}: {e}: {head}{answer}"));
    (status, doc)
}

/// A script (for `Browser::eval`) returning the texts of the elements matching a CSS selector.
fn texts(css: &str) -> String {
    format!("return [...document.querySelectorAll({css:?})].map(e => e.textContent)")
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
    // Secure too, though this API is plain HTTP: on a loopback address browsers keep it (the browser
    // test logs in so); elsewhere the login is refused (admin/tests/api.rs).
    assert!(
        cookie_line.contains("HttpOnly")
            && cookie_line.contains("SameSite=Strict")
            && cookie_line.contains("Secure"),
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
    let doc: Value = serde_json::from_str(&body).unwrap();
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
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["regions"][0]["drained"], Value::Null);
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
    let shots = Shots::new(&browser, "follows_drills_and_explains_clients");

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
    shots.step("login-refused");
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
    // Logged in over http://127.0.0.1: the browser kept the Secure session cookie (a loopback origin
    // is trustworthy) — the page is the dashboard, and stays it after a reload.
    browser.wait_for(
        "the dashboard after the login",
        "return !!document.getElementById('map')",
        Duration::from_secs(5),
    );
    browser.goto(&url);
    assert_eq!(
        browser.eval("return !!document.getElementById('map')", json!([])),
        json!(true),
        "the session cookie was kept"
    );
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
    shots.step("dashboard");
    // The page loaded and runs without a console error.
    let errors = severe(browser.console());
    assert!(errors.is_empty(), "console errors: {errors:?}");

    let admin = ports.admin;
    region_details_on_the_map(&browser, &shots, admin, &token);
    fences_on_the_map(&browser, &shots);
    the_drill_form_checks_its_input(&browser, &shots, admin, &token);

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
    shots.step("drill");
    cli(&["drill", "stop", "browser-drill"]);
    let stopped = Instant::now();
    browser.wait_for(
        "the drill's end on the map",
        "const g = document.querySelector('#map g.region[data-region=waw]'); return g && !g.dataset.drill",
        Duration::from_secs(2),
    );
    eprintln!("drill end shown after {:?}", stopped.elapsed());
    shots.step("drill-stopped");
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
    shots.step("explain");
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
    shots.step("explain-refused");

    // A drill that ends by expiring leaves the map within 2 s of its expiry, with no store event.
    cli(&[
        "drill",
        "start",
        "--region",
        "vin",
        "--mode",
        "down",
        "--for",
        "3s",
        "--id",
        "expiring",
        "--reason",
        "expiry test",
    ]);
    browser.wait_for(
        "the expiring drill on the map",
        "const g = document.querySelector('#map g.region[data-region=vin]'); return g && g.dataset.drill === 'expiring'",
        Duration::from_secs(2),
    );
    shots.step("expiring-drill");
    let (_, d) = api(admin, &token, "GET", "/v1/drills/expiring", None);
    let expires = d["drill"]["expires_at_ms"].as_u64().unwrap();
    browser.wait_for(
        "the expired drill off the map",
        "const g = document.querySelector('#map g.region[data-region=vin]'); return g && !g.dataset.drill",
        Duration::from_secs(6),
    );
    let gone = now_ms();
    eprintln!(
        "drill expiry shown {} ms after it expired",
        gone.saturating_sub(expires)
    );
    assert!(
        gone >= expires && gone - expires <= 2000,
        "off the map at {gone}, expired at {expires}"
    );
    // The history says when it ended (not "in 3 s"), though the store did not change.
    browser.wait_for(
        "the expired drill in the history",
        "const td = document.querySelector('#drills tr[data-drill=expiring] td:nth-child(5)'); return td && !td.textContent.startsWith('in ') && td.textContent.endsWith('Z')",
        Duration::from_secs(3),
    );
    shots.step("drill-expired");

    weight_and_capacity_on_the_map(&browser, &shots, admin, &token, &cli);
    the_legend_follows_the_configuration(&browser, &shots, admin, &token);

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
    shots.step("drain-needs-a-reason");
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
    shots.step("drained");
    browser.click("#regions tr[data-region=sbg] button.drain-button");
    browser.click("#confirm-ok");
    browser.wait_for(
        "the undrain on the map",
        "return !document.querySelector('#map g.region[data-region=sbg]').classList.contains('drained')",
        Duration::from_secs(3),
    );
    shots.step("undrained");

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
    shots.step("page-drill");
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
    shots.step("page-drill-stopped");

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
    shots.step("refused");
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
    shots.step("forced");

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

/// A region as `/v1/status` shows it now (the API with the token, not the page).
fn status_region(admin: SocketAddr, token: &str, id: &str) -> Value {
    let (status, doc) = api(admin, token, "GET", "/v1/status", None);
    assert_eq!(status, 200, "{doc}");
    doc["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no region {id}: {doc}"))
        .clone()
}

/// What the page says of a region's load: `IN_FLIGHT / EFFECTIVE` and `(of CAPACITY)` when a capacity
/// drill lowers it, and the fill of its load bar (20 units wide).
fn load_of(r: &Value) -> (String, f64) {
    let effective = r["effective_capacity"].as_u64().unwrap();
    let capacity = r["capacity"].as_u64().unwrap();
    let in_flight = r["in_flight"].as_u64();
    let text = format!(
        "{} / {effective}{}",
        in_flight.map_or("no report".to_owned(), |n| n.to_string()),
        if effective == capacity {
            String::new()
        } else {
            format!(" (of {capacity})")
        }
    );
    let fill = match in_flight {
        None => 0.0,
        Some(n) if effective > 0 => (n as f64 / effective as f64).min(1.0),
        Some(n) => f64::from(u8::from(n > 0)),
    };
    (text, 20.0 * fill)
}

/// Points at a region's marker and returns the details panel's paragraphs and list items, once it shows
/// that region.
fn point_at(browser: &Browser, id: &str, heading: &str) -> (Vec<String>, Vec<String>) {
    // Somewhere else first, so pointing at the marker is a new `mouseenter`; and no details left from
    // before.
    browser.hover("#regions");
    browser.eval("document.getElementById('details').replaceChildren()", json!([]));
    browser.hover(&format!("#map g.region[data-region={id}] circle.core"));
    browser.wait_for(
        &format!("pointing at {id} shows its details"),
        &format!(
            "const h = document.querySelector('#details h3'); return h && h.textContent === {heading:?}"
        ),
        Duration::from_secs(3),
    );
    let p: Vec<String> = serde_json::from_value(browser.eval(&texts("#details p"), json!([]))).unwrap();
    let li: Vec<String> = serde_json::from_value(browser.eval(&texts("#details li"), json!([]))).unwrap();
    (p, li)
}

/// [`point_at`] Warsaw, with its status from the API once the page's load agrees with it: a proxy's load
/// report may change between the two reads, so up to three tries.
fn point_at_warsaw(browser: &Browser, admin: SocketAddr, token: &str) -> (Vec<String>, Vec<String>, Value) {
    let mut tries = 0;
    loop {
        let (p, li) = point_at(browser, "waw", "Warsaw (waw)");
        let waw = status_region(admin, token, "waw");
        let (load, width) = load_of(&waw);
        let (_, _, bar) = marker(browser, "waw");
        tries += 1;
        if tries == 3 || (p.contains(&format!("load: {load}")) && (bar - width).abs() < 1e-9) {
            return (p, li, waw);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The marker's tooltip (`<title>`), label and load bar's width.
fn marker(browser: &Browser, id: &str) -> (String, String, f64) {
    let v = browser.eval(
        &format!(
            "const g = document.querySelector('#map g.region[data-region={id}]');
             return [g.querySelector(':scope > title').textContent, g.querySelector('text').textContent,
                     Number(g.querySelector('rect.load').getAttribute('width'))]"
        ),
        json!([]),
    );
    (
        v[0].as_str().unwrap().to_owned(),
        v[1].as_str().unwrap().to_owned(),
        v[2].as_f64().unwrap(),
    )
}

/// Pointing at Warsaw: every vantage's opinion (as the API reports them), its load and weight, in the
/// details panel and in the marker's tooltip; the load bar as wide as its load.
fn region_details_on_the_map(browser: &Browser, shots: &Shots<'_>, admin: SocketAddr, token: &str) {
    browser.wait_for(
        "Warsaw probed up",
        "return !!document.querySelector('#map g.region.up[data-region=waw]:not(.stale)')",
        Duration::from_secs(15),
    );
    let (p, li, waw) = point_at_warsaw(browser, admin, token);
    let vantages = waw["health"]["vantages"].as_array().unwrap();
    assert!(!vantages.is_empty(), "{waw}");
    assert_eq!(li.len(), vantages.len(), "one line per vantage: {li:?}");
    let (title, label, bar) = marker(browser, "waw");
    for v in vantages {
        let says = format!(
            "{}: {}",
            v["vantage"].as_str().unwrap(),
            if v["healthy"] == true {
                "healthy"
            } else {
                "unhealthy"
            }
        );
        assert!(li.iter().any(|l| l.starts_with(&says)), "{says:?} in {li:?}");
        assert!(
            title.lines().any(|l| l.trim_start().starts_with(&says)),
            "{says:?} in the tooltip {title:?}"
        );
    }
    assert_eq!(p[0], "health: up", "{p:?}");
    assert!(title.starts_with("Warsaw (waw): up\n"), "{title:?}");
    let (load, width) = load_of(&waw);
    assert!(p.contains(&format!("load: {load}")), "{load:?} in {p:?}");
    assert!(title.contains(&format!("load {load}")), "{title:?}");
    assert!((bar - width).abs() < 1e-9, "load bar {bar}, want {width}");
    assert!(p.contains(&format!("weight: {}", waw["weight"])), "{p:?}");
    assert_eq!(label, "waw", "no drill, drain or weight override: the id alone");
    shots.step("region-details");
}

/// Residency fences: the countries a rule of the shown service covers are outlined (`fenced`) and say
/// so when pointed at; the legend lists the rule, as written, with the regions it allows.
fn fences_on_the_map(browser: &Browser, shots: &Shots<'_>) {
    let country = |cc: &str| {
        browser.eval(
            &format!(
                "const p = document.querySelector('#countries path[data-cc={cc}]');
                 return [p.classList.contains('fenced'), p.querySelector('title').textContent]"
            ),
            json!([]),
        )
    };
    let pl = country("PL");
    assert_eq!(pl[0], true, "{pl}");
    assert!(pl[1].as_str().unwrap().contains("residency: gdpr"), "{pl}");
    for cc in ["US", "CA", "CH"] {
        let c = country(cc);
        assert_eq!(c[0], false, "{cc}: {c}");
        assert!(!c[1].as_str().unwrap().contains("residency"), "{cc}: {c}");
    }
    let legend = browser.eval(&texts("#legend span.fence[data-rule=gdpr]"), json!([]));
    let legend = legend[0].as_str().unwrap_or_default();
    assert!(
        legend.starts_with("▭ residency gdpr (EEA): only ") && legend.ends_with(" [eu]"),
        "{legend:?}"
    );
    for eu in ["waw", "fra"] {
        assert!(legend.contains(eu), "{legend:?}");
    }
    for elsewhere in ["bhs", "vin", "hil"] {
        assert!(!legend.contains(elsewhere), "{legend:?}");
    }
    browser.hover("#countries path[data-cc=PL]");
    browser.wait_for(
        "Poland's details name its residency rule",
        "return [...document.querySelectorAll('#details p')].some(p => p.textContent.startsWith('Residency: gdpr'))",
        Duration::from_secs(3),
    );
    shots.step("fences");
}

/// The drill form's own checks: minutes, capacity % and reason refused with a message in the dialog
/// (which offers no confirmation), and nothing sent — no drill, no new audit record.
fn the_drill_form_checks_its_input(browser: &Browser, shots: &Shots<'_>, admin: SocketAddr, token: &str) {
    let audit_total = || api(admin, token, "GET", "/v1/audit?limit=1", None).1["total"].clone();
    let before = audit_total();
    let minutes = "minutes: from 1 to 4320 (72 hours)";
    let capacity = "capacity %: a whole number from 0 to 100";
    let reason = "reason: required (it goes to the audit log)";
    for (i, (mode, pct, min, why, says)) in [
        ("down", "50", "0", "form test", minutes),
        ("down", "50", "4321", "form test", minutes),
        ("drain", "50", "", "form test", minutes),
        ("down", "50", "-5", "form test", minutes),
        ("capacity", "150", "5", "form test", capacity),
        ("capacity", "-1", "5", "form test", capacity),
        ("capacity", "2.5", "5", "form test", capacity),
        ("capacity", "", "5", "form test", capacity),
        ("down", "50", "5", "", reason),
        ("capacity", "20", "5", "   ", reason),
    ]
    .into_iter()
    .enumerate()
    {
        browser.eval(
            "document.getElementById('drill-region').value = 'waw'; document.getElementById('drill-mode').value = arguments[0]",
            json!([mode]),
        );
        browser.type_into("#drill-capacity", pct);
        browser.type_into("#drill-minutes", min);
        browser.type_into("#drill-reason", why);
        browser.click("#drill-form button");
        let shown = browser.wait_for(
            "the drill form's message",
            "const d = document.getElementById('confirm'); return d.open && [document.getElementById('confirm-title').textContent, document.getElementById('confirm-text').textContent, document.getElementById('confirm-ok').hidden]",
            Duration::from_secs(2),
        );
        let case = format!("mode {mode}, capacity {pct:?}, minutes {min:?}, reason {why:?}");
        assert_eq!(
            shown,
            json!([
                "Cannot start the drill",
                format!("{says}. Nothing was changed."),
                true
            ]),
            "{case}"
        );
        shots.step(&format!("drill-form-refused-{i}"));
        browser.click("#confirm-cancel");
        browser.wait_for(
            "the dialog closed",
            "return !document.getElementById('confirm').open",
            Duration::from_secs(2),
        );
    }
    // Nothing was sent: no drill anywhere, no new audit record (after the page's next update too).
    std::thread::sleep(Duration::from_millis(1200));
    let (_, drills) = api(admin, token, "GET", "/v1/drills?all=true", None);
    assert_eq!(drills["drills"], json!([]), "{drills}");
    assert_eq!(audit_total(), before);
    assert_eq!(
        browser.eval(
            "return document.querySelectorAll('#map g.region[data-drill]').length",
            json!([])
        ),
        json!(0)
    );
}

/// An operator's weight shows in the marker's label and details; a capacity drill lowers the effective
/// capacity the load text and bar are measured against.
fn weight_and_capacity_on_the_map(
    browser: &Browser,
    shots: &Shots<'_>,
    admin: SocketAddr,
    token: &str,
    cli: &dyn Fn(&[&str]) -> String,
) {
    let (status, doc) = api(
        admin,
        token,
        "PUT",
        "/v1/regions/waw/weight",
        Some(&json!({"weight": 40, "reason": "label test", "author": "e2e"})),
    );
    assert_eq!(status, 200, "{doc}");
    browser.wait_for(
        "the weight in Warsaw's label",
        "return document.querySelector('#map g.region[data-region=waw] text').textContent === 'waw w40'",
        Duration::from_secs(2),
    );
    let (p, _) = point_at(browser, "waw", "Warsaw (waw)");
    assert!(
        p.contains(&"weight: 40 (override by e2e: label test)".to_owned()),
        "{p:?}"
    );
    let (title, _, _) = marker(browser, "waw");
    assert!(title.lines().any(|l| l == "weight 40"), "{title:?}");
    assert_eq!(
        browser.eval(
            "return document.querySelector('#regions tr[data-region=waw] td:nth-child(5)').textContent",
            json!([])
        ),
        json!("40")
    );
    shots.step("weight-override");
    let (status, doc) = api(admin, token, "DELETE", "/v1/regions/waw/weight", None);
    assert_eq!(status, 200, "{doc}");

    cli(&[
        "drill",
        "start",
        "--region",
        "waw",
        "--mode",
        "capacity=25",
        "--for",
        "10m",
        "--id",
        "quarter",
        "--reason",
        "capacity test",
    ]);
    browser.wait_for(
        "the capacity drill in Warsaw's label",
        "return document.querySelector('#map g.region[data-region=waw] text').textContent === 'waw drill capacity=25'",
        Duration::from_secs(2),
    );
    let (p, _, waw) = point_at_warsaw(browser, admin, token);
    assert_eq!(
        waw["effective_capacity"].as_u64().unwrap(),
        waw["capacity"].as_u64().unwrap() / 4,
        "{waw}"
    );
    let (load, width) = load_of(&waw);
    assert!(load.contains(" (of "), "{load}");
    assert!(p.contains(&format!("load: {load}")), "{load:?} in {p:?}");
    assert!(
        p.iter().any(|l| l.starts_with("drill quarter (capacity=25), ")),
        "{p:?}"
    );
    let (title, _, bar) = marker(browser, "waw");
    assert!(title.contains(&format!("load {load}")), "{title:?}");
    assert!((bar - width).abs() < 1e-9, "load bar {bar}, want {width}");
    shots.step("capacity-drill");
    cli(&["drill", "stop", "quarter"]);
    browser.wait_for(
        "the capacity drill's end",
        "return document.querySelector('#map g.region[data-region=waw] text').textContent === 'waw'",
        Duration::from_secs(2),
    );
}

/// A configuration change that widens a residency rule (gdpr also covers Switzerland) reaches the open
/// page: the legend is redrawn with the rule as now written, and Switzerland is fenced.
fn the_legend_follows_the_configuration(
    browser: &Browser,
    shots: &Shots<'_>,
    admin: SocketAddr,
    token: &str,
) {
    let (status, stored) = api(admin, token, "GET", "/v1/config", None);
    assert_eq!(status, 200, "{stored}");
    let toml = stored["toml"].as_str().unwrap();
    let rule = "country-groups = [\"EEA\"]\n";
    assert!(toml.contains(rule), "{toml}");
    let widened = toml.replacen(rule, &format!("{rule}countries = [\"CH\"]\n"), 1);
    let (status, doc) = api(
        admin,
        token,
        "PUT",
        "/v1/config",
        Some(&json!({"toml": widened, "author": "e2e", "expect_revision": stored["revision"]})),
    );
    assert_eq!((status, &doc["outcome"]), (200, &json!("applied")), "{doc}");
    let legend = browser.wait_for(
        "the legend redrawn with the widened rule",
        "const f = document.querySelector('#legend span.fence[data-rule=gdpr]'); return f && f.textContent.includes('(EEA, CH)') && f.textContent",
        Duration::from_secs(3),
    );
    assert_eq!(
        browser.eval(
            "return document.querySelectorAll('#legend span.fence').length",
            json!([])
        ),
        json!(1),
        "{legend}"
    );
    browser.wait_for(
        "Switzerland fenced",
        "return document.querySelector('#countries path[data-cc=CH]').classList.contains('fenced')",
        Duration::from_secs(2),
    );
    shots.step("legend-after-config-change");
}

/// The store lost: the header says so, and once the probers' opinions are older than `stale-after-ms`
/// (10 s) every region is marked stale on the map, in its details and in the table — keeping its last
/// state. With the store back, both clear.
#[test]
fn the_dashboard_shows_a_lost_store_and_stale_health() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = meridian_store::testing::EtcdServer::start();
    let ports = Ports::free();
    let command = crate::up::up_on_etcd(&ports, &etcd.client_url, &dir.path().join("data"));
    let (_up, _) = crate::up::start_command(command);
    let token = std::fs::read_to_string(dir.path().join("data/admin-token")).unwrap();
    let browser = Browser::start();
    let shots = Shots::new(&browser, "lost_store_and_stale_health");
    browser.goto(&format!("http://{}/dashboard", ports.admin));
    browser.type_into("#token", token.trim());
    browser.click("#login-form button");
    browser.wait_for(
        "Warsaw probed up",
        "return !!document.querySelector('#map g.region.up[data-region=waw]:not(.stale)')",
        Duration::from_secs(20),
    );
    let badge = "const c = document.getElementById('conn'); return [c.textContent, c.className]";
    assert_eq!(
        browser.eval(badge, json!([])),
        json!(["store: connected", "badge ok"])
    );
    shots.step("connected");

    etcd.kill();
    let lost = browser.wait_for(
        "the header says the store is lost",
        "const c = document.getElementById('conn'); return c.textContent.startsWith('store: disconnected for ') && c.className === 'badge bad' && c.textContent",
        Duration::from_secs(10),
    );
    eprintln!("header: {lost}");
    shots.step("store-lost");
    browser.wait_for(
        "Warsaw's health stale",
        "return !!document.querySelector('#map g.region.up.stale[data-region=waw]')",
        Duration::from_secs(20),
    );
    let (p, li) = point_at(&browser, "waw", "Warsaw (waw)");
    assert_eq!(p[0], "health: up (stale)", "it keeps its last state: {p:?}");
    assert!(
        !li.is_empty() && li.iter().all(|l| l.contains(" (stale)")),
        "every vantage's opinion is stale: {li:?}"
    );
    let (title, _, _) = marker(&browser, "waw");
    assert!(title.starts_with("Warsaw (waw): up (stale)\n"), "{title:?}");
    assert_eq!(
        browser.eval(
            "return document.querySelector('#regions tr[data-region=waw] td:nth-child(2)').textContent",
            json!([])
        ),
        json!("up (stale)")
    );
    shots.step("stale-health");

    etcd.restart();
    browser.wait_for(
        "the header says the store is back",
        "const c = document.getElementById('conn'); return c.textContent === 'store: connected' && c.className === 'badge ok'",
        Duration::from_secs(20),
    );
    browser.wait_for(
        "Warsaw's health fresh again",
        "return !!document.querySelector('#map g.region.up[data-region=waw]:not(.stale)')",
        Duration::from_secs(20),
    );
    shots.step("store-regained");
}

/// A network namespace of this test's own (only its loopback interface, up, with `192.0.2.1/32` added:
/// a local address that is not a loopback address), removed on drop.
struct Namespace(String);

impl Namespace {
    fn new() -> Self {
        let name = format!("mdash-{}", std::process::id());
        let ip = |args: &[&str]| {
            let o = std::process::Command::new("ip").args(args).output().unwrap();
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        };
        ip(&["netns", "add", &name]);
        let ns = Self(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ip(&["-n", &ns.0, "addr", "add", "192.0.2.1/32", "dev", "lo"]);
        ns
    }

    /// `program args` inside the namespace.
    fn command(&self, program: &str) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// The dashboard's session cookie is always `Secure`, which a browser keeps over plain HTTP only from a
/// loopback address: a login over plain HTTP is answered with the cookie on 127.0.0.1, and refused, saying
/// why, on another local address of the same wildcard listener (judged by the address the connection
/// reached). In a namespace of the test's own, so that the non-loopback address is no real interface's.
#[test]
fn a_login_over_plain_http_is_refused_off_loopback() {
    let ns = Namespace::new();
    let dir = tempfile::tempdir().unwrap();
    let mut up = ns.command(env!("CARGO_BIN_EXE_meridian"));
    up.args([
        "up",
        "--dns-listen",
        "127.0.0.1:5353",
        "--metrics-listen",
        "127.0.0.1:9100",
    ])
    .args([
        "--admin-listen",
        "0.0.0.0:9090",
        "--proxy-port",
        "0",
        "--https-port",
        "0",
    ])
    .arg("--data-dir")
    .arg(dir.path());
    let (_up, _) = crate::up::start_command(up);
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let login = |host: &str| {
        let o = ns
            .command("curl")
            .args(["-s", "-i", "-X", "POST", "-H", "content-type: application/json"])
            .args(["-d", &json!({ "token": token.trim() }).to_string()])
            .arg(format!("http://{host}:9090/dashboard/login"))
            .output()
            .unwrap();
        assert!(o.status.success(), "curl: {}", stderr(&o));
        stdout(&o)
    };
    let on_loopback = login("127.0.0.1");
    assert!(on_loopback.starts_with("HTTP/1.1 204"), "{on_loopback}");
    let cookie = on_loopback
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {on_loopback}"));
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.trim_end().ends_with("; Secure"),
        "{cookie}"
    );
    let off = login("192.0.2.1");
    assert!(off.starts_with("HTTP/1.1 403"), "{off}");
    assert!(!off.to_ascii_lowercase().contains("set-cookie"), "{off}");
    let body: Value = serde_json::from_str(off.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap();
    assert_eq!(body["error"]["code"], "needs-https", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for says in [
        "plain HTTP",
        "not a loopback address",
        "192.0.2.1",
        "--admin-tls-cert",
        "SSH tunnel",
    ] {
        assert!(message.contains(says), "{says:?}: {message}");
    }
}
