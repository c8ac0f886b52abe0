//! `herald mcp`: the MCP server on stdin/stdout, for desktop clients that launch it.
//!
//! With `--url` the tools talk to a running Herald over its REST API, with the token from
//! `HERALD_TOKEN`. Without it, this process *is* Herald: it opens its own store (SQLite in the
//! data directory unless configured otherwise), serves `/in/{slug}` and the API on
//! `HERALD_LISTEN`, runs the worker, and stops when the client closes stdin. Standard output
//! carries only MCP messages; logs go to standard error.
//!
//! Part of the CLI rather than of `mcp`: starting a whole Herald is wiring (`app`, `config`),
//! and `mcp` stays a layer below them.

use anyhow::Context;
use rmcp::ServiceExt;

use crate::app::Application;
use crate::config::Config;
use crate::http::AppState;
use crate::mcp::api::ApiClient;
use crate::mcp::tools::{Credential, HeraldMcp, WaitLimits};
use crate::service::tokens::hash_token;

/// Serves MCP on stdio until the client goes away.
pub async fn run(mut config: Config, url: Option<String>) -> anyhow::Result<()> {
    let Some(url) = url else {
        // The tools reach the embedded API with an admin token of this process's own, unless
        // one is configured (then the API on HERALD_LISTEN accepts exactly that one).
        let token = config
            .admin_token
            .clone()
            .unwrap_or_else(crate::service::tokens::generate_token);
        config.admin_token = Some(token.clone());
        let app = Application::build(config)
            .await
            .context("starting the embedded Herald")?;
        tracing::info!(listen = %app.local_addr(), store = app.herald().store.kind(),
            "embedded Herald for MCP is running");
        let limits = WaitLimits::of(&app.herald().inbound);
        let state = AppState::new(app.herald().clone(), Some(hash_token(&token).into()));
        let api = ApiClient::InProcess(crate::http::api::routes().with_state(state));
        let shutdown = app.shutdown_handle();
        let running = tokio::spawn(app.run_until_stopped());
        let served = serve(HeraldMcp::new(api, Credential::Fixed(token), limits)).await;
        shutdown.trigger();
        running.await??;
        return served;
    };
    let token = std::env::var("HERALD_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .context("`herald mcp --url` needs an API token in HERALD_TOKEN")?;
    serve(HeraldMcp::new(
        ApiClient::remote(&url),
        Credential::Fixed(token.trim().to_string()),
        WaitLimits::default(),
    ))
    .await
}

async fn serve(server: HeraldMcp) -> anyhow::Result<()> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP client did not initialise")?;
    running.waiting().await?;
    Ok(())
}
