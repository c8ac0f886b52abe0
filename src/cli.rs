//! The command line (`herald --help`). Admin helpers call the same services as the API,
//! directly on the configured store, and print JSON.

mod mcp_stdio;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::app::Application;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::model::DestinationKind;
use crate::domain::signature::SignatureKind;
use crate::service::{CreateDestination, Herald, PublishRequest};
use crate::store::Scope;

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Webhook delivery engine for AI platforms"
)]
pub struct Cli {
    /// Configuration file (settings also come from HERALD_* environment variables).
    #[arg(long, global = true, default_value = "herald.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    All,
    Api,
    Worker,
}

/// How `herald destination` signs (the CLI's face of [`SignatureKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Signature {
    Hmac,
    Ed25519,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server and the delivery worker.
    Serve {
        /// What this node does: `all` (default), `api` (no worker) or `worker` (no REST API;
        /// health and metrics only). Nodes of every role can share one Postgres database.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Serve MCP on stdin/stdout for desktop clients: with `--url`, the tools use that
    /// Herald's API (token from HERALD_TOKEN); without, an embedded Herald runs in-process.
    Mcp {
        /// A running Herald's base URL, e.g. `https://herald.example.com`.
        #[arg(long)]
        url: Option<String>,
    },
    /// Exit 0 when the server on the configured address is ready (for container health checks).
    Healthcheck,
    /// Run the end-to-end benchmark and print its figures (see BENCHMARKS.md).
    Bench {
        /// `sqlite`, `postgres`, or `all` (one JSON object per store).
        #[arg(long, default_value = "all")]
        store: String,
        /// Events per throughput phase.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        /// Postgres server on which a fresh benchmark database is created (and dropped).
        #[arg(
            long,
            env = "HERALD_BENCH_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        postgres_url: String,
        /// Print only JSON, one object per line.
        #[arg(long)]
        json: bool,
        /// `all`, `outbound` (publish, deliver, latency), `inbound` (ingest, wake-up) or
        /// `steady` (publishing and delivering at once, Herald in a child process); the
        /// figures of phases not run are `null`. For profiling one side at a time.
        #[arg(long, default_value = "all")]
        phases: String,
        /// Concurrent senders of the ingest phase, each posting to an endpoint of its own.
        #[arg(long, default_value_t = 128)]
        ingest_clients: usize,
        /// Closed-loop publishers of the steady phase (publishing and delivering at once).
        #[arg(long, default_value_t = 64)]
        steady_clients: usize,
        /// Seconds the steady phase measures, after a warm-up of a fifth of that (at least 1 s).
        #[arg(long, default_value_t = 10.0)]
        steady_secs: f64,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print a new encryption key (32 random bytes, base64) for HERALD_ENCRYPTION_KEY. Give
    /// the same key to every node that shares a Postgres database.
    GenerateKey,
    /// Create or update a tenant.
    Tenant {
        id: String,
        /// Metadata as a JSON object.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Create a destination for a tenant (prints it with its signing secret): a webhook
    /// (`--url`) or a RabbitMQ exchange (`--amqp-url` and `--exchange`).
    Destination {
        #[arg(long)]
        tenant: String,
        #[arg(
            long,
            required_unless_present = "amqp_url",
            conflicts_with = "amqp_url"
        )]
        url: Option<String>,
        /// `amqp://user:password@host:port/vhost`.
        #[arg(long, requires = "exchange")]
        amqp_url: Option<String>,
        #[arg(long, requires = "amqp_url")]
        exchange: Option<String>,
        /// Routing-key template over `{topic}` and `{tenant_id}`; default `{topic}`.
        #[arg(long, requires = "amqp_url")]
        routing_key: Option<String>,
        /// Topic pattern; repeat for several. Default: `*`.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// `hmac` (a shared secret, printed) or `ed25519` (its public key is printed; the
        /// signing key stays in Herald).
        #[arg(long, value_enum, default_value_t = Signature::Hmac)]
        signature: Signature,
    },
    /// Print a single-use sign-in link to a tenant's portal (`{url, expires_at}`).
    PortalLink {
        #[arg(long)]
        tenant: String,
    },
    /// Publish an event.
    Publish {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        topic: String,
        /// The event data as JSON.
        #[arg(long, default_value = "{}")]
        data: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Needs no configuration: it is what an operator runs before there is one.
    if let Command::GenerateKey = cli.command {
        println!("{}", crate::store::seal::generate_key());
        return Ok(());
    }
    let mut config = Config::load(Some(&cli.config))?;
    crate::telemetry::init(&config.log_format);
    match cli.command {
        Command::Serve { role } => {
            match role {
                Role::All => {}
                Role::Api => config.worker = false,
                Role::Worker => config.api = false,
            }
            config.validate()?;
            serve(config).await
        }
        Command::Bench {
            store,
            events,
            postgres_url,
            json,
            phases,
            ingest_clients,
            steady_clients,
            steady_secs,
        } => {
            let stores = match store.as_str() {
                "all" => vec!["sqlite", "postgres"],
                one => vec![one],
            };
            for store in stores {
                let opts = crate::bench::BenchOptions {
                    store: store.to_string(),
                    events,
                    postgres_url: postgres_url.clone(),
                    json,
                    phases: phases.parse()?,
                    ingest_clients,
                    steady_clients,
                    steady_secs,
                };
                let figures = crate::bench::run(opts).await?;
                if json {
                    println!("{figures}");
                } else {
                    println!("{}", serde_json::to_string_pretty(&figures)?);
                }
            }
            Ok(())
        }
        Command::Mcp { url } => mcp_stdio::run(config, url).await,
        Command::Healthcheck => {
            let addr: std::net::SocketAddr = config.listen.parse()?;
            let host = if addr.ip().is_unspecified() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                addr.ip()
            };
            let url = format!(
                "http://{}/readyz",
                std::net::SocketAddr::new(host, addr.port())
            );
            crate::outbound::http::install_crypto();
            let r = reqwest::Client::new().get(&url).send().await?;
            anyhow::ensure!(r.status().is_success(), "{url} answered {}", r.status());
            Ok(())
        }
        Command::GenerateKey => unreachable!("answered before the configuration is loaded"),
        Command::Migrate => {
            let store =
                crate::store::connect(&config.database_url(), Arc::new(config.keyring()?)).await?;
            store.migrate().await?;
            let sealed = store.seal_at_rest(Clock::system().now()).await?;
            println!(
                "migrations applied to the {} store; {sealed} credentials sealed",
                store.kind()
            );
            Ok(())
        }
        Command::Tenant { id, metadata } => {
            let herald = local(&config).await?;
            let metadata = metadata
                .map(|m| serde_json::from_str::<Value>(&m))
                .transpose()
                .context("--metadata must be JSON")?;
            let (tenant, _) = herald.upsert_tenant(&id, metadata).await?;
            println!("{}", serde_json::to_string_pretty(&tenant)?);
            Ok(())
        }
        Command::Destination {
            tenant,
            url,
            amqp_url,
            exchange,
            routing_key,
            topics,
            signature,
        } => {
            let herald = local(&config).await?;
            let topics = if topics.is_empty() {
                vec!["*".into()]
            } else {
                topics
            };
            let req = CreateDestination {
                kind: if amqp_url.is_some() {
                    DestinationKind::Rabbitmq
                } else {
                    DestinationKind::Webhook
                },
                url,
                amqp_url,
                exchange,
                routing_key,
                description: None,
                topics,
                filter: None,
                headers: Default::default(),
                options: Default::default(),
                signature: Some(match signature {
                    Signature::Hmac => SignatureKind::Hmac,
                    Signature::Ed25519 => SignatureKind::Ed25519,
                }),
                secret: None,
            };
            let created = herald
                .create_destination(Scope::Admin, &tenant, req)
                .await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            Ok(())
        }
        Command::PortalLink { tenant } => {
            let herald = local(&config).await?;
            let link = herald.create_portal_link(&tenant).await?;
            println!("{}", serde_json::to_string_pretty(&link)?);
            Ok(())
        }
        Command::Publish {
            tenant,
            topic,
            data,
        } => {
            let herald = local(&config).await?;
            let data =
                serde_json::value::RawValue::from_string(data).context("--data must be JSON")?;
            let req = PublishRequest {
                tenant_id: tenant,
                topic,
                data,
                metadata: None,
                id: None,
                destination_id: None,
                reply: None,
            };
            let p = herald.publish(Scope::Admin, req, None).await?;
            println!(
                "{}",
                serde_json::json!({"id": p.id, "deliveries": p.deliveries})
            );
            Ok(())
        }
    }
}

async fn local(config: &Config) -> anyhow::Result<Herald> {
    let store = crate::store::connect(&config.database_url(), Arc::new(config.keyring()?)).await?;
    store.migrate().await?;
    store.seal_at_rest(Clock::system().now()).await?;
    Ok(Herald::new(store, Clock::system(), config.ssrf_policy())
        .with_inbound(config.inbound_settings())
        .with_portal(config.portal_settings())
        .with_limits(config.limits()))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config.clone()).await?;
    if let Some(token) = &app.generated_admin_token {
        println!(
            "\nHerald generated an admin token. It is shown only this once; store it safely:\n\n    {token}\n\n\
             (Set HERALD_ADMIN_TOKEN to use your own.)\n"
        );
    }
    if let Some(secret) = &app.generated_operator_secret {
        println!(
            "Herald generated the operator webhook's signing secret (shown once):\n\n    {secret}\n\n\
             (Set HERALD_OPERATOR_WEBHOOK_SECRET to use your own.)\n"
        );
    }
    tracing::info!(
        listen = %app.local_addr(),
        store = app.herald().store.kind(),
        api = config.api,
        worker = config.worker,
        "Herald is running"
    );
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
