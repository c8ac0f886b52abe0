//! Secrets at rest on both stores (SECURITY.md): what reaches the database file holds no
//! credential in clear, deliveries still sign with the sealed secrets, clear rows from before
//! sealing are sealed at start, a key rotation re-seals everything, and a node with the wrong
//! key refuses to start.

use crate::{common, for_each_store};

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{ENCRYPTION_KEY, Receiver, StoreKind, TestApp, TestDb, test_config};
use herald::app::Application;
use herald::store::seal::{Keyring, PREFIX, generate_key};
use serde_json::{Value, json};

for_each_store!(
    the_raw_database_holds_no_credential_in_clear_and_deliveries_still_sign,
    clear_rows_from_before_sealing_are_sealed_at_the_next_start,
    a_key_rotation_reseals_every_value_and_the_old_key_can_then_be_retired,
    a_key_file_in_the_data_dir_is_kept_and_a_node_with_another_key_refuses_to_start,
    a_key_named_by_encryption_key_file_seals_and_opens_the_secrets,
    a_query_token_is_redacted_however_its_key_is_encoded,
    an_endpoint_stored_unversioned_by_an_earlier_release_is_read_before_and_after_sealing,
);

/// A signing secret the test knows: `whsec_` + base64 of 32 fixed bytes.
fn known_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(*b"signing secret known to the test")
    )
}

const HEADER_SECRET: &str = "Bearer hdr-s3cret-7f1c0d";
const GITHUB_SECRET: &str = "gh-s3cret-2b9e44";
const INBOUND_TOKEN: &str = "tok-s3cret-90aa1e";

/// The password in a RabbitMQ destination's broker URL.
const AMQP_PASSWORD: &str = "amqp-pw-s3cret";

/// Everything the database holds, as text: the SQLite file and its WAL byte for byte, or
/// every row of every Postgres table.
async fn raw_dump(db: &TestDb, kind: StoreKind) -> String {
    match kind {
        StoreKind::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let mut bytes = std::fs::read(path).unwrap();
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend(wal);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        StoreKind::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            assert!(tables.iter().any(|t| t == "destinations"), "{tables:?}");
            let mut dump = String::new();
            for t in tables {
                let rows: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT string_agg(t::text, E'\\n') FROM {t} t"
                )))
                .fetch_one(&pool)
                .await
                .unwrap();
                dump.push_str(&rows.unwrap_or_default());
                dump.push('\n');
            }
            dump
        }
    }
}

/// Runs one statement (or a query returning one text value) on the test database, beside
/// the app: how a test writes rows as an older Herald would have.
async fn sql(db: &TestDb, kind: StoreKind, statement: &str) -> Option<String> {
    let q = sqlx::AssertSqlSafe(statement.to_string());
    match kind {
        StoreKind::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query_scalar(q).fetch_optional(&pool).await.unwrap()
        }
        StoreKind::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_scalar(q).fetch_optional(&pool).await.unwrap()
        }
    }
}

/// Creates tenant `acme` and a destination to `rx` signing with [`known_secret`] and sending
/// [`HEADER_SECRET`]; returns its id.
async fn secret_destination(app: &TestApp, rx: &Receiver) -> String {
    app.tenant("acme").await;
    let (id, secret) = app
        .destination_with(
            "acme",
            json!({"type": "webhook", "url": rx.url, "topics": ["*"], "secret": known_secret(),
                   "headers": {"Authorization": HEADER_SECRET}}),
        )
        .await;
    assert_eq!(secret, known_secret());
    id
}

/// Publishes one event and checks the receiver got it signed with [`known_secret`] and
/// carrying the destination's header: the sealed values were opened for the send.
async fn assert_delivered_signed(app: &TestApp, rx: &Receiver) {
    let before = rx.count();
    app.publish("acme", "job.done", json!({"n": before})).await;
    app.worker.drain().await;
    let got = rx.wait_for(before + 1, Duration::from_secs(10)).await;
    let r = &got[before];
    assert_eq!(r.headers["authorization"], HEADER_SECRET);
    let ts: i64 = r.headers["webhook-timestamp"].parse().unwrap();
    let expected =
        herald::domain::signature::sign(&known_secret(), &r.headers["webhook-id"], ts, &r.body)
            .unwrap();
    assert!(
        r.headers["webhook-signature"]
            .split(' ')
            .any(|s| s == expected),
        "signed with the known secret"
    );
}

fn key_id(key: &str) -> String {
    Keyring::parse(key, &[]).unwrap().current_id().to_string()
}

async fn stored_secrets(db: &TestDb, kind: StoreKind, id: &str) -> String {
    sql(
        db,
        kind,
        &format!("SELECT secrets FROM destinations WHERE id = '{id}'"),
    )
    .await
    .unwrap()
}

async fn the_raw_database_holds_no_credential_in_clear_and_deliveries_still_sign(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    secret_destination(&app, &rx).await;
    let tenant_token = app.tenant_token("acme").await;
    let r = app
        .post(
            "/v1/callback-endpoints",
            json!({"verification": {"scheme": "github", "secret": GITHUB_SECRET}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .post(
            "/v1/callback-endpoints",
            json!({"verification": {"scheme": "token", "token": INBOUND_TOKEN}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let tok_ep: Value = r.json().await.unwrap();
    // A sender presents the token; the stored request must not keep it.
    let r = app
        .client
        .post(tok_ep["url"].as_str().unwrap())
        .bearer_auth(INBOUND_TOKEN)
        .json(&json!({"done": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_delivered_signed(&app, &rx).await;
    // A RabbitMQ destination: its broker URL carries a password.
    let r = app
        .post(
            "/v1/tenants/acme/destinations",
            json!({"type": "rabbitmq", "amqp_url": format!("amqp://herald:{AMQP_PASSWORD}@127.0.0.1:5672/%2f"),
                   "exchange": "herald.sealed", "topics": ["never.sent"]}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let dump = raw_dump(&app.db, kind).await;
    assert!(dump.contains(PREFIX), "the dump holds sealed values");
    let secret = known_secret();
    for needle in [
        secret.as_str(),
        secret.trim_start_matches("whsec_"),
        HEADER_SECRET,
        "hdr-s3cret",
        GITHUB_SECRET,
        INBOUND_TOKEN,
        AMQP_PASSWORD,
        tenant_token.as_str(),
        common::ADMIN_TOKEN,
        ENCRYPTION_KEY,
    ] {
        assert!(
            !dump.contains(needle),
            "`{needle}` is in the database in clear"
        );
    }
    // The API still shows what it showed before: the header (to its owner), not the secret.
    let d = app.get_json("/v1/tenants/acme/destinations").await;
    assert_eq!(d["data"][0]["headers"]["Authorization"], HEADER_SECRET);
}

async fn clear_rows_from_before_sealing_are_sealed_at_the_next_start(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    let id = secret_destination(&app, &rx).await;
    app.stop().await;
    // As a Herald without sealing left them: clear JSON and no key recorded.
    let clear = json!([{"secret": known_secret()}]).to_string();
    sql(
        &app.db,
        kind,
        &format!(
            "UPDATE destinations SET secrets = '{clear}', headers = '{}' WHERE id = '{id}'",
            json!({"Authorization": HEADER_SECRET})
        ),
    )
    .await;
    sql(&app.db, kind, "DELETE FROM encryption_keys").await;
    assert_eq!(stored_secrets(&app.db, kind, &id).await, clear);

    let again = TestApp::spawn_on(app.db.clone(), |_| {}).await;
    let stored = stored_secrets(&again.db, kind, &id).await;
    assert!(
        stored.starts_with(&format!("{PREFIX}{}:", key_id(ENCRYPTION_KEY))),
        "{stored}"
    );
    assert!(!raw_dump(&again.db, kind).await.contains(HEADER_SECRET));
    assert_delivered_signed(&again, &rx).await;
}

async fn a_key_rotation_reseals_every_value_and_the_old_key_can_then_be_retired(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let rx = Receiver::start().await;
    let id = secret_destination(&app, &rx).await;
    app.stop().await;
    let db = app.db.clone();
    let new_key = generate_key();

    // Rotation: the new key current, the old one kept for opening.
    let rotated = TestApp::spawn_on(db.clone(), |c| {
        c.encryption_key = Some(new_key.clone());
        c.encryption_old_keys = vec![ENCRYPTION_KEY.into()];
    })
    .await;
    let stored = stored_secrets(&db, kind, &id).await;
    assert!(stored.starts_with(&format!("{PREFIX}{}:", key_id(&new_key))));
    assert_delivered_signed(&rotated, &rx).await;
    rotated.stop().await;

    // The old key retired: everything opens with the new one alone.
    let retired = TestApp::spawn_on(db.clone(), |c| {
        c.encryption_key = Some(new_key.clone());
    })
    .await;
    assert_delivered_signed(&retired, &rx).await;
    retired.stop().await;

    // A node still on the old key alone cannot read this database and says why.
    let mut stale = test_config(&db);
    let err = Application::build(stale.clone())
        .await
        .err()
        .expect("a node without the current key refuses to start");
    assert!(err.to_string().contains(&key_id(&new_key)), "{err}");
    assert!(err.to_string().contains("encryption_key"), "{err}");
    // With the new key among its old keys it starts (the first phase of a rolling rotation).
    stale.encryption_old_keys = vec![new_key];
    assert!(Application::build(stale).await.is_ok());
}

async fn a_key_file_in_the_data_dir_is_kept_and_a_node_with_another_key_refuses_to_start(
    kind: StoreKind,
) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node1");
    let db = Arc::new(TestDb::new(kind).await);
    let generated = |data_dir: std::path::PathBuf| {
        move |c: &mut herald::config::Config| {
            c.encryption_key = None;
            c.data_dir = data_dir;
        }
    };
    let key_file = data_dir.join("encryption.key");
    if kind == StoreKind::Postgres {
        // Postgres generates no key; a deployment that an older Herald started this way
        // already has the file, and keeps starting with it (with a warning).
        herald::store::seal::load_or_create_key_file(&key_file).unwrap();
    }
    let app = TestApp::spawn_on(db.clone(), generated(data_dir.clone())).await;
    let rx = Receiver::start().await;
    let id = secret_destination(&app, &rx).await;
    app.stop().await;
    let key = std::fs::read_to_string(&key_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is the owner's only");
    }
    assert!(
        stored_secrets(&db, kind, &id)
            .await
            .starts_with(&format!("{PREFIX}{}:", key_id(key.trim())))
    );

    // The same data dir on restart: the same key, the secrets still open.
    let restarted = TestApp::spawn_on(db.clone(), generated(data_dir.clone())).await;
    assert_delivered_signed(&restarted, &rx).await;
    restarted.stop().await;
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);

    // A second node without the key stops at start instead of sealing with a key the others
    // lack: on SQLite it generated another one; on Postgres it generates none.
    let mut other = test_config(&db);
    generated(dir.path().join("node2"))(&mut other);
    let err = Application::build(other)
        .await
        .err()
        .expect("a node with another key refuses to start");
    assert!(err.to_string().contains("encryption_key"), "{err}");
}

async fn a_key_named_by_encryption_key_file_seals_and_opens_the_secrets(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald-key");
    std::fs::write(&file, format!("{ENCRYPTION_KEY}\n")).unwrap();
    let db = Arc::new(TestDb::new(kind).await);
    let from_file = |c: &mut herald::config::Config| {
        c.encryption_key = None;
        c.encryption_key_file = Some(file.clone());
        c.data_dir = dir.path().join("data");
    };
    let app = TestApp::spawn_on(db.clone(), from_file).await;
    let rx = Receiver::start().await;
    let id = secret_destination(&app, &rx).await;
    assert!(
        stored_secrets(&db, kind, &id)
            .await
            .starts_with(&format!("{PREFIX}{}:", key_id(ENCRYPTION_KEY)))
    );
    assert_delivered_signed(&app, &rx).await;
    app.stop().await;
    assert!(
        !dir.path().join("data").join("encryption.key").exists(),
        "no key is generated when one is configured"
    );

    // A missing file, or both settings at once, is a configuration error naming the setting.
    let mut missing = test_config(&db);
    missing.encryption_key = None;
    missing.encryption_key_file = Some(dir.path().join("nope"));
    let err = Application::build(missing).await.err().expect("refused");
    assert!(err.to_string().contains("`encryption_key_file`"), "{err}");
    let mut both = test_config(&db);
    both.encryption_key_file = Some(file.clone());
    let err = herald::config::Config::validate(&both).unwrap_err();
    assert!(err.to_string().contains("`encryption_key_file`"), "{err}");
}

/// Two nodes on one Postgres, given the same key (one in the setting, one in a key file): a
/// destination created through one is delivered, signed with its sealed secret, by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_given_the_same_key_share_one_postgres_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald-key");
    std::fs::write(&file, ENCRYPTION_KEY).unwrap();
    let db = Arc::new(TestDb::new(StoreKind::Postgres).await);
    let a = TestApp::spawn_on(db.clone(), |_| {}).await;
    let b = TestApp::spawn_on(db.clone(), |c| {
        c.encryption_key = None;
        c.encryption_key_file = Some(file.clone());
    })
    .await;
    let rx = Receiver::start().await;
    secret_destination(&a, &rx).await;
    assert_delivered_signed(&b, &rx).await;
    assert_delivered_signed(&a, &rx).await;
    // Both read the destination's headers back in clear through the API.
    for node in [&a, &b] {
        let d = node.get_json("/v1/tenants/acme/destinations").await;
        assert_eq!(d["data"][0]["headers"]["Authorization"], HEADER_SECRET);
    }
}

/// `herald serve` on Postgres with no key at all exits with an error that names the setting
/// and the command that makes a key, and leaves no key file behind.
#[tokio::test]
async fn herald_on_postgres_without_a_key_refuses_to_start_and_says_how_to_make_one() {
    let db = TestDb::new(StoreKind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HERALD_DATABASE_URL", &db.url)
        .env("HERALD_DATA_DIR", dir.path())
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_ADMIN_TOKEN", "t")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`encryption_key` must be set with a Postgres store"),
        "{stderr}"
    );
    assert!(stderr.contains("HERALD_ENCRYPTION_KEY"), "{stderr}");
    assert!(stderr.contains("herald generate-key"), "{stderr}");
    assert!(!dir.path().join("encryption.key").exists());

    // The command it names prints a key that the setting accepts.
    let key = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("generate-key")
        .output()
        .await
        .unwrap();
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap();
    Keyring::parse(key.trim(), &[]).expect("a usable key");
}

/// The `token` scheme reads `?token=` form-decoded, so the stored query is redacted the same
/// way: an encoded key (`%74oken`), a repeated key, `+` for a space and an empty value all
/// verify or fail as they should, and the token is nowhere in the database afterwards.
async fn a_query_token_is_redacted_however_its_key_is_encoded(kind: StoreKind) {
    const TOKEN: &str = "q-s3cret 7d2a";
    let app = TestApp::spawn(kind).await;
    let r = app
        .post(
            "/v1/callback-endpoints",
            json!({"verification": {"scheme": "token", "token": TOKEN}}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let ep: Value = r.json().await.unwrap();
    let url = ep["url"].as_str().unwrap();
    for (query, status) in [
        ("%74oken=q-s3cret%207d2a", 200),
        ("a=1&t%6Fken=q-s3cret+7d2a", 200),
        ("token=&token=q-s3cret+7d2a&b=2", 200),
        ("token=wrong&%74oken=q-s3cret+7d2a", 401),
        ("token=", 401),
    ] {
        let r = app
            .client
            .post(format!("{url}?{query}"))
            .json(&json!({"done": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{query}");
    }
    let queries = |status: &'static str| {
        let path = format!(
            "/v1/callback-endpoints/{}/events?status={status}",
            ep["id"].as_str().unwrap()
        );
        let app = &app;
        async move {
            let listed = app.get_json(&path).await;
            listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["query"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        queries("accepted").await,
        [
            "token=[redacted]",
            "a=1&token=[redacted]",
            "token=[redacted]&token=[redacted]&b=2",
        ]
    );
    // Rejected requests, newest first.
    assert_eq!(
        queries("rejected").await,
        ["token=[redacted]", "token=[redacted]&token=[redacted]"]
    );
    let dump = raw_dump(&app.db, kind).await;
    assert!(!dump.contains("q-s3cret"), "the token is in the database");
}

/// Releases before the versioned format stored `{"scheme": …}` without `"v"` (and, before
/// sealing, in clear): such a row is still read, and still read once the next start sealed it.
async fn an_endpoint_stored_unversioned_by_an_earlier_release_is_read_before_and_after_sealing(
    kind: StoreKind,
) {
    use herald::domain::callback::Verification;
    use herald::store::Scope;
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let e = common::unverified_endpoint(None);
    let id = e.id.as_str();
    store.insert_callback_endpoint(&e).await.unwrap();
    let keys = Keyring::parse(ENCRYPTION_KEY, &[]).unwrap();
    let column = herald::store::seal::ENDPOINT_VERIFICATION;
    let select = format!("SELECT verification FROM callback_endpoints WHERE id = '{id}'");
    let fresh = sql(&db, kind, &select).await.unwrap();
    assert_eq!(
        keys.open(column, id, &fresh).unwrap(),
        r#"{"v":1,"scheme":"none"}"#,
        "written in the versioned form"
    );
    let old = format!(r#"{{"scheme":"token","token":"{INBOUND_TOKEN}"}}"#);
    sql(
        &db,
        kind,
        &format!("UPDATE callback_endpoints SET verification = '{old}' WHERE id = '{id}'"),
    )
    .await;
    let expected = Verification::Token {
        token: INBOUND_TOKEN.into(),
    };
    let read = store
        .get_callback_endpoint(Scope::Admin, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.verification, expected);

    assert_eq!(store.seal_at_rest(2).await.unwrap(), 1);
    let stored = sql(&db, kind, &select).await.unwrap();
    assert!(stored.starts_with(PREFIX), "sealed: {stored}");
    let opened = keys.open(column, id, &stored).unwrap();
    assert_eq!(opened, old, "sealed as it was");
    let read = store
        .get_callback_endpoint(Scope::Admin, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.verification, expected);
}
