//! The portal end to end in real headless Chromium: sign in through a portal link, find a
//! failed delivery, replay it against a receiver that now succeeds and see the new attempt;
//! rotate a secret; disable and re-enable a destination. Screenshots of the main pages, on a
//! 1440 px desktop and a 375 px phone, go to `artifacts/screenshots/` (not committed).
//!
//! The store behaviours behind these pages are covered on both stores by `tests/it/portal.rs`;
//! this file checks what only a browser can (cookies, redirects, forms, layout), on SQLite.

use crate::common;
use crate::portal_support;

use std::time::Duration;

use common::{Receiver, Reply, StoreKind, TestApp};
use portal_support::portal_link;
use portal_support::webdriver::{Browser, Driver};
use serde_json::{Value, json};

/// A tenant with two destinations: a healthy one, and one whose receiver failed once (and
/// now answers 200). Returns the failing destination's id and its secret.
async fn seed(app: &TestApp, healthy: &Receiver, flaky: &Receiver) -> (String, String) {
    app.tenant("acme").await;
    let (_, _) = app
        .destination_with(
            "acme",
            json!({"type": "webhook", "url": healthy.url, "topics": ["*"],
                   "description": "Order service"}),
        )
        .await;
    let (flaky_id, secret) = app
        .destination_with(
            "acme",
            json!({"type": "webhook", "url": flaky.url, "topics": ["render.*"],
                   "description": "Render farm callbacks"}),
        )
        .await;
    for i in 0..3 {
        app.publish(
            "acme",
            "order.paid",
            json!({"order": 1000 + i, "amount": 42.5}),
        )
        .await;
    }
    app.publish(
        "acme",
        "render.completed",
        json!({"job": "r-981", "frames": 240, "output": "s3://renders/r-981.mp4"}),
    )
    .await;
    // 5 deliveries: 3 + 1 to the healthy one, 1 to the flaky one (which fails once).
    healthy.wait_for(4, Duration::from_secs(10)).await;
    flaky.wait_for(1, Duration::from_secs(10)).await;
    wait_until(app, "no delivery left pending", || async {
        let v = app
            .get_json("/v1/tenants/acme/deliveries?status=scheduled")
            .await;
        let d = app
            .get_json("/v1/tenants/acme/deliveries?status=delivering")
            .await;
        v["data"].as_array().unwrap().is_empty() && d["data"].as_array().unwrap().is_empty()
    })
    .await;
    (flaky_id, secret)
}

async fn wait_until<F, Fut>(_app: &TestApp, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn destination(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/tenants/acme/destinations/{id}"))
        .await
}

async fn status_text(b: &Browser) -> String {
    b.text(&b.find("#delivery-status").await)
        .await
        .to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_replays_a_failed_delivery_rotates_a_secret_and_toggles_a_destination_in_chromium()
{
    // One attempt per delivery (no retries) and a live worker, as in production.
    let app = TestApp::spawn_with(StoreKind::Sqlite, |c| {
        c.retry_schedule = String::new();
        c.worker = true;
        c.poll_interval_ms = 100;
    })
    .await;
    let healthy = Receiver::start().await;
    let flaky = Receiver::start_scripted(vec![Reply::status(500)]).await;
    let (flaky_id, old_secret) = seed(&app, &healthy, &flaky).await;

    let driver = Driver::start().await;
    let b = driver.browser(1440, 1100).await;

    // Sign in through the link (its page submits itself); the cookie is HttpOnly.
    b.goto(&app.url(&portal_link(&app, "acme").await)).await;
    let overview_url = app.url("/portal");
    assert!(b.url_becomes(|u| u == overview_url).await);
    assert!(b.shows("Render farm callbacks").await);
    let cookies = b.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "herald_portal")
        .expect("the session cookie is set");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Lax");
    let overview = b.source().await;
    assert!(overview.contains("Render farm callbacks") && overview.contains("0.0%"));
    assert!(overview.contains("100.0%"), "the healthy destination");
    b.screenshot("overview-desktop").await;

    // Find the failed delivery with the status filter.
    b.click(&b.find_text("a", "Deliveries").await).await;
    b.click(&b.find("#f-status option[value=failed]").await)
        .await;
    b.click(&b.find_text("button", "Apply").await).await;
    // Wait for the filtered list: until it loads, the unfiltered one is still on screen.
    assert!(b.url_becomes(|u| u.contains("status=failed")).await);
    b.screenshot("deliveries-failed-desktop").await;
    b.click(&b.find("table.deliveries tbody tr a.badge").await)
        .await;
    assert_eq!(status_text(&b).await, "failed");
    let failed_page = b.source().await;
    assert!(failed_page.contains("HTTP 500") && failed_page.contains("reply 500"));
    b.screenshot("delivery-failed-desktop").await;

    // Replay it: the receiver now answers 200, and the page shows the new attempt.
    let delivery_url = b.current_url().await;
    b.click(&b.find("#replay").await).await;
    flaky.wait_for(2, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status_text(&b).await != "succeeded" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.goto(&delivery_url).await;
    }
    let first = b.find("ol.timeline li").await;
    let newest = b.text(&first).await;
    assert!(
        newest.contains("Attempt 2") && newest.contains("manual") && newest.contains("HTTP 200"),
        "{newest}"
    );
    b.screenshot("delivery-replayed-desktop").await;

    // Rotate the signing secret.
    b.goto(&app.url(&format!("/portal/destinations/{flaky_id}")))
        .await;
    b.click(&b.find_text("button", "Rotate secret").await).await;
    let new_secret = b.value(&b.find("#secret-value").await).await;
    assert!(new_secret.starts_with("whsec_") && new_secret != old_secret);
    assert!(b.shows("previous secret too until").await);
    b.screenshot("destination-rotated-desktop").await;

    // Disable with a reason, then enable again.
    b.type_into(&b.find("#reason").await, "receiver maintenance")
        .await;
    b.click(&b.find_text("button", "Disable").await).await;
    assert!(b.shows("receiver maintenance").await);
    let d = destination(&app, &flaky_id).await;
    assert_eq!(d["enabled"], false);
    b.screenshot("destination-disabled-desktop").await;
    b.click(&b.find_text("button", "Enable").await).await;
    assert!(b.shows("Destination enabled").await);
    assert_eq!(destination(&app, &flaky_id).await["enabled"], true);

    // The create form's validation, next to the field.
    b.goto(&app.url("/portal/destinations/new")).await;
    b.type_into(&b.find("#url").await, "not-a-url").await;
    b.click(&b.find_text("button", "Create destination").await)
        .await;
    let err = b.text(&b.find("#url-error").await).await;
    assert!(!err.is_empty());
    b.screenshot("destination-form-error-desktop").await;
    // The RabbitMQ form asks for a broker and an exchange instead of a URL.
    b.goto(&app.url("/portal")).await;
    b.click(&b.find_text("a", "New RabbitMQ destination").await)
        .await;
    b.find("#amqp_url").await;
    b.find("#exchange").await;
    assert!(!b.source().await.contains(r#"id="url""#));
    b.screenshot("destination-form-rabbitmq-desktop").await;
    // An inbound endpoint with a captured request.
    let e: Value = app
        .post(
            "/v1/callback-endpoints",
            json!({"tenant_id": "acme", "label": "Render job r-981", "ttl_seconds": 3600}),
        )
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url(&format!("/in/{}?job=r-981", e["slug"].as_str().unwrap())))
        .json(&json!({"status": "rendered", "frames": 240}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    b.goto(&app.url("/portal/callbacks")).await;
    b.screenshot("callbacks-desktop").await;
    b.click(&b.find_text("a", "Render job r-981").await).await;
    assert!(b.shows(r#""frames": 240"#).await);
    b.screenshot("callback-endpoint-desktop").await;
    b.quit().await;

    // The same pages on a 375 px phone: nothing wider than the screen.
    let phone = driver.browser(375, 812).await;
    phone.goto(&app.url(&portal_link(&app, "acme").await)).await;
    assert!(phone.url_becomes(|u| u == overview_url).await);
    // The page submitted itself while loading, which replaces its history entry: Back leads
    // to no link.
    phone.back().await;
    let before = phone.current_url().await;
    assert!(!before.contains("hpl_"), "Back shows the link: {before}");
    for (name, path) in [
        ("overview-phone", "/portal".to_string()),
        ("deliveries-phone", "/portal/deliveries".to_string()),
        ("delivery-phone", delivery_url[app.base.len()..].to_string()),
        (
            "destination-phone",
            format!("/portal/destinations/{flaky_id}"),
        ),
    ] {
        phone.goto(&app.url(&path)).await;
        let width = phone.scroll_width().await;
        assert!(width <= 375, "{name} is {width} px wide");
        phone.screenshot(name).await;
    }
    phone.quit().await;
}

/// Real data is long: a URL of a few hundred characters, a client error chain, many long
/// topics. On a 1280 px desktop and a 390 px phone the destinations page keeps the URL
/// readable (not squeezed to a character per line), the error under it in a short summary with
/// the full chain on demand, and nothing wider than the screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_urls_errors_and_topics_collapse_nothing_on_desktop_or_phone_in_chromium() {
    let app = TestApp::spawn_with(StoreKind::Sqlite, |c| {
        c.retry_schedule = String::new();
        c.worker = true;
        c.poll_interval_ms = 100;
    })
    .await;
    app.tenant("acme").await;
    // Nothing listens on port 1: the attempt fails with the client's full error chain.
    let url = format!(
        "http://127.0.0.1:1/{}?tenant=acme&signature-version=2",
        "integrations/webhooks/receivers/production-eu-west-1/".repeat(5)
    );
    let topics: Vec<String> = (0..12)
        .map(|i| format!("render.pipeline.stage-{i}.completed-with-artifacts"))
        .collect();
    let (id, _) = app
        .destination_with(
            "acme",
            json!({"type": "webhook", "url": url, "topics": topics,
                   "description": "A receiver that is down"}),
        )
        .await;
    app.publish(
        "acme",
        "render.pipeline.stage-1.completed-with-artifacts",
        json!({}),
    )
    .await;
    wait_until(&app, "the attempt failed", || async {
        app.get_json(&format!(
            "/v1/tenants/acme/deliveries?status=failed&destination_id={id}"
        ))
        .await["data"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    })
    .await;

    let r = app
        .put(
            "/v1/event-types/render.pipeline.stage-1.completed-with-artifacts",
            json!({"description": "A stage finished and uploaded what it made.",
                   "schema": {"type": "object", "properties": {"artifacts": {"type": "array"}}},
                   "examples": [{"artifacts": ["https://cdn.example.com/renders/frame-0001.png"]}]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let driver = Driver::start().await;
    for (name, width, url_floor) in [("desktop", 1280, 450.0), ("phone", 390, 250.0)] {
        let b = driver.browser(width, 900).await;
        b.goto(&app.url(&portal_link(&app, "acme").await)).await;
        let overview_url = app.url("/portal");
        assert!(b.url_becomes(|u| u == overview_url).await);
        assert!(b.shows("Connection refused by 127.0.0.1").await, "{name}");
        let url_width = b.narrowest(".dest-url").await;
        assert!(
            url_width > url_floor,
            "{name}: the URL is {url_width} px wide"
        );
        // The summary is the first line; the chain is one click away.
        let full = b.find(".dest-error details code").await;
        assert!(
            b.text(&full).await.is_empty(),
            "{name}: the chain starts folded"
        );
        b.click(&b.find(".dest-error details summary").await).await;
        assert!(
            b.text(&full)
                .await
                .contains("error sending request for url"),
            "{name}"
        );
        let page = b.scroll_width().await;
        assert!(page <= width as u64, "{name}: the page is {page} px wide");
        b.screenshot(&format!("long-content-{name}")).await;

        // The delivery page's attempt log: the same summary, the chain on demand.
        b.goto(&app.url("/portal/deliveries?status=failed")).await;
        b.click(&b.find("table.deliveries tbody tr a.badge").await)
            .await;
        assert!(b.shows("Connection refused by 127.0.0.1").await, "{name}");
        let page = b.scroll_width().await;
        assert!(
            page <= width as u64,
            "{name}: the delivery page is {page} px wide"
        );
        b.screenshot(&format!("long-content-delivery-{name}")).await;

        // The event-type catalog: a long name and a schema, shown without widening the page.
        b.goto(&app.url("/portal/event-types")).await;
        assert!(
            b.shows("render.pipeline.stage-1.completed-with-artifacts")
                .await,
            "{name}"
        );
        b.click(&b.find(".type-card details summary").await).await;
        assert!(
            b.text(&b.find(".type-card details pre").await)
                .await
                .contains("\"artifacts\""),
            "{name}: the schema opens"
        );
        let page = b.scroll_width().await;
        assert!(
            page <= width as u64,
            "{name}: the catalog is {page} px wide"
        );
        b.screenshot(&format!("event-types-{name}")).await;
        b.quit().await;
    }
}
