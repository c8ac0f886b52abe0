//! Assembling and running Herald: [`Application::build`] → [`Application::port`] →
//! [`Application::run_until_stopped`].
//!
//! `build` connects the store, applies migrations, makes sure an admin token exists, binds the
//! listener (port 0 picks a free one, which is how the tests run many instances side by side)
//! and prepares the worker. Nothing runs until `run_until_stopped`.
//!
//! # Shutdown
//!
//! On Ctrl-C or SIGTERM (or when a test flips the [`Shutdown`] handle) the HTTP server stops
//! accepting connections and finishes the requests in progress, while the worker stops
//! claiming and gives the sends in flight a grace period. Sends still running after it are
//! aborted and their deliveries released, due again at once for any node (should a release
//! fail, the delivery keeps its lease until it expires and is then retried: at-least-once,
//! never lost).
//! The publish-from-queue consumer (when configured) stops taking messages, finishes those in
//! hand and closes its connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{AppState, router};
use crate::outbound::amqp::AmqpSender;
use crate::outbound::http::HttpSender;
use crate::service::Herald;
use crate::service::tokens::hash_token;
use crate::store::{self, AutoDisable, StoreError};
use crate::telemetry::otel::Tracing;
use crate::worker::{Executor, Worker};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(#[from] std::io::Error),
    #[error("operator webhook: {0}")]
    Operator(String),
}

/// Flips to `true` to stop the application.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Shutdown {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    worker: Arc<Worker>,
    config: Config,
    /// Shared by the publisher and the publish-from-queue consumer.
    amqp_tls: Arc<crate::outbound::amqp::AmqpTls>,
    shutdown: watch::Sender<bool>,
    /// This application's tracer (off unless `config.otel`): its own, not process-wide.
    tracing: Tracing,
    /// The admin token, when this start generated it (shown once).
    pub generated_admin_token: Option<String>,
    /// The operator webhook's signing secret, when this start generated it (shown once).
    pub generated_operator_secret: Option<String>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, AppError> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// As [`Application::build`], with a clock the caller controls (tests).
    pub async fn build_with_clock(config: Config, clock: Clock) -> Result<Self, AppError> {
        config.validate()?;
        let store = store::connect(&config.database_url(), Arc::new(config.keyring()?)).await?;
        store.migrate().await?;
        let sealed = store.seal_at_rest(clock.now()).await?;
        if sealed > 0 {
            tracing::info!(
                values = sealed,
                "sealed credentials at rest with the current encryption key"
            );
        }
        let herald = Herald::new(store.clone(), clock.clone(), config.ssrf_policy())
            .with_limits(config.limits())
            .with_catalog(config.refuse_unknown_topics);
        let amqp_tls = Arc::new(config.amqp_tls()?);

        let (admin_token_hash, generated_admin_token) = match &config.admin_token {
            Some(t) => (Some(Arc::from(hash_token(t))), None),
            None => (
                None,
                herald.ensure_admin_token().await.map_err(|e| match e {
                    crate::service::ServiceError::Store(s) => s,
                    other => StoreError::Corrupt(other.to_string()),
                })?,
            ),
        };

        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| AppError::Bind {
                    addr: config.listen.clone(),
                    source,
                })?;

        // With port 0 the public URL can only be known now: callback URLs must name the port
        // actually bound.
        let mut inbound = config.inbound_settings();
        if config.public_url.is_none()
            && let Ok(addr) = listener.local_addr()
        {
            inbound.public_url = format!("http://{addr}");
        }
        let public_url = inbound.public_url.clone();
        let herald = herald
            .with_inbound(inbound)
            .with_portal(config.portal_settings());

        let schedule = config.retry_schedule().expect("validated");
        let tracing = match &config.otel {
            Some(settings) => Tracing::start(
                settings,
                Arc::new(|reason, n| crate::metrics::metrics().spans_dropped(reason.as_str(), n)),
            ),
            None => Tracing::off(),
        };
        let generated_operator_secret = match &config.operator_webhook_url {
            Some(url) => herald
                .ensure_operator_webhook(url, config.operator_webhook_secret.as_deref())
                .await
                .map_err(|e| AppError::Operator(e.to_string()))?,
            None => None,
        };
        let executor = Arc::new(
            Executor::new(
                store.clone(),
                HttpSender::new(config.ssrf_policy()),
                clock,
                schedule,
                Duration::from_millis(config.request_timeout_ms),
            )
            .with_auto_disable(AutoDisable {
                after_failures: config.auto_disable_after_failures,
                after_ms: (config.auto_disable_after_hours * 3_600_000) as i64,
            })
            .with_lease(Duration::from_secs(config.lease_secs))
            .with_operator_events(config.operator_webhook_url.is_some())
            .with_public_url(public_url)
            .with_tracing(tracing.clone())
            .with_amqp(Arc::new(
                AmqpSender::new(
                    config.ssrf_policy(),
                    format!("{} publisher", config.amqp_connection_name),
                )
                .with_tls(amqp_tls.clone()),
            )),
        );
        let worker = Arc::new(Worker::new(
            store.clone(),
            executor,
            config.worker_config(),
            herald.wake.clone(),
        ));
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            listener,
            state: AppState::new(herald, admin_token_hash).with_tracing(tracing.clone()),
            worker,
            config,
            amqp_tls,
            shutdown,
            tracing,
            generated_admin_token,
            generated_operator_secret,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn herald(&self) -> &Herald {
        &self.state.herald
    }

    /// The worker; it runs in the background only when `config.worker` is true, but tests
    /// and tools can always drive it by hand with [`Worker::tick`].
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    /// A handle that stops [`Application::run_until_stopped`] from elsewhere.
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown(Arc::new(self.shutdown.clone()))
    }

    /// Serves the API and runs the worker until a shutdown signal.
    pub async fn run_until_stopped(self) -> Result<(), AppError> {
        let Application {
            listener,
            state,
            worker,
            config,
            amqp_tls,
            shutdown,
            tracing,
            ..
        } = self;
        let mut signal_rx = shutdown.subscribe();
        let sender = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = os_signal() => { let _ = sender.send(true); }
                _ = signal_rx.changed() => {}
            }
        });

        // Other processes' news of callbacks reaches every node's waiters, and news of work
        // its worker, if it has one.
        let news_task = state.herald.store.news().map(|news| {
            tokio::spawn(
                state
                    .herald
                    .clone()
                    .relay_news(news, config.worker, shutdown.subscribe()),
            )
        });
        let worker_task = config
            .worker
            .then(|| tokio::spawn(worker.run(shutdown.subscribe())));
        // Publishing from a queue is the API's job, so worker-only nodes do not consume.
        let queue_task = config
            .queue_settings(amqp_tls)
            .filter(|_| config.api)
            .map(|settings| {
                tokio::spawn(crate::queue::run(
                    state.herald.clone(),
                    settings,
                    shutdown.subscribe(),
                ))
            });

        let mut rx = shutdown.subscribe();
        let herald = state.herald.clone();
        let store = state.herald.store.clone();
        let app = router(
            state,
            config.max_body_bytes,
            config.api,
            crate::mcp::http::routes,
        );
        crate::http::server::serve(listener, app, config.server_limits(), async move {
            let _ = rx.wait_for(|stop| *stop).await;
            // Waiting clients would hold the graceful shutdown open: answer them now.
            herald.stop_waiting();
        })
        .await?;
        if let Some(t) = worker_task {
            let _ = t.await;
        }
        if let Some(t) = queue_task {
            let _ = t.await;
        }
        if let Some(t) = news_task {
            let _ = t.await;
        }
        // Last, once nothing publishes or ingests any more: the notices still queued go out.
        store.close().await;
        // The spans of the work just finished go out, unless the collector is away.
        tracing.shutdown(Duration::from_secs(5)).await;
        Ok(())
    }
}

async fn os_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
