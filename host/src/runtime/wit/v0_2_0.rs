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

super::conversions_to_latest!();

impl From<latest::kv::KvError> for kv::KvError {
    fn from(error: latest::kv::KvError) -> Self {
        match error {
            latest::kv::KvError::InvalidKey(m) => Self::InvalidKey(m),
            latest::kv::KvError::TooLarge(m) => Self::TooLarge(m),
            latest::kv::KvError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}
