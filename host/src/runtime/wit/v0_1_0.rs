//! Host bindings of `planrt:task@0.1.0` (frozen in `wit/v0.1.0`), and how its types map to
//! and from the latest version's (`conversions_to_latest!`): a 0.1.0 plugin is called
//! exactly as it was built to be.

#![allow(missing_docs)]

use super::latest;

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

use self::planrt::task::{host, types};

super::conversions_to_latest!();
