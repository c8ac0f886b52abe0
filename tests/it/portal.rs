//! The tenant portal, route by route, on both stores: sign-in links and sessions, every page,
//! every form (with and without its CSRF token), and another tenant's ids tried everywhere.

use crate::portal_support;
use crate::{common, for_each_store};

use std::time::Duration;

use common::{Receiver, Reply, StoreKind, TestApp};
use portal_support::{Portal, hidden_field, open_link, portal_link, submit_login};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A tenant with one destination on a real receiver and one delivered event.
async fn seeded(app: &TestApp, tenant: &str, rx: &Receiver) -> (String, String, String) {
    app.tenant(tenant).await;
    let (dst, secret) = app.destination(tenant, &rx.url, &["*"]).await;
    let evt = app
        .publish(tenant, "job.completed", json!({"job": 42, "ok": true}))
        .await;
    app.worker.tick().await;
    (dst, secret, evt)
}

async fn delivery_id(app: &TestApp, tenant: &str, evt: &str) -> String {
    app.only_delivery(tenant, evt).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn a_login_link_sets_an_httponly_lax_cookie_scoped_to_the_portal_and_works_once(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let link = portal_link(&app, "acme").await;
    let opened = open_link(&app, &link).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    let cookie = opened.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("herald_portal=hps_"), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/portal", "Max-Age=28800"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain-http deployment: {cookie}"
    );

    let again = open_link(&app, &link).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.body.contains("already been used"), "{}", again.body);
    assert!(again.headers.get("set-cookie").is_none());
}

async fn opening_a_link_shows_a_sign_in_page_and_only_submitting_it_spends_the_link(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let link = portal_link(&app, "acme").await;
    // A chat app's link preview fetches the page (twice, say): no session, nothing spent.
    for _ in 0..2 {
        let page = portal_support::open_page(&app, &link).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.headers.get("set-cookie").is_none());
        assert!(
            page.body
                .contains(r#"<form id="login" method="post" action="/portal/login""#)
        );
        assert!(page.body.contains(r#"<script src="/portal/login.js">"#));
        let token = hidden_field(&page.body, "token").unwrap();
        assert!(link.ends_with(&token));
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
    }
    let script = app
        .client
        .get(app.url("/portal/login.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(
        script
            .text()
            .await
            .unwrap()
            .contains(r#"getElementById("login").submit()"#)
    );

    // The browser submits the page's form: signed in, once.
    let token = link.rsplit("token=").next().unwrap();
    let signed_in = submit_login(&app, &[("token", token)]).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert!(
        signed_in.headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("herald_portal=hps_")
    );
    let again = submit_login(&app, &[("token", token)]).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.body.contains("already been used"));
    let reopened = portal_support::open_page(&app, &link).await;
    assert_eq!(reopened.status, StatusCode::GONE);
    assert!(reopened.body.contains("already been used"));

    // A form without a token, or with one that was never issued, signs nobody in.
    for fields in [
        vec![],
        vec![("token", "hpl_never-issued")],
        vec![("token", "hps_x")],
    ] {
        let refused = submit_login(&app, &fields).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{fields:?}");
        assert!(refused.body.contains("not valid"));
        assert!(refused.headers.get("set-cookie").is_none());
    }
}

async fn a_session_ends_after_its_lifetime(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let portal = Portal::sign_in(&app, "acme").await;
    app.clock.advance(Duration::from_secs(8 * 3600 - 60));
    assert_eq!(portal.get("/portal").await.status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(61));
    let ended = portal.get("/portal").await;
    assert_eq!(ended.status, StatusCode::UNAUTHORIZED);
    assert!(ended.body.contains("session has ended"));
}

async fn the_overview_pages_through_many_destinations(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    for i in 0..51 {
        app.destination("acme", &format!("https://example.com/hook/{i:02}"), &["*"])
            .await;
    }
    let portal = Portal::sign_in(&app, "acme").await;
    let first = portal.get("/portal").await.body;
    assert_eq!(first.matches(r#"class="dest-url""#).count(), 50);
    let more = first
        .split(r#"">More destinations"#)
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .unwrap()
        .to_string();
    let second = portal.get(&more).await.body;
    assert_eq!(second.matches(r#"class="dest-url""#).count(), 1);
    assert!(second.contains("https://example.com/hook/50"));
}

async fn an_expired_link_shows_a_clear_page_with_the_return_url(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| {
        c.portal_return_url = Some("https://platform.example/settings/webhooks".into())
    })
    .await;
    app.tenant("acme").await;
    let link = portal_link(&app, "acme").await;
    app.clock.advance(Duration::from_secs(15 * 60 + 1));
    let opened = open_link(&app, &link).await;
    assert_eq!(opened.status, StatusCode::GONE);
    assert!(opened.body.contains("has expired"), "{}", opened.body);
    assert!(
        opened
            .body
            .contains(r#"href="https://platform.example/settings/webhooks""#)
    );
    let forged = open_link(&app, "/portal/login?token=hpl_not-a-real-token").await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    assert!(forged.body.contains("not valid"));
}

async fn the_cookie_is_secure_when_the_public_url_is_https(kind: StoreKind) {
    let app = TestApp::spawn_with(kind, |c| {
        c.public_url = Some("https://hooks.example.com".into())
    })
    .await;
    app.tenant("acme").await;
    let r = app
        .post("/v1/tenants/acme/portal-sessions", json!({}))
        .await;
    let v: Value = r.json().await.unwrap();
    let url = v["url"].as_str().unwrap();
    assert!(url.starts_with("https://hooks.example.com/portal/login?token=hpl_"));
    let opened = open_link(&app, &url["https://hooks.example.com".len()..]).await;
    let cookie = opened.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

async fn portal_sessions_are_issued_to_the_admin_only(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let unknown = app
        .post("/v1/tenants/nobody/portal-sessions", json!({}))
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let token: Value = app
        .post("/v1/tenants/acme/tokens", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url("/v1/tenants/acme/portal-sessions"))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let doc = app.get_json("/openapi.json").await;
    let op = &doc["paths"]["/v1/tenants/{tenant_id}/portal-sessions"]["post"];
    assert!(op["responses"].get("201").is_some(), "documented: {op}");
    assert!(doc["components"]["schemas"].get("PortalLink").is_some());
}

async fn pages_without_a_session_answer_401_and_sign_out_ends_it(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    for path in ["/portal", "/portal/deliveries", "/portal/callbacks"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.text().await.unwrap().contains("session has ended"));
    }
    let portal = Portal::sign_in(&app, "acme").await;
    let out = portal.post("/portal/logout", &[]).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(portal.get("/portal").await.status, StatusCode::UNAUTHORIZED);
}

async fn every_page_renders_for_the_signed_in_tenant_with_security_headers(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    let (dst, _, evt) = seeded(&app, "acme", &rx).await;
    let dlv = delivery_id(&app, "acme", &evt).await;
    let e: Value = app
        .post(
            "/v1/callback-endpoints",
            json!({"tenant_id": "acme", "label": "render job"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let cbe = e["id"].as_str().unwrap();
    let slug = e["slug"].as_str().unwrap();
    let r = app
        .client
        .post(app.url(&format!("/in/{slug}")))
        .json(&json!({"status": "rendered", "frames": 240}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let portal = Portal::sign_in(&app, "acme").await;
    let pages = [
        ("/portal".to_string(), rx.url.clone()),
        (format!("/portal/destinations/{dst}"), "100.0%".into()),
        (format!("/portal/destinations/{dst}/edit"), rx.url.clone()),
        ("/portal/destinations/new".into(), "Endpoint URL".into()),
        ("/portal/deliveries".into(), "job.completed".into()),
        (
            format!(
                "/portal/deliveries?status=succeeded&destination_id={dst}&topic=job.completed&event_id={evt}&since=2020-01-01T00:00"
            ),
            dlv.clone(),
        ),
        (
            format!("/portal/deliveries/{dlv}"),
            "&#34;job&#34;: 42".into(),
        ),
        ("/portal/callbacks".into(), "render job".into()),
        (
            format!("/portal/callbacks/{cbe}"),
            "&#34;frames&#34;: 240".into(),
        ),
    ];
    for (path, expect) in pages {
        let p = portal.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        assert!(p.body.contains(&expect), "{path} should show {expect}");
        assert!(
            p.body
                .contains(r#"<link rel="stylesheet" href="/portal/portal.css">"#)
        );
        let h = &p.headers;
        assert_eq!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .split(';')
                .next(),
            Some("default-src 'self'")
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
    }
    // The delivery page shows the attempt: status, headers sent, the receiver's answer.
    let detail = portal.get(&format!("/portal/deliveries/{dlv}")).await.body;
    for part in ["HTTP 200", "webhook-signature", "reply 200", "Replay now"] {
        assert!(detail.contains(part), "delivery page lacks {part}");
    }
    let css = portal.get("/portal/portal.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.body.contains("@media (max-width: 720px)"));
    let missing = portal.get("/portal/nothing-here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("Page not found"));
    // Only the portal's own paths get its HTML pages.
    let api = app.get("/v1/nothing-here").await;
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert!(!api.text().await.unwrap().contains("<html"));
}

async fn forms_without_the_sessions_csrf_token_are_refused_and_change_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    let (dst, secret, evt) = seeded(&app, "acme", &rx).await;
    let dlv = delivery_id(&app, "acme", &evt).await;
    let portal = Portal::sign_in(&app, "acme").await;
    let other = Portal::sign_in(&app, "acme").await;
    assert_ne!(portal.csrf, other.csrf, "each session has its own token");

    let disable = format!("/portal/destinations/{dst}/disable");
    let missing = portal.post_raw(&disable, &[("reason", "forged")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("nothing was changed"));
    let foreign = portal
        .post_raw(&disable, &[("csrf", &other.csrf), ("reason", "forged")])
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let forms = [
        format!("/portal/destinations/{dst}/enable"),
        format!("/portal/destinations/{dst}/reveal-secret"),
        format!("/portal/destinations/{dst}/rotate-secret"),
        format!("/portal/destinations/{dst}/test"),
        format!("/portal/destinations/{dst}/recover"),
        format!("/portal/deliveries/{dlv}/retry"),
        format!("/portal/destinations/{dst}"),
        "/portal/destinations".to_string(),
        "/portal/logout".to_string(),
    ];
    for path in forms {
        let fields = [
            ("url", "https://evil.example"),
            ("since", "2020-01-01T00:00"),
        ];
        let r = portal.post_raw(&path, &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(!r.body.contains(&secret), "{path} revealed the secret");
    }
    let delivery = app.delivery(&dlv).await;
    assert_eq!(
        delivery["attempts"].as_array().unwrap().len(),
        1,
        "no replay"
    );
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{dst}"))
        .await;
    assert_eq!(d["enabled"], true);
    assert_eq!(d["url"], rx.url.as_str());
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(rx.count(), 1, "no test event was sent");
    assert_eq!(
        portal.get("/portal").await.status,
        StatusCode::OK,
        "still signed in"
    );
}

async fn another_tenants_ids_are_not_found_from_the_portal(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start_scripted(vec![Reply::status(500)]).await;
    let (dst, _, evt) = seeded(&app, "globex", &rx).await;
    let dlv = delivery_id(&app, "globex", &evt).await;
    let e: Value = app
        .post("/v1/callback-endpoints", json!({"tenant_id": "globex"}))
        .await
        .json()
        .await
        .unwrap();
    let cbe = e["id"].as_str().unwrap();
    app.tenant("acme").await;
    let portal = Portal::sign_in(&app, "acme").await;

    for path in [
        format!("/portal/destinations/{dst}"),
        format!("/portal/destinations/{dst}/edit"),
        format!("/portal/deliveries/{dlv}"),
        format!("/portal/callbacks/{cbe}"),
    ] {
        assert_eq!(
            portal.get(&path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let since = [("since", "2020-01-01T00:00")];
    let posts: Vec<(String, &[(&str, &str)])> = vec![
        (format!("/portal/destinations/{dst}/disable"), &[]),
        (format!("/portal/destinations/{dst}/enable"), &[]),
        (format!("/portal/destinations/{dst}/reveal-secret"), &[]),
        (format!("/portal/destinations/{dst}/rotate-secret"), &[]),
        (format!("/portal/destinations/{dst}/test"), &[]),
        (format!("/portal/destinations/{dst}/recover"), &since),
        (
            format!("/portal/destinations/{dst}"),
            &[("url", "https://evil.example/x"), ("topics", "*")],
        ),
        (format!("/portal/deliveries/{dlv}/retry"), &[]),
    ];
    for (path, fields) in posts {
        let r = portal.post(&path, fields).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        assert!(!r.body.contains("whsec_"), "{path} leaked a secret");
    }
    // Lists show nothing of globex's.
    let list = portal.get("/portal/deliveries").await.body;
    assert!(!list.contains(&dlv) && !list.contains(&evt));
    let filtered = portal
        .get(&format!("/portal/deliveries?destination_id={dst}"))
        .await
        .body;
    assert!(!filtered.contains(&dlv));
    assert!(!portal.get("/portal/callbacks").await.body.contains(cbe));
    assert!(!portal.get("/portal").await.body.contains(&dst));

    let d = app
        .get_json(&format!("/v1/tenants/globex/destinations/{dst}"))
        .await;
    assert_eq!(
        (d["enabled"].as_bool(), d["url"].as_str()),
        (Some(true), Some(rx.url.as_str()))
    );
    let delivery = app.delivery(&dlv).await;
    assert_eq!(
        delivery["attempts"].as_array().unwrap().len(),
        1,
        "no replay"
    );
    assert_eq!(rx.count(), 1, "no test event");
}

async fn the_destination_forms_show_validation_messages_next_to_the_fields_and_save_nothing(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let portal = Portal::sign_in(&app, "acme").await;
    let cases = [
        (vec![("url", "not a url"), ("topics", "*")], "url-error"),
        (
            vec![("url", "https://example.com/h"), ("topics", "")],
            "topics-error",
        ),
        (
            vec![
                ("url", "https://example.com/h"),
                ("topics", "job.*"),
                ("filter", "{not json"),
            ],
            "filter-error",
        ),
        (
            vec![
                ("url", "https://example.com/h"),
                ("topics", "*"),
                ("filter", r#"{"data": {"$bogus": 1}}"#),
            ],
            "filter-error",
        ),
        (
            vec![
                ("url", "https://example.com/h"),
                ("topics", "*"),
                ("headers", "no colon here"),
            ],
            "headers-error",
        ),
    ];
    for (fields, error_id) in cases {
        let r = portal.post("/portal/destinations", &fields).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert!(
            r.body.contains(&format!(r#"id="{error_id}""#)),
            "{fields:?}: {}",
            r.body
        );
        assert!(r.body.contains(r#"aria-invalid="true""#));
        assert!(r.body.contains(&portal.csrf), "the form can be sent again");
    }
    let list = app.get_json("/v1/tenants/acme/destinations").await;
    assert!(list["data"].as_array().unwrap().is_empty(), "nothing saved");

    let created = portal
        .post(
            "/portal/destinations",
            &[
                ("url", "https://example.com/hooks"),
                ("description", "Billing service"),
                ("topics", "job.*\ninvoice.paid"),
                ("filter", r#"{"data": {"amount": {"$gt": 10}}}"#),
                ("headers", "X-Team: billing"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let location = created.location.unwrap();
    let id = location
        .strip_prefix("/portal/destinations/")
        .and_then(|l| l.strip_suffix("?done=created"))
        .unwrap()
        .to_string();
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{id}"))
        .await;
    assert_eq!(d["topics"], json!(["job.*", "invoice.paid"]));
    assert_eq!(d["filter"], json!({"data": {"amount": {"$gt": 10}}}));
    assert_eq!(d["headers"], json!({"X-Team": "billing"}));
    assert!(
        portal
            .get(&location)
            .await
            .body
            .contains("Destination created")
    );

    let bad_edit = portal
        .post(
            &format!("/portal/destinations/{id}"),
            &[("url", "ftp://x"), ("topics", "*")],
        )
        .await;
    assert_eq!(bad_edit.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_edit.body.contains(r#"id="url-error""#));
    let edited = portal
        .post(
            &format!("/portal/destinations/{id}"),
            &[
                ("url", "https://example.com/v2"),
                ("topics", "*"),
                ("filter", ""),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER);
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{id}"))
        .await;
    assert_eq!(d["url"], "https://example.com/v2");
    assert_eq!(d["filter"], Value::Null);
    assert_eq!(d["description"], Value::Null);
}

async fn the_destination_page_disables_enables_reveals_rotates_and_sends_a_test_event(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    let (dst, secret, _) = seeded(&app, "acme", &rx).await;
    let portal = Portal::sign_in(&app, "acme").await;
    let page = format!("/portal/destinations/{dst}");

    let off = portal
        .post(
            &format!("{page}/disable"),
            &[("reason", "maintenance window")],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER);
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{dst}"))
        .await;
    assert_eq!(d["enabled"], false);
    assert_eq!(
        d["disabled_reason"],
        "disabled in the portal: maintenance window"
    );
    let shown = portal.get(off.location.as_deref().unwrap()).await.body;
    assert!(shown.contains("maintenance window") && shown.contains(">Enable<"));
    assert!(
        portal
            .get("/portal")
            .await
            .body
            .contains("maintenance window")
    );

    let on = portal.post(&format!("{page}/enable"), &[]).await;
    assert_eq!(on.status, StatusCode::SEE_OTHER);
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{dst}"))
        .await;
    assert_eq!(d["enabled"], true);

    assert!(
        !portal.get(&page).await.body.contains(&secret),
        "hidden until revealed"
    );
    let revealed = portal.post(&format!("{page}/reveal-secret"), &[]).await;
    assert_eq!(revealed.status, StatusCode::OK);
    assert!(revealed.body.contains(&secret));

    let rotated = portal.post(&format!("{page}/rotate-secret"), &[]).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_secret = rotated
        .body
        .split(r#"id="secret-value" class="mono secret" type="text" readonly value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert!(rotated.body.contains("previous secret too until"));

    let test = portal.post(&format!("{page}/test"), &[]).await;
    assert_eq!(test.status, StatusCode::SEE_OTHER);
    let location = test.location.unwrap();
    assert!(
        location.starts_with("/portal/deliveries?event_id=evt_"),
        "{location}"
    );
    app.worker.tick().await;
    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    let body = got[1].json();
    assert_eq!(body["type"], "herald.test");
    // Signed with both secrets during the overlap.
    let sigs = got[1].headers["webhook-signature"].split(' ').count();
    assert_eq!(sigs, 2);
    let listed = portal.get(&location).await.body;
    assert!(listed.contains("Test event sent") && listed.contains("herald.test"));
}

async fn a_failed_delivery_is_found_by_status_and_replayed_from_its_page(kind: StoreKind) {
    // No retries: one failed attempt makes the delivery `failed`.
    let app = TestApp::spawn_with(kind, |c| c.retry_schedule = String::new()).await;
    let rx = Receiver::start_scripted(vec![Reply::status(503)]).await;
    let (_, _, evt) = seeded(&app, "acme", &rx).await;
    let dlv = delivery_id(&app, "acme", &evt).await;
    let portal = Portal::sign_in(&app, "acme").await;

    let failed = portal.get("/portal/deliveries?status=failed").await.body;
    assert!(failed.contains(&dlv), "the failed delivery is listed");
    let none = portal.get("/portal/deliveries?status=succeeded").await.body;
    assert!(!none.contains(&dlv));
    let page = portal.get(&format!("/portal/deliveries/{dlv}")).await.body;
    assert!(page.contains("HTTP 503") && page.contains("reply 503"));

    let replay = portal
        .post(&format!("/portal/deliveries/{dlv}/retry"), &[])
        .await;
    assert_eq!(replay.status, StatusCode::SEE_OTHER);
    app.worker.tick().await;
    rx.wait_for(2, Duration::from_secs(5)).await;
    let after = portal.get(replay.location.as_deref().unwrap()).await.body;
    assert!(after.contains("A new attempt is scheduled"));
    assert!(
        after.contains(r#"id="delivery-status">succeeded"#),
        "{after}"
    );
    assert!(after.contains("manual") && after.contains("HTTP 200"));
}

async fn the_deliveries_list_pages_with_a_cursor_and_explains_bad_filters(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.destination("acme", &rx.url, &["*"]).await;
    let events: Vec<Value> = (0..60)
        .map(|i| json!({"tenant_id": "acme", "topic": format!("job.n{}", i % 2), "data": {"i": i}}))
        .collect();
    let r = app
        .post("/v1/events/batch", json!({"events": events}))
        .await;
    assert!(r.status().is_success());
    let portal = Portal::sign_in(&app, "acme").await;

    let first = portal.get("/portal/deliveries").await.body;
    assert_eq!(
        first.matches("<tr>").count(),
        1 + 50,
        "header row + a page of 50"
    );
    let next = first
        .split(r#"rel="next""#)
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(next.starts_with("/portal/deliveries?after=dlv_"), "{next}");
    let second = portal.get(&next).await.body;
    assert_eq!(second.matches("<tr>").count(), 1 + 10);
    assert!(!second.contains(r#"rel="next""#));

    let topic = portal.get("/portal/deliveries?topic=job.n1").await.body;
    assert_eq!(topic.matches("<tr>").count(), 1 + 30);
    let future = portal
        .get("/portal/deliveries?since=2999-01-01T00:00")
        .await
        .body;
    assert!(future.contains("No deliveries match"));
    let past = portal
        .get("/portal/deliveries?until=2000-01-01T00:00")
        .await
        .body;
    assert!(past.contains("No deliveries match"));

    for (query, id) in [
        ("since=yesterday", "since-error"),
        ("event_id=nope", "event-error"),
        ("status=lost", "status"),
    ] {
        let p = portal.get(&format!("/portal/deliveries?{query}")).await;
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(
            p.body.contains(id) && p.body.contains("field-error"),
            "{query}"
        );
    }
}

async fn bulk_recovery_from_the_destination_page_schedules_failed_deliveries_again(
    kind: StoreKind,
) {
    let app = TestApp::spawn_with(kind, |c| c.retry_schedule = String::new()).await;
    let rx = Receiver::start_scripted(vec![Reply::status(500), Reply::status(500)]).await;
    app.tenant("acme").await;
    let (dst, _) = app.destination("acme", &rx.url, &["*"]).await;
    app.publish("acme", "a.b", json!({})).await;
    app.publish("acme", "a.b", json!({})).await;
    app.worker.tick().await;
    let portal = Portal::sign_in(&app, "acme").await;
    let health = portal
        .get(&format!("/portal/destinations/{dst}"))
        .await
        .body;
    assert!(health.contains("0.0%") && health.contains("0 of 2 deliveries"));

    let bad = portal
        .post(
            &format!("/portal/destinations/{dst}/recover"),
            &[("since", "soon")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = portal
        .post(
            &format!("/portal/destinations/{dst}/recover"),
            &[("since", "2020-01-01T00:00")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    app.worker.tick().await;
    rx.wait_for(4, Duration::from_secs(5)).await;
    let page = portal.get(r.location.as_deref().unwrap()).await.body;
    assert!(
        page.contains("2 deliveries since") && page.contains("Finished."),
        "{page}"
    );
    assert!(page.contains("100.0%"));
}

async fn an_endpoints_captured_requests_are_shown_newest_first_a_page_at_a_time(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let e: Value = app
        .post("/v1/callback-endpoints", json!({"tenant_id": "acme"}))
        .await
        .json()
        .await
        .unwrap();
    let (id, slug) = (e["id"].as_str().unwrap(), e["slug"].as_str().unwrap());
    for n in 1..=30 {
        let r = app
            .client
            .post(app.url(&format!("/in/{slug}")))
            .json(&json!({"n": n}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let portal = Portal::sign_in(&app, "acme").await;
    let shown = |body: &str| -> Vec<u32> {
        body.split("<strong>#")
            .skip(1)
            .map(|s| s.split('<').next().unwrap().parse().unwrap())
            .collect()
    };
    let first = portal.get(&format!("/portal/callbacks/{id}")).await.body;
    assert_eq!(shown(&first), (6..=30).rev().collect::<Vec<_>>());
    let older = first
        .split(r#"">Older requests"#)
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .unwrap()
        .to_string();
    assert_eq!(older, format!("/portal/callbacks/{id}?before=6"));
    let second = portal.get(&older).await.body;
    assert_eq!(shown(&second), vec![5, 4, 3, 2, 1]);
    assert!(!second.contains("Older requests"));
    let bad = portal
        .get(&format!("/portal/callbacks/{id}?before=soon"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("The address is malformed") && bad.body.contains("before"));
}

async fn the_portal_link_command_prints_a_link_that_signs_in(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let run = |tenant: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([
                "--config",
                "/nonexistent/herald.toml",
                "portal-link",
                "--tenant",
                tenant,
            ])
            .env("HERALD_DATABASE_URL", &app.db.url)
            .env("HERALD_PUBLIC_URL", &app.base)
            // The store's secrets are sealed with the test key: the CLI must hold it too.
            .env("HERALD_ENCRYPTION_KEY", common::ENCRYPTION_KEY)
            .output()
            .unwrap()
    };
    let out = run("acme");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = v["url"].as_str().unwrap();
    let prefix = format!("{}/portal/login?token=hpl_", app.base);
    assert!(url.starts_with(&prefix), "{url}");
    assert!(v["expires_at"].is_string());
    let opened = open_link(&app, &url[app.base.len()..]).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);

    let unknown = run("nobody");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("tenant not found"));
}

for_each_store!(
    the_event_types_page_shows_the_catalog_with_schemas_examples_and_deprecations,
    a_login_link_sets_an_httponly_lax_cookie_scoped_to_the_portal_and_works_once,
    opening_a_link_shows_a_sign_in_page_and_only_submitting_it_spends_the_link,
    a_session_ends_after_its_lifetime,
    the_overview_pages_through_many_destinations,
    an_expired_link_shows_a_clear_page_with_the_return_url,
    the_cookie_is_secure_when_the_public_url_is_https,
    portal_sessions_are_issued_to_the_admin_only,
    pages_without_a_session_answer_401_and_sign_out_ends_it,
    every_page_renders_for_the_signed_in_tenant_with_security_headers,
    forms_without_the_sessions_csrf_token_are_refused_and_change_nothing,
    another_tenants_ids_are_not_found_from_the_portal,
    the_destination_forms_show_validation_messages_next_to_the_fields_and_save_nothing,
    the_destination_page_disables_enables_reveals_rotates_and_sends_a_test_event,
    an_ed25519_destination_made_in_the_portal_shows_its_public_keys_and_never_its_signing_key,
    a_failed_delivery_is_found_by_status_and_replayed_from_its_page,
    the_deliveries_list_pages_with_a_cursor_and_explains_bad_filters,
    bulk_recovery_from_the_destination_page_schedules_failed_deliveries_again,
    the_portal_link_command_prints_a_link_that_signs_in,
    an_endpoints_captured_requests_are_shown_newest_first_a_page_at_a_time,
);

async fn an_ed25519_destination_made_in_the_portal_shows_its_public_keys_and_never_its_signing_key(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let portal = Portal::sign_in(&app, "acme").await;
    let form = portal.get("/portal/destinations/new").await;
    assert!(form.body.contains(r#"name="signature" value="ed25519""#));
    let created = portal
        .post(
            "/portal/destinations",
            &[
                ("url", "https://example.com/hooks"),
                ("topics", "*"),
                ("signature", "ed25519"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let page = created.location.unwrap();
    let page = page.split('?').next().unwrap().to_string();
    let dst = page.rsplit('/').next().unwrap();
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{dst}"))
        .await;
    assert_eq!(d["signature"], "ed25519");
    let key = d["public_keys"][0]["public_key"].as_str().unwrap();

    let shown = portal.get(&page).await.body;
    assert!(shown.contains(key), "the public key is on the page");
    assert!(!shown.contains("Reveal secret") && !shown.contains("whsk_"));

    let rotated = portal.post(&format!("{page}/rotate-secret"), &[]).await;
    assert_eq!(rotated.status, StatusCode::OK);
    assert!(rotated.body.contains("previous key too until"));
    let d = app
        .get_json(&format!("/v1/tenants/acme/destinations/{dst}"))
        .await;
    for k in d["public_keys"].as_array().unwrap() {
        assert!(rotated.body.contains(k["public_key"].as_str().unwrap()));
    }
    assert!(!rotated.body.contains("whsk_"));

    // Revealing shows no signing key either, and a forged signature choice is refused.
    let revealed = portal.post(&format!("{page}/reveal-secret"), &[]).await;
    assert!(!revealed.body.contains("whsk_"));
    let forged = portal
        .post(
            "/portal/destinations",
            &[
                ("url", "https://example.com/h"),
                ("topics", "*"),
                ("signature", "rsa"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.body);
}

async fn the_event_types_page_shows_the_catalog_with_schemas_examples_and_deprecations(
    kind: StoreKind,
) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let schema = json!({"type": "object", "required": ["job_id"],
                        "properties": {"job_id": {"type": "string", "minLength": 3}}});
    for (name, body) in [
        (
            "job.completed",
            json!({"description": "A render <finished>", "schema": schema,
                                 "examples": [{"job_id": "job_42"}]}),
        ),
        ("job.legacy", json!({"deprecated": true})),
        ("job.retired", json!({"archived": true})),
    ] {
        let r = app.put(&format!("/v1/event-types/{name}"), body).await;
        assert_eq!(r.status(), 201);
    }
    let portal = Portal::sign_in(&app, "acme").await;
    let page = portal.get("/portal/event-types").await;
    assert_eq!(page.status, StatusCode::OK);
    let b = &page.body;
    assert!(b.contains("id=\"type-job.completed\""), "{b}");
    assert!(
        b.contains("A render ") && !b.contains("<finished>"),
        "the description is shown, escaped"
    );
    assert!(b.contains("job_42"), "the example is shown");
    assert!(
        b.contains("minLength") && !b.contains("\"minLength\""),
        "the schema is shown"
    );
    let legacy = &b[b.find("id=\"type-job.legacy\"").unwrap()..];
    assert!(
        legacy.contains("Deprecated"),
        "the deprecated type is flagged"
    );
    assert!(legacy.contains("No schema: any JSON."));
    assert!(!b.contains("job.retired"), "archived types are left out");
    assert!(b.contains("aria-current=\"page\">Event types<"));
}
