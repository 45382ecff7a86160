//! `planrt serve`: builds the server's settings from flags, opens the executor, resumes
//! the API's unfinished plans, serves until SIGTERM or ctrl-c, then stops what runs
//! (recorded `interrupted`: it runs again at the next start) and exits 130, as every
//! command stopped by a signal does.

use std::sync::Arc;

use anyhow::Context;

use super::args::ServeArgs;
use super::commands::{Outcome, open_service, stop_signal};
use super::settings::Settings;
use crate::executor::{PluginWatch, Supervisor};
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
    service
        .refuse_own_dirs(&task_settings.grants)
        .context("the --grants file")?;
    let metrics = Arc::new(Metrics::new());
    let observer = Arc::new(ServerObserver::new(metrics.clone()));
    let supervisor = Supervisor::new(service.clone(), observer);
    let listener = server::bind(&config)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let _watch = match PluginWatch::start(service.clone()) {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!(
                "{error}; plugins are not reloaded while serving (restart to pick up changes)"
            );
            None
        }
    };
    let resumed = supervisor.rehydrate(&task_settings.grants).await?;
    // Plans whose run stopped on an error, or that could not be reopened for a passing
    // reason, are tried again from time to time.
    let retry = {
        let supervisor = supervisor.clone();
        let within = task_settings.grants.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REHYDRATE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(error) = supervisor.rehydrate(&within).await {
                    tracing::warn!("unfinished plans not checked: {error}");
                }
            }
        })
    };
    if resumed > 0 {
        tracing::info!("resumed {resumed} unfinished plan(s)");
    }
    tracing::info!(
        "serving on http://{} ({} plugin(s), at most {max_concurrent} attempt(s) at once)",
        listener.local_addr().unwrap_or(config.listen),
        service.registry().len(),
    );
    let app = App::new(supervisor.clone(), task_settings, metrics);
    let stopping = Arc::new(tokio::sync::Notify::new());
    let drain = {
        let stopping = stopping.clone();
        async move { stopping.notified().await }
    };
    let serving = server::serve(listener, app, &config, drain);
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served.context("the server failed")?,
        _ = stop_signal() => {
            // Requests in flight drain while the runs stop (recorded `interrupted`), both
            // bounded so the process ends within an orchestrator's grace period.
            stopping.notify_one();
            let stop = async {
                tokio::join!(
                    tokio::time::timeout(DRAIN_LIMIT, &mut serving),
                    supervisor.shutdown(),
                )
            };
            match tokio::time::timeout(STOP_LIMIT, stop).await {
                Ok((Ok(served), ())) => served.context("the server failed")?,
                Ok((Err(_), ())) => tracing::warn!(
                    "requests still open after {}s were dropped",
                    DRAIN_LIMIT.as_secs()
                ),
                // A commit stuck on the disk: what it did not record is recorded
                // `interrupted` at the next start, as after a crash.
                Err(_) => tracing::warn!(
                    "runs not stopped after {}s were left as after a crash",
                    STOP_LIMIT.as_secs()
                ),
            }
        }
    }
    retry.abort();
    tracing::info!("stopped; unfinished tasks run again at the next start");
    Ok(Outcome::Interrupted)
}

/// How often plans left unfinished and not running are tried again.
const REHYDRATE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// How long requests in flight may take to finish once stopping.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How long stopping may take in all: under Kubernetes' default 30 s grace period.
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(25);
