//! Host bindings of `planrt:task@0.1.0` (frozen in `wit/v0.1.0`), and how its types map to
//! and from the latest version's (`conversions_to_latest!`): a 0.1.0 plugin is called
//! exactly as it was built to be.

#![allow(missing_docs)]

use super::latest;

super::plugin_bindings!(
    "../wit/v0.1.0",
    imports: {
        // Log and progress wait for the call's effect gate (`capability::effects`).
        "planrt:task/host": async | trappable,
    },
    resources: {}
);

use self::planrt::task::{host, types};

super::conversions_to_latest!();
