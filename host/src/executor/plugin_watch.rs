//! The plugin dir watched while serving: a plugin added, replaced or removed is picked up
//! without a restart. Events are debounced (a copy in progress is one change), then the
//! whole dir is loaded again and swapped in at once ([`Service::reload_plugins`]).

use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use super::service::Service;

/// How long the dir must be quiet before it is loaded again.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the plugin dir until dropped.
pub struct PluginWatch {
    _debouncer: Debouncer<RecommendedWatcher>,
    reloader: tokio::task::JoinHandle<()>,
}

/// The plugin dir cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch the plugin directory {}: {error}", dir.display())]
pub struct WatchError {
    dir: std::path::PathBuf,
    error: notify_debouncer_mini::notify::Error,
}

impl PluginWatch {
    /// Starts watching `service`'s plugin dir; each settled change reloads it.
    pub fn start(service: Arc<Service>) -> Result<Self, WatchError> {
        let dir = service.plugin_dir().to_owned();
        let watch_error = |error| WatchError {
            dir: dir.clone(),
            error,
        };
        let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let mut debouncer =
            new_debouncer(DEBOUNCE, move |events: DebounceEventResult| match events {
                Ok(events) if events.is_empty() => {}
                Ok(_) => {
                    let _ = changed.send(());
                }
                Err(error) => tracing::warn!("watching the plugin directory: {error}"),
            })
            .map_err(watch_error)?;
        debouncer
            .watcher()
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        let reloader = tokio::spawn(async move {
            while changes.recv().await.is_some() {
                // Changes that arrived meanwhile are covered by this one reload.
                while changes.try_recv().is_ok() {}
                reload(&service).await;
            }
        });
        Ok(Self {
            _debouncer: debouncer,
            reloader,
        })
    }
}

impl Drop for PluginWatch {
    fn drop(&mut self) {
        self.reloader.abort();
    }
}

async fn reload(service: &Service) {
    let reloaded = match service.reload_plugins().await {
        Ok(reloaded) => reloaded,
        Err(error) => {
            tracing::error!("plugin directory not reloaded (the loaded plugins stay): {error}");
            return;
        }
    };
    for warning in &reloaded.warnings {
        let kept = if reloaded.kept.contains(&warning.file) {
            "; its previous version stays loaded"
        } else {
            ""
        };
        tracing::warn!(
            "plugin {} not loaded: {}{kept}",
            warning.file.display(),
            warning.reason
        );
    }
    let changes = &reloaded.changes;
    let names = |types: &[crate::plan::TaskType]| {
        types
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if changes.is_empty() {
        tracing::debug!("plugin directory reloaded: no change");
    } else {
        tracing::info!(
            "plugins reloaded: added [{}], replaced [{}], removed [{}]",
            names(&changes.added),
            names(&changes.replaced),
            names(&changes.removed)
        );
    }
}
