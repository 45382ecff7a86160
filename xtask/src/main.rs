//! Project tasks: `cargo xtask plugins | demo | test`.
//!
//! Plugins are built for wasm32-wasip2 with rustup's target when it is installed, else
//! with Debian's rustc-web and a from-source std (see `toolchain`), which this module
//! installs with apt when it must. Linker settings go through the environment, never
//! through a machine-specific `.cargo/config.toml`.

mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = project_root();
    match task.as_str() {
        "plugins" => build_plugins(&root).map(drop),
        "demo" => demo(&root),
        "test" => test(&root),
        _ => {
            eprintln!("usage: cargo xtask <plugins|demo|test>\n");
            eprintln!(
                "  plugins  build every plugin to target/plugins/ (shipped) and target/test-plugins/"
            );
            eprintln!("  demo     build what it needs and run the example plan");
            eprintln!("  test     build plugins, then fmt, clippy and every test");
            std::process::exit(2);
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs `command`, failing with its description if it does not exit 0.
pub fn run(command: &mut Command) -> Result<()> {
    eprintln!("xtask: {command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// The cargo that runs this xtask (rustup's), for host builds and native tests.
fn host_cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// A plugin crate of the plugins workspace.
struct PluginCrate {
    /// Crate name = task type = output file stem.
    name: String,
    /// Test-only plugins go to target/test-plugins.
    test_only: bool,
}

fn plugin_crates(root: &Path) -> Result<Vec<PluginCrate>> {
    let mut crates = Vec::new();
    for (dir, test_only) in [
        (root.join("plugins"), false),
        (root.join("plugins/test-plugins"), true),
    ] {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            let manifest = path.join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            // Only component crates (cdylib); the SDK is a plain library.
            if !text.contains("\"cdylib\"") {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            crates.push(PluginCrate { name, test_only });
        }
    }
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(crates)
}

/// Builds every plugin and copies each component to its output directory.
fn build_plugins(root: &Path) -> Result<Vec<PathBuf>> {
    let wasm_target_dir = root.join("target/wasm");
    let mut build = toolchain::wasm_build_command(root)?;
    build
        .current_dir(root.join("plugins"))
        .env("CARGO_TARGET_DIR", &wasm_target_dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
            "--exclude",
            "planrt-plugin-sdk",
        ]);
    run(&mut build)?;

    let mut outputs = Vec::new();
    for krate in plugin_crates(root)? {
        let built = wasm_target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", krate.name.replace('-', "_")));
        let out_dir = root.join(if krate.test_only {
            "target/test-plugins"
        } else {
            "target/plugins"
        });
        std::fs::create_dir_all(&out_dir)?;
        let out = out_dir.join(format!("{}.wasm", krate.name));
        std::fs::copy(&built, &out)
            .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
        eprintln!(
            "xtask: {} ({} KiB)",
            out.strip_prefix(root).unwrap_or(&out).display(),
            std::fs::metadata(&out)?.len() / 1024
        );
        outputs.push(out);
    }
    Ok(outputs)
}

/// Builds the host in the dev profile (the one the tests use: one wasmtime build).
fn build_host(root: &Path) -> Result<PathBuf> {
    run(host_cargo()
        .current_dir(root)
        .args(["build", "--package", "planrt"]))?;
    Ok(root.join("target/debug/planrt"))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Runs the example plan on a fresh copy of the example node home.
fn demo(root: &Path) -> Result<()> {
    build_plugins(root)?;
    let planrt = build_host(root)?;
    let demo = root.join("target/demo");
    if demo.exists() {
        std::fs::remove_dir_all(&demo)?;
    }
    copy_dir(&root.join("examples"), &demo)?;
    let plan = demo.join("plans/node-config.toml");
    run(Command::new(&planrt)
        .arg("run")
        .arg(&plan)
        .arg("--plugins")
        .arg(root.join("target/plugins"))
        .arg("--state")
        .arg(demo.join("state")))?;
    let config = demo.join("node-home/config/config.toml");
    println!(
        "\n--- {} after the plan ---",
        config.strip_prefix(root).unwrap_or(&config).display()
    );
    print!("{}", std::fs::read_to_string(&config)?);
    Ok(())
}

/// Everything CI checks.
fn test(root: &Path) -> Result<()> {
    build_plugins(root)?;
    let plugins_manifest = root.join("plugins/Cargo.toml");
    let native_target = root.join("target/plugins-native");
    run(host_cargo()
        .current_dir(root)
        .args(["fmt", "--all", "--", "--check"]))?;
    run(host_cargo()
        .current_dir(root)
        .args(["fmt", "--all", "--manifest-path"])
        .arg(&plugins_manifest)
        .args(["--", "--check"]))?;
    run(host_cargo().current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(host_cargo()
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &native_target)
        .args(["clippy", "--workspace", "--all-targets", "--manifest-path"])
        .arg(&plugins_manifest)
        .args(["--", "-D", "warnings"]))?;
    run(host_cargo()
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &native_target)
        .args(["test", "--workspace", "--manifest-path"])
        .arg(&plugins_manifest))?;
    build_host(root)?;
    // The crash harness runs on its own, uncaptured, so its report of where the kills
    // landed shows in the log.
    const CRASH_TEST: &str = "sigkill_anywhere_then_resume_loses_nothing_and_repeats_nothing";
    run(host_cargo()
        .current_dir(root)
        .args(["test", "--workspace", "--", "--skip", CRASH_TEST]))?;
    run(host_cargo().current_dir(root).args([
        "test",
        "--package",
        "planrt-e2e",
        "--test",
        "crash",
        "--",
        "--nocapture",
    ]))?;
    Ok(())
}
