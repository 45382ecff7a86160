//! Allocates (and touches) memory 1 MiB at a time until the host's limit stops it.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};

struct Hog;

impl Guest for Hog {
    fn describe() -> Info {
        Info::new("test-hog", "0.1.0", "Allocates memory without bound")
    }

    fn validate(_params: String) -> Result<(), String> {
        Ok(())
    }

    fn run(_context: Context, _params: String) -> Result<String, TaskError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

export_plugin!(Hog);
