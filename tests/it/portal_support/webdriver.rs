//! A small W3C WebDriver client over reqwest, driving the system's headless Chromium through
//! `chromedriver` (Debian's `chromium` and `chromium-driver`, installed by `scripts/test`).
//!
//! Why not `fantoccini`: it brings its own hyper client stack and TLS choice plus the
//! `webdriver` protocol crate; the dozen commands these tests need are plain JSON over HTTP,
//! and reqwest is already in the tree.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process on a free loopback port, killed on drop.
pub struct Driver {
    child: Child,
    pub base: String,
}

impl Driver {
    pub async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (scripts/test installs chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, base }
    }

    /// A new headless Chromium session with a window of this size.
    pub async fn browser(&self, width: u32, height: u32) -> Browser {
        let client = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            }
        }}});
        let v: Value = client
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"));
        let b = Browser {
            client,
            session: format!("{}/session/{id}", self.base),
        };
        b.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
        // Element look-ups wait (up to 10 s) for the element to appear: a click on a link or a
        // form's button returns before the next page has loaded.
        b.cmd("POST", "/timeouts", json!({"implicit": 10_000}))
            .await;
        b
    }
}

fn chromium_binary() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/usr/bin/chromium")
        .to_string()
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Browser {
    client: reqwest::Client,
    session: String,
}

#[derive(Clone)]
pub struct Element(String);

impl Browser {
    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = v["value"].get("error") {
            panic!("WebDriver {method} {path}: {err} {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    /// The browser's Back button.
    pub async fn back(&self) {
        self.cmd("POST", "/back", json!({})).await;
    }

    pub async fn current_url(&self) -> String {
        self.cmd("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.cmd("GET", "/source", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Whether the page shows `text` within 10 s. A click on a form's button returns before
    /// the browser has loaded the answer, so a check right after it must wait for the page.
    pub async fn shows(&self, text: &str) -> bool {
        self.within_10s(async || self.source().await.contains(text))
            .await
    }

    /// Whether the address bar satisfies `check` within 10 s: like [`Browser::shows`], what a
    /// check right after submitting a form must use, since until the answer has loaded the
    /// browser still shows (and `find` still searches) the page the form was on.
    pub async fn url_becomes(&self, check: impl Fn(&str) -> bool) -> bool {
        self.within_10s(async || check(&self.current_url().await))
            .await
    }

    /// Asks `holds` every 50 ms until it is true (→ true) or 10 s have passed (→ false).
    /// WebDriver has no event for "the page changed", so this polls.
    async fn within_10s(&self, holds: impl AsyncFn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if holds().await {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        Element(v[ELEMENT].as_str().unwrap().to_string())
    }

    /// The button (or link) whose text is exactly `text`.
    pub async fn find_text(&self, tag: &str, text: &str) -> Element {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "xpath", "value": format!("//{tag}[normalize-space()='{text}']")}),
            )
            .await;
        Element(v[ELEMENT].as_str().unwrap().to_string())
    }

    pub async fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn value(&self, e: &Element) -> String {
        self.cmd(
            "GET",
            &format!("/element/{}/property/value", e.0),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.cmd("GET", "/cookie", Value::Null)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The page's width as laid out (to check nothing overflows a phone screen).
    pub async fn scroll_width(&self) -> u64 {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": "return document.documentElement.scrollWidth", "args": []}),
        )
        .await
        .as_u64()
        .unwrap()
    }

    /// The narrowest rendered width, in CSS pixels, of the elements `css` selects (to check
    /// that long content squeezes no column to nothing).
    pub async fn narrowest(&self, css: &str) -> f64 {
        let script = "return Math.min(...Array.from(document.querySelectorAll(arguments[0]), \
                      e => e.getBoundingClientRect().width))";
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": [css]}),
        )
        .await
        .as_f64()
        .unwrap_or_else(|| panic!("no element matches {css}"))
    }

    /// Saves a PNG of the window under `artifacts/screenshots/`.
    pub async fn screenshot(&self, name: &str) {
        let v = self.cmd("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn quit(&self) {
        self.cmd("DELETE", "", Value::Null).await;
    }
}
