//! What a plugin says about itself in `describe()`, in the host's terms.

use std::time::Duration;

use super::wit::WitVersion;
use super::wit::latest::types::{self as wit, DirMode};

/// A directory a plugin needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirNeed {
    /// Guest path, e.g. `/home`.
    pub guest_path: String,
    /// Whether it must be writable.
    pub writable: bool,
}

/// What `describe` said (kept in the plugin index between runs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    /// Task type name (validated by the registry).
    pub task_type: String,
    /// The plugin's version.
    pub version: String,
    /// One line of description.
    pub description: String,
    /// JSON Schema of params, as text.
    pub params_schema: String,
    /// Directories needed.
    pub dirs: Vec<DirNeed>,
    /// Whether it makes outgoing HTTP requests.
    pub network: bool,
    /// Suggested timeout.
    pub default_timeout: Option<Duration>,
    /// Suggested memory limit.
    pub default_memory_limit: Option<u64>,
    /// The contract version the component targets.
    pub wit_version: WitVersion,
}

impl PluginInfo {
    /// What a component of `wit_version` said in `describe()`.
    pub fn new(info: wit::Info, wit_version: WitVersion) -> Self {
        Self {
            task_type: info.task_type,
            version: info.version,
            description: info.description,
            params_schema: info.params_schema,
            dirs: info
                .needs
                .dirs
                .into_iter()
                .map(|d| DirNeed {
                    guest_path: d.guest_path,
                    writable: d.mode == DirMode::Rw,
                })
                .collect(),
            network: info.needs.network,
            default_timeout: info.default_timeout_ms.map(Duration::from_millis),
            default_memory_limit: info.default_memory_limit,
            wit_version,
        }
    }
}
