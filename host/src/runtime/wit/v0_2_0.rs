//! Host bindings of `planrt:task@0.2.0` (frozen in `wit/v0.2.0`), and how its types map to
//! and from the latest version's. It added the `kv` and `cancellation` interfaces to
//! 0.1.0; 0.3.0 kept them unchanged.

#![allow(missing_docs)]

use super::latest;

super::plugin_bindings!(
    "../wit/v0.2.0",
    imports: {
        // Log, progress and kv wait for the call's effect gate (`capability::effects`).
        "planrt:task/host": async | trappable,
        "planrt:task/kv": async | trappable,
    },
    resources: {}
);

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
