//! Panics in `describe()`: a plugin that cannot even say what it is. Loading it must be a
//! warning naming the file, and every other plugin must load.

use planrt_plugin_sdk::{Context, Guest, Info, TaskError, export_plugin};

struct DescribeTrap;

impl Guest for DescribeTrap {
    fn describe() -> Info {
        panic!("test-describe-trap panics in describe on purpose")
    }

    fn validate(_params: String) -> Result<(), String> {
        Ok(())
    }

    fn run(_context: Context, _params: String) -> Result<String, TaskError> {
        Ok("{}".into())
    }
}

export_plugin!(DescribeTrap);
