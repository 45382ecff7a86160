//! `planrt serve`: builds the server's settings from flags, opens the executor, resumes
//! the API's unfinished plans, serves until SIGTERM or ctrl-c, then stops what runs
//! (recorded `interrupted`: it runs again at the next start).

use std::sync::Arc;

use anyhow::Context;

use super::args::ServeArgs;
use super::commands::{Outcome, open_service, stop_signal};
use super::settings::Settings;
use crate::executor::{PluginWatch, Supervisor, TaskApi};
use crate::plan::TaskSettings;
use crate::plan::units::{parse_duration, parse_size};
use crate::server::auth::Auth;
use crate::server::metrics::Metrics;
use crate::server::observer::ServerObserver;
use crate::server::{self, App, ServerConfig};

/// `planrt serve`.
pub async fn serve(settings: &Settings, args: &ServeArgs) -> anyhow::Result<Outcome> {
    let config = ServerConfig {
        listen: args.listen,
        auth: Auth::choose(args.listen, args.token.as_deref(), args.trusted_header)?,
        body_limit: parse_size(&args.max_body)
            .map_err(|e| anyhow::anyhow!("--max-body: {e}"))?
            .try_into()
            .context("--max-body is too large")?,
        request_timeout: parse_duration(&args.request_timeout)
            .map_err(|e| anyhow::anyhow!("--request-timeout: {e}"))?,
    };
    let task_settings = match &args.grants {
        Some(file) => {
            let source = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read grants file {}", file.display()))?;
            let file = std::path::absolute(file)
                .with_context(|| format!("cannot resolve {}", file.display()))?;
            TaskSettings::parse(&source, &file)?
        }
        None => TaskSettings::default(),
    };
    let max_concurrent = match args.max_concurrent {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let service = Arc::new(open_service(settings, Some(max_concurrent)).await?);
    // The store is opened now, so a state dir that cannot hold it fails the start.
    service.store()?;
    let metrics = Arc::new(Metrics::new());
    let observer = Arc::new(ServerObserver::new(metrics.clone()));
    let supervisor = Supervisor::new(service.clone(), observer);
    let tasks = Arc::new(TaskApi::new(supervisor.clone(), task_settings));
    let listener = server::bind(&config)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let _watch = PluginWatch::start(service.clone())?;
    let resumed = supervisor.rehydrate().await?;
    if resumed > 0 {
        tracing::info!("resumed {resumed} unfinished plan(s)");
    }
    tracing::info!(
        "serving on http://{} ({} plugin(s), at most {max_concurrent} attempt(s) at once)",
        listener.local_addr().unwrap_or(config.listen),
        service.registry().len(),
    );
    let app = App::new(tasks, supervisor.clone(), metrics);
    let shutdown = async {
        stop_signal().await;
    };
    server::serve(listener, app, &config, shutdown)
        .await
        .context("the server failed")?;
    supervisor.shutdown().await;
    tracing::info!("stopped; unfinished tasks run again at the next start");
    Ok(Outcome::Success)
}
