//! Loading built test plugins into a real runtime, for unit tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Capabilities, LoadedPlugin, Runtime};

/// The component of test plugin `task_type`, as `cargo xtask plugins` (which `cargo xtask
/// test` runs first) builds it to `target/test-plugins`.
pub fn built_plugin(task_type: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-plugins")
        .join(format!("{task_type}.wasm"))
}

/// The bytes of [`built_plugin`].
pub fn built_plugin_bytes(task_type: &str) -> Vec<u8> {
    let built = built_plugin(task_type);
    std::fs::read(&built)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask plugins`)", built.display()))
}

/// A plugin dir `dir/plugins` holding the built test plugins `task_types`.
pub fn plugin_dir(dir: &Path, task_types: &[&str]) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for task_type in task_types {
        let file = format!("{task_type}.wasm");
        std::fs::write(plugins.join(file), built_plugin_bytes(task_type)).unwrap();
    }
    plugins
}

/// A runtime with `capabilities` and the one test plugin `task_type`, loaded from a
/// plugin dir of its own. The temporary dir holds the plugin dir and the compiled cache:
/// keep it as long as the runtime.
pub async fn load_test_plugin(
    task_type: &str,
    capabilities: Capabilities,
) -> (Runtime, Arc<LoadedPlugin>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(dir.path(), &[task_type]);
    let runtime = Runtime::new(
        capabilities,
        &dir.path().join("compiled"),
        [0; crate::state_dir::CACHE_KEY_LEN],
    )
    .unwrap();
    let (registry, warnings) = runtime.load_plugins(&plugins).await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let plugin = registry
        .get(&crate::plan::TaskType::new(task_type).unwrap())
        .unwrap()
        .clone();
    (runtime, plugin, dir)
}
