//! Host bindings of `planrt:task@0.2.0` (frozen in `wit/v0.2.0`), the latest version: its
//! types are the ones the rest of the runtime speaks. It adds the `kv` and
//! `cancellation` interfaces to 0.1.0.

#![allow(missing_docs)]

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
