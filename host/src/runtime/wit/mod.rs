//! The contract versions this host serves, each frozen in its own bindings module (as
//! Zed's extension host keeps one module per released version): `v0_1_0`, `v0_2_0` and
//! `v0_3_0`, generated from `wit/v0.1.0`, `wit/v0.2.0` and `wit/v0.3.0`. The version a
//! component targets is read from its imports before it is instantiated; it is linked
//! through that version's bindings, and every call returns the latest version's types,
//! so nothing past this module knows there is more than one.

/// The bindings of one frozen version of the `plugin` world: async exports, WASI and
/// wasi:http from wasmtime's own crates (one mapping for every version), plus the
/// version's own import settings and resource types.
macro_rules! plugin_bindings {
    ($path:tt, imports: { $($imports:tt)* }, resources: { $($resources:tt)* }) => {
        wasmtime::component::bindgen!({
            world: "plugin",
            path: $path,
            exports: { default: async },
            imports: { $($imports)* },
            require_store_data_send: true,
            with: {
                "wasi:io": wasmtime_wasi::p2::bindings::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
                "wasi:filesystem": wasmtime_wasi::p2::bindings::filesystem,
                "wasi:random": wasmtime_wasi::p2::bindings::random,
                "wasi:sockets": wasmtime_wasi::p2::bindings::sockets,
                "wasi:cli": wasmtime_wasi::p2::bindings::cli,
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                $($resources)*
            },
        });
    };
    ($path:tt) => {
        $crate::runtime::wit::plugin_bindings!($path, imports: {}, resources: {});
    };
}
use plugin_bindings;

/// The conversions between an older version's types and the latest's, the same for every
/// older version so far (the types the exports use have not changed): invoked inside each
/// older version's module, where `types`, `host` and `latest` name its own interfaces and
/// the latest version.
macro_rules! conversions_to_latest {
    () => {
        impl From<types::Info> for latest::types::Info {
            fn from(info: types::Info) -> Self {
                Self {
                    task_type: info.task_type,
                    version: info.version,
                    description: info.description,
                    params_schema: info.params_schema,
                    needs: latest::types::Needs {
                        dirs: info
                            .needs
                            .dirs
                            .into_iter()
                            .map(|need| latest::types::DirNeed {
                                guest_path: need.guest_path,
                                mode: match need.mode {
                                    types::DirMode::Ro => latest::types::DirMode::Ro,
                                    types::DirMode::Rw => latest::types::DirMode::Rw,
                                },
                            })
                            .collect(),
                        network: info.needs.network,
                    },
                    default_timeout_ms: info.default_timeout_ms,
                    default_memory_limit: info.default_memory_limit,
                }
            }
        }

        impl From<types::TaskError> for latest::types::TaskError {
            fn from(error: types::TaskError) -> Self {
                match error {
                    types::TaskError::Transient(m) => Self::Transient(m),
                    types::TaskError::Permanent(m) => Self::Permanent(m),
                    types::TaskError::InvalidParams(m) => Self::InvalidParams(m),
                }
            }
        }

        impl From<&latest::types::Context> for types::Context {
            fn from(context: &latest::types::Context) -> Self {
                Self {
                    plan_id: context.plan_id.clone(),
                    task_id: context.task_id.clone(),
                    task_type: context.task_type.clone(),
                    plan_index: context.plan_index,
                    attempt: context.attempt,
                    max_retries: context.max_retries,
                    deadline_unix_ms: context.deadline_unix_ms,
                }
            }
        }

        impl From<host::Level> for latest::host::Level {
            fn from(level: host::Level) -> Self {
                match level {
                    host::Level::Trace => Self::Trace,
                    host::Level::Debug => Self::Debug,
                    host::Level::Info => Self::Info,
                    host::Level::Warn => Self::Warn,
                    host::Level::Error => Self::Error,
                }
            }
        }
    };
}
use conversions_to_latest;

pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_3_0;

pub use v0_3_0 as latest;

use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store};

use super::state::AttemptState;
use latest::types::{Context, Info, TaskError};

/// The WIT package of the contract, without version.
pub const PACKAGE: &str = "planrt:task";

/// A version of the `planrt:task` contract this host serves.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum WitVersion {
    /// The first release: describe, validate, run; log and progress.
    #[serde(rename = "0.1.0")]
    V0_1_0,
    /// Adds the per-task-type `kv` store and `cancellation`.
    #[serde(rename = "0.2.0")]
    V0_2_0,
    /// Adds a unit to `progress`, and host-side `digest` and `compression`.
    #[serde(rename = "0.3.0")]
    V0_3_0,
}

impl WitVersion {
    /// Every version served, oldest first.
    pub const ALL: [WitVersion; 3] = [WitVersion::V0_1_0, WitVersion::V0_2_0, WitVersion::V0_3_0];
    /// The newest version served.
    pub const LATEST: WitVersion = WitVersion::V0_3_0;

    /// `0.1.0`, `0.2.0`, `0.3.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "0.1.0",
            WitVersion::V0_2_0 => "0.2.0",
            WitVersion::V0_3_0 => "0.3.0",
        }
    }

    /// The served version written `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// The version `component` targets, read from its `planrt:task/…@X` imports (every
    /// plugin imports the `types` interface its exports use).
    pub fn of_component(component: &Component, engine: &Engine) -> Result<Self, VersionError> {
        let component_type = component.component_type();
        let mut found: Vec<&str> = component_type
            .imports(engine)
            .filter_map(|(name, _)| {
                let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
                // An interface of the package without a version is one no release has.
                Some(rest.split_once('@').map_or("", |(_, version)| version))
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        match found.as_slice() {
            [] => Err(VersionError::NotAPlugin),
            [""] => Err(VersionError::Unversioned),
            [one] => Self::parse(one).ok_or_else(|| VersionError::Unsupported {
                found: (*one).to_owned(),
            }),
            several => Err(VersionError::Mixed(several.join(", "))),
        }
    }
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a component's contract version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// A version outside the range served.
    #[error(
        "targets {PACKAGE}@{found}, but this host serves {PACKAGE}@{} to {}",
        WitVersion::ALL[0], WitVersion::LATEST
    )]
    Unsupported {
        /// The version the component imports.
        found: String,
    },
    /// No `planrt:task` import at all.
    #[error(
        "imports no {PACKAGE} interface: not a planrt plugin (this host serves {PACKAGE}@{} to {})",
        WitVersion::ALL[0], WitVersion::LATEST
    )]
    NotAPlugin,
    /// `planrt:task` interfaces imported without a version.
    #[error(
        "imports {PACKAGE} interfaces without a version: build it against a released one ({PACKAGE}@{} to {})",
        WitVersion::ALL[0], WitVersion::LATEST
    )]
    Unversioned,
    /// Imports of several versions at once.
    #[error("imports {PACKAGE} at several versions ({0}): build it against one")]
    Mixed(String),
}

/// A plugin linked through its version's bindings, ready to instantiate.
pub enum PluginPre {
    /// A `planrt:task@0.1.0` plugin.
    V0_1_0(v0_1_0::PluginPre<AttemptState>),
    /// A `planrt:task@0.2.0` plugin.
    V0_2_0(v0_2_0::PluginPre<AttemptState>),
    /// A `planrt:task@0.3.0` plugin.
    V0_3_0(v0_3_0::PluginPre<AttemptState>),
}

impl PluginPre {
    /// Checks that `pre` has the exports `version` requires.
    pub fn new(version: WitVersion, pre: InstancePre<AttemptState>) -> wasmtime::Result<Self> {
        Ok(match version {
            WitVersion::V0_1_0 => Self::V0_1_0(v0_1_0::PluginPre::new(pre)?),
            WitVersion::V0_2_0 => Self::V0_2_0(v0_2_0::PluginPre::new(pre)?),
            WitVersion::V0_3_0 => Self::V0_3_0(v0_3_0::PluginPre::new(pre)?),
        })
    }

    /// The version it was linked as.
    pub fn version(&self) -> WitVersion {
        match self {
            Self::V0_1_0(_) => WitVersion::V0_1_0,
            Self::V0_2_0(_) => WitVersion::V0_2_0,
            Self::V0_3_0(_) => WitVersion::V0_3_0,
        }
    }

    /// A fresh instance in `store`.
    pub async fn instantiate_async(
        &self,
        store: &mut Store<AttemptState>,
    ) -> wasmtime::Result<PluginInstance> {
        Ok(match self {
            Self::V0_1_0(pre) => PluginInstance::V0_1_0(pre.instantiate_async(store).await?),
            Self::V0_2_0(pre) => PluginInstance::V0_2_0(pre.instantiate_async(store).await?),
            Self::V0_3_0(pre) => PluginInstance::V0_3_0(pre.instantiate_async(store).await?),
        })
    }
}

/// One instance of a plugin; its calls speak the latest version's types.
pub enum PluginInstance {
    /// A `planrt:task@0.1.0` instance.
    V0_1_0(v0_1_0::Plugin),
    /// A `planrt:task@0.2.0` instance.
    V0_2_0(v0_2_0::Plugin),
    /// A `planrt:task@0.3.0` instance.
    V0_3_0(v0_3_0::Plugin),
}

impl PluginInstance {
    /// `describe()`.
    pub async fn call_describe(&self, store: &mut Store<AttemptState>) -> wasmtime::Result<Info> {
        Ok(match self {
            Self::V0_1_0(plugin) => plugin.call_describe(store).await?.into(),
            Self::V0_2_0(plugin) => plugin.call_describe(store).await?.into(),
            Self::V0_3_0(plugin) => plugin.call_describe(store).await?,
        })
    }

    /// `validate(params)`.
    pub async fn call_validate(
        &self,
        store: &mut Store<AttemptState>,
        params: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V0_1_0(plugin) => plugin.call_validate(store, params).await,
            Self::V0_2_0(plugin) => plugin.call_validate(store, params).await,
            Self::V0_3_0(plugin) => plugin.call_validate(store, params).await,
        }
    }

    /// `run(context, params)`.
    pub async fn call_run(
        &self,
        store: &mut Store<AttemptState>,
        context: &Context,
        params: &str,
    ) -> wasmtime::Result<Result<String, TaskError>> {
        Ok(match self {
            Self::V0_1_0(plugin) => plugin
                .call_run(store, &context.into(), params)
                .await?
                .map_err(TaskError::from),
            Self::V0_2_0(plugin) => plugin
                .call_run(store, &context.into(), params)
                .await?
                .map_err(TaskError::from),
            Self::V0_3_0(plugin) => plugin.call_run(store, context, params).await?,
        })
    }
}
