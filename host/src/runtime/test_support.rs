//! Loading a built test plugin into a real runtime, for the runtime's unit tests.

use std::sync::Arc;

use super::{Capabilities, LoadedPlugin, Runtime};

/// A runtime with `capabilities` and the one test plugin `task_type` (built to
/// `target/test-plugins` by `cargo xtask plugins`, as `cargo xtask test` does first),
/// loaded from a plugin dir of its own. The temporary dir holds the plugin dir and the
/// compiled cache: keep it as long as the runtime.
pub async fn load_test_plugin(
    task_type: &str,
    capabilities: Capabilities,
) -> (Runtime, Arc<LoadedPlugin>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-plugins")
        .join(format!("{task_type}.wasm"));
    std::fs::copy(&built, plugins.join(format!("{task_type}.wasm")))
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask plugins`)", built.display()));
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
