//! Spins the CPU forever: only the host's deadline ends it.

use planrt_plugin_sdk::{Context, Guest, Info, Needs, TaskError, export_plugin};

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
            task_type: "test-spin".into(),
            version: "0.1.0".into(),
            description: "Loops forever on the CPU".into(),
            params_schema: r#"{"type":"object"}"#.into(),
            needs: Needs {
                dirs: vec![],
                network: false,
            },
            default_timeout_ms: Some(60_000),
            default_memory_limit: None,
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
