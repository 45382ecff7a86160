//! Host bindings of the `planrt:task@0.1.0` world, generated from `wit/v0.1.0`.
//!
//! Each frozen WIT version gets its own bindings module; the WASI interfaces map to
//! wasmtime-wasi's and wasmtime-wasi-http's own bindings so they are linked once.

#![allow(missing_docs)]

/// The WIT package version these bindings implement.
pub const WIT_VERSION: &str = "0.1.0";

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit/v0.1.0",
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
