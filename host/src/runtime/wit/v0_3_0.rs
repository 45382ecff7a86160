//! Host bindings of `planrt:task@0.3.0` (frozen in `wit/v0.3.0`), the latest version: its
//! types are the ones the rest of the runtime speaks. It adds a unit to `progress` and
//! the `digest` and `compression` interfaces to 0.2.0.

#![allow(missing_docs)]

super::plugin_bindings!(
    "../wit/v0.3.0",
    imports: {
        // Log, progress and kv wait for the call's effect gate (`capability::effects`).
        "planrt:task/host": async | trappable,
        "planrt:task/kv": async | trappable,
        // A call on a handle the guest does not own, or one resource too many, traps.
        "planrt:task/digest": trappable,
        // Decoding awaits the decoder's own thread (and a new decoder, the threads of
        // dropped ones).
        "planrt:task/compression.[constructor]decoder": async | trappable,
        "planrt:task/compression.[method]decoder.decode": async | trappable,
        "planrt:task/compression.[method]decoder.finish": async | trappable,
        "planrt:task/compression": trappable,
    },
    resources: {
        "planrt:task/digest.hasher": crate::runtime::capability::codec::Hasher,
        "planrt:task/compression.decoder": crate::runtime::capability::codec::Decoder,
    }
);

pub use self::planrt::task::{cancellation, compression, digest, host, kv, types};
