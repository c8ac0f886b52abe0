//! Helpers shared by the portal tests: sign-in links and a cookie-carrying portal client.

pub mod webdriver;

use reqwest::StatusCode;
use serde_json::Value;

use super::common::TestApp;

/// Asks the API for a sign-in link; returns its path (`/portal/login?token=…`) so tests can
/// open it on the app's own address whatever `public_url` says.
pub async fn portal_link(app: &TestApp, tenant: &str) -> String {
    let r = app
        .post(
            &format!("/v1/tenants/{tenant}/portal-sessions"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert!(v["expires_at"].is_string());
    let url = v["url"].as_str().unwrap();
    let path = &url[url.find("/portal/login").expect("a portal login URL")..];
    path.to_string()
}

/// A browser stand-in: holds the session cookie and the page's CSRF token, follows no
/// redirects (tests assert them).
pub struct Portal<'a> {
    pub app: &'a TestApp,
    pub client: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page(r: reqwest::Response) -> Page {
    Page {
        status: r.status(),
        location: r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string()),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

/// The value of the first hidden field called `name` on a page.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let attr = format!(r#"name="{name}" value=""#);
    let at = html.find(&attr)? + attr.len();
    Some(html[at..].split('"').next()?.to_string())
}

/// The value of the first hidden CSRF field on a page.
pub fn csrf_of(html: &str) -> Option<String> {
    hidden_field(html, "csrf")
}

/// Opens a sign-in link as a browser does, without following redirects: loads the sign-in
/// page and, when it offers its form, submits it (what the page's script does). Returns the
/// last answer: the sign-in (or its refusal), or the page's own refusal.
pub async fn open_link(app: &TestApp, path: &str) -> Page {
    let shown = open_page(app, path).await;
    if shown.status != StatusCode::OK {
        return shown;
    }
    let token = hidden_field(&shown.body, "token").expect("the sign-in page has its form");
    submit_login(app, &[("token", &token)]).await
}

/// GETs a page (a sign-in link, say) without a cookie and without following redirects.
pub async fn open_page(app: &TestApp, path: &str) -> Page {
    page(no_redirects().get(app.url(path)).send().await.unwrap()).await
}

/// POSTs the sign-in form with exactly these fields.
pub async fn submit_login(app: &TestApp, fields: &[(&str, &str)]) -> Page {
    let r = no_redirects()
        .post(app.url("/portal/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
        .send()
        .await
        .unwrap();
    page(r).await
}

impl<'a> Portal<'a> {
    /// Signs in as `tenant` through a fresh link, as a browser would.
    pub async fn sign_in(app: &'a TestApp, tenant: &str) -> Portal<'a> {
        let link = portal_link(app, tenant).await;
        let opened = open_link(app, &link).await;
        assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
        assert_eq!(opened.location.as_deref(), Some("/portal"));
        let set = opened.headers["set-cookie"].to_str().unwrap();
        let cookie = set.split(';').next().unwrap().to_string();
        let mut p = Portal {
            app,
            client: no_redirects(),
            cookie,
            csrf: String::new(),
        };
        let home = p.get("/portal").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        p.csrf = csrf_of(&home.body).expect("the overview has a form");
        p
    }

    pub async fn get(&self, path: &str) -> Page {
        page(
            self.client
                .get(self.app.url(path))
                .header("cookie", &self.cookie)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POSTs a form with this session's CSRF token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// POSTs exactly these fields (no CSRF token unless given).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        page(
            self.client
                .post(self.app.url(path))
                .header("cookie", &self.cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}
