//! A minimal W3C WebDriver client over plain HTTP/1.1 (std sockets, serde_json) for Debian's chromedriver
//! driving headless Chromium: new session, navigate, find and type, click, point at, run a script, read
//! the browser console, take a screenshot. Enough for the dashboard's tests, with no WebDriver crate to
//! vet.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Interrupted, free_tcp_port};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium's real executable (`/usr/bin/chromium` is a shell wrapper chromedriver cannot drive).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// One request to chromedriver: (HTTP status, JSON body).
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open whatever the request says: read the head, then exactly
    // Content-Length octets (or chunks up to the last one).
    let mut reader = std::io::BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let text = match length {
        Some(n) => {
            let mut body = vec![0u8; n];
            reader.read_exact(&mut body).unwrap();
            String::from_utf8_lossy(&body).into_owned()
        }
        None if lower.contains("transfer-encoding: chunked") => read_chunked(&mut reader),
        None => {
            let mut body = Vec::new();
            let _ = reader.read_to_end(&mut body);
            String::from_utf8_lossy(&body).into_owned()
        }
    };
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn read_chunked(reader: &mut impl std::io::BufRead) -> String {
    let mut out = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            break;
        }
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let mut chunk = vec![0u8; n + 2];
        reader.read_exact(&mut chunk).unwrap();
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A browser session: chromedriver (our process, stopped when dropped) and one headless Chromium.
pub(crate) struct Browser {
    addr: SocketAddr,
    session: String,
    _driver: Interrupted,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    pub(crate) fn start() -> Self {
        let port = free_tcp_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver; scripts/install-deps installs it)");
        let driver = Interrupted(driver);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1100", "--no-first-run", "--disable-extensions",
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let (status, v) = call(addr, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_owned();
        Self {
            addr,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = call(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    /// Loads `url` (returns once the page's load event has fired).
    pub(crate) fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns what it returns.
    pub(crate) fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// The element matching `css`, if any.
    fn find(&self, css: &str) -> Option<String> {
        let (status, v) = call(
            self.addr,
            "POST",
            &format!("/session/{}/element", self.session),
            Some(&json!({ "using": "css selector", "value": css })),
        );
        if status != 200 {
            return None;
        }
        let id = v["value"][ELEMENT].as_str();
        Some(id.unwrap_or_else(|| panic!("find {css}: {v}")).to_owned())
    }

    /// Types `text` into the element matching `css` (after clearing it; "" only clears it).
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).unwrap_or_else(|| panic!("no element {css}"));
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        if text.is_empty() {
            return;
        }
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the element matching `css`.
    pub(crate) fn click(&self, css: &str) {
        let e = self.find(css).unwrap_or_else(|| panic!("no element {css}"));
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Moves the mouse pointer to the middle of the element matching `css` (what a user pointing at it
    /// does: `mouseenter` fires, a `<title>` would show). Tried three times: a page that redraws may
    /// replace the element between finding it and pointing at it.
    pub(crate) fn hover(&self, css: &str) {
        let mut last = Value::Null;
        for _ in 0..3 {
            let e = self.find(css).unwrap_or_else(|| panic!("no element {css}"));
            let actions = json!({"actions": [{
                "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                "actions": [{"type": "pointerMove", "duration": 0, "origin": {ELEMENT: e}, "x": 0, "y": 0}],
            }]});
            let (status, v) = call(
                self.addr,
                "POST",
                &format!("/session/{}/actions", self.session),
                Some(&actions),
            );
            if status == 200 {
                return;
            }
            last = v;
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("pointing at {css}: {last}");
    }

    /// Polls `script` until it returns something other than null/false/"" , or panics after `within`.
    pub(crate) fn wait_for(&self, what: &str, script: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(script, json!([]));
            let done = !(v.is_null() || v == json!(false) || v == json!(""));
            if done {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The browser console's entries since the last call: (level, message).
    pub(crate) fn console(&self) -> Vec<(String, String)> {
        let v = self.cmd("POST", "/se/log", Some(json!({ "type": "browser" })));
        v.as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_owned(),
                            e["message"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a PNG screenshot of the window to `path`, and prints where (test output: CI logs say where
    /// the artifacts are).
    pub(crate) fn screenshot(&self, path: &Path) {
        if let Err(e) = self.try_screenshot(path) {
            panic!("screenshot {}: {e}", path.display());
        }
    }

    /// [`Self::screenshot`] without panicking (for a test that is already failing).
    pub(crate) fn try_screenshot(&self, path: &Path) -> Result<(), String> {
        let (status, v) = call(
            self.addr,
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        );
        let b64 = match (status, v["value"].as_str()) {
            (200, Some(b64)) => b64.to_owned(),
            _ => return Err(format!("chromedriver answered {status}: {v}")),
        };
        let parent = path.parent().ok_or("no directory")?;
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("b64");
        std::fs::write(&tmp, b64).map_err(|e| e.to_string())?;
        let out = Command::new("base64")
            .arg("-d")
            .arg(&tmp)
            .output()
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&tmp);
        if !out.status.success() {
            return Err(format!(
                "base64 -d failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::write(path, out.stdout).map_err(|e| e.to_string())?;
        eprintln!("screenshot: {}", path.display());
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(self.addr, "DELETE", &format!("/session/{}", self.session), None);
    }
}
