//! Helpers shared by the portal tests: sign-in links and a cookie-carrying portal client.
#![allow(dead_code)]

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

/// The value of the first hidden CSRF field on a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    Some(html[at..].split('"').next()?.to_string())
}

/// Opens a sign-in link without following the redirect.
pub async fn open_link(app: &TestApp, path: &str) -> Page {
    page(no_redirects().get(app.url(path)).send().await.unwrap()).await
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
