//! Spins the CPU forever: only the host's deadline ends it.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};

struct Spin;

#[inline(never)]
fn spin_forever() -> ! {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

impl Guest for Spin {
    fn describe() -> Info {
        Info {
            default_timeout_ms: Some(60_000),
            ..Info::new("test-spin", "0.1.0", "Loops forever on the CPU")
        }
    }

    fn validate(_params: String) -> Result<(), String> {
        Ok(())
    }

    fn run(_context: Context, _params: String) -> Result<String, TaskError> {
        spin_forever()
    }
}

export_plugin!(Spin);
