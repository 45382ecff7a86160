//! Host bindings of `planrt:task@0.2.0` (frozen in `wit/v0.2.0`), and how its types map to
//! and from the latest version's. It added the `kv` and `cancellation` interfaces to
//! 0.1.0; 0.3.0 kept them unchanged.

#![allow(missing_docs)]

use super::latest;

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit/v0.2.0",
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:filesystem": wasmtime_wasi::p2::bindings::filesystem,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "wasi:sockets": wasmtime_wasi::p2::bindings::sockets,
        "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
    },
});

pub use self::planrt::task::{cancellation, host, kv, types};

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

impl From<latest::kv::KvError> for kv::KvError {
    fn from(error: latest::kv::KvError) -> Self {
        match error {
            latest::kv::KvError::InvalidKey(m) => Self::InvalidKey(m),
            latest::kv::KvError::TooLarge(m) => Self::TooLarge(m),
            latest::kv::KvError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}
