//! Project tasks: `cargo xtask plugins | examples | demo | test | bench | fuzz`.
//!
//! Plugins are built for wasm32-wasip2 with rustup's target when it is installed, else
//! with Debian's rustc-web and a from-source std (see `toolchain`), which this module
//! installs with apt when it must. Linker settings go through the environment, never
//! through a machine-specific `.cargo/config.toml`.

mod bench;
mod fuzz;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().cloned().unwrap_or_default();
    let rest = args.get(1..).unwrap_or_default();
    let root = project_root();
    match task.as_str() {
        "bench" => bench::bench(&root, rest),
        // Helpers of the bench, run as child processes.
        "rss-of" => bench::rss_of(rest),
        "native-extract" => bench::native_extract(rest),
        "plugins" => build_plugins(&root).map(drop),
        "examples" => build_examples(&root),
        "demo" => demo(&root),
        "test" => test(&root),
        "fuzz" => fuzz::fuzz(&root, &fuzz::FuzzOptions::parse(rest)?),
        _ => {
            eprintln!("usage: cargo xtask <plugins|examples|demo|test|bench|fuzz>\n");
            eprintln!(
                "  plugins  build every plugin to target/plugins/ (shipped) and target/test-plugins/"
            );
            eprintln!(
                "  examples install the C, JavaScript and Python toolchains (under target/lang-tools)\n           and build the example plugins to target/examples-build/plugins/"
            );
            eprintln!("  demo     build what it needs and run the example plan");
            eprintln!(
                "  bench    per-task overhead, plan sizes, a wide graph, start, snapshot-restore: each against a native baseline [--only SUITE] [--quick]"
            );
            eprintln!(
                "  fuzz     proptest properties, then every cargo-fuzz target of fuzz/ [--seconds N | --runs N] [--cases N] [--only TARGET] [--seed N]"
            );
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
pub(crate) fn host_cargo() -> Command {
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
pub(crate) fn build_plugins(root: &Path) -> Result<Vec<PathBuf>> {
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

/// Installs the C, JavaScript and Python plugin toolchains (cached under
/// `target/lang-tools`) and builds the example plugins of `examples/plugins` with them.
/// The recipe is `examples/plugins/build.sh`, which users run the same way.
fn build_examples(root: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    run(Command::new("bash")
        .arg(root.join("examples/plugins/build.sh"))
        .arg("all"))?;
    eprintln!(
        "xtask: example plugins and their toolchains took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
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

/// The fixtures `examples/plans/node-bootstrap.toml` expects on 127.0.0.1.
struct DemoFixtures {
    _snapshots: planrt_fixtures::HttpFixture,
    _rpcs: [planrt_fixtures::FakeRpc; 2],
}

/// Starts a snapshot server (a generated archive at height 5000 and `latest.txt`) and two
/// fake CometBFT RPCs whose node IDs and block hashes are new every run.
fn start_demo_fixtures() -> Result<DemoFixtures> {
    use planrt_fixtures::{Entry, FakeRpc, random_bytes, snapshot_server_on, tar_gz};
    let blocks = random_bytes(4 << 20, 42);
    let archive = tar_gz(&[
        Entry::Dir("data/"),
        Entry::File("data/application.db/000001.ldb", &blocks[..1 << 20]),
        Entry::File("data/blockstore.db/000001.ldb", &blocks[1 << 20..]),
        Entry::File("data/state.db/CURRENT", b"MANIFEST-000001\n"),
    ]);
    for addr in ["127.0.0.1:17080", "127.0.0.1:17657", "127.0.0.1:17658"] {
        std::net::TcpListener::bind(addr).with_context(|| {
            format!("cannot start a demo fixture on {addr} (is the port in use?)")
        })?;
    }
    let snapshots = snapshot_server_on(
        "127.0.0.1:17080",
        "planrt-demo-1",
        5000,
        vec![(5000, archive)],
    );
    let rpcs = [
        FakeRpc::start_on("127.0.0.1:17657", 12_345),
        FakeRpc::start_on("127.0.0.1:17658", 12_345),
    ];
    eprintln!(
        "xtask: snapshot server on {}, fake RPCs on {} and {}",
        snapshots.url(),
        rpcs[0].server.url(),
        rpcs[1].server.url()
    );
    Ok(DemoFixtures {
        _snapshots: snapshots,
        _rpcs: rpcs,
    })
}

/// Runs the node-bootstrap example on a fresh copy of the example node home.
fn demo(root: &Path) -> Result<()> {
    build_plugins(root)?;
    let planrt = build_host(root)?;
    let demo = root.join("target/demo");
    if demo.exists() {
        std::fs::remove_dir_all(&demo)?;
    }
    copy_dir(&root.join("examples"), &demo)?;
    let _fixtures = start_demo_fixtures()?;
    let plan = demo.join("plans/node-bootstrap.toml");
    run(Command::new(&planrt)
        .arg("run")
        .arg(&plan)
        .arg("--plugins")
        .arg(root.join("target/plugins"))
        .arg("--state")
        .arg(demo.join("state")))?;
    let home = demo.join("node-home");
    println!(
        "\n--- restored data dir ({}) ---",
        home.join("data").display()
    );
    let mut files: Vec<String> = walk(&home.join("data"))?;
    files.sort();
    for file in files {
        println!("  {file}");
    }
    let config = std::fs::read_to_string(home.join("config/config.toml"))?;
    println!("\n--- node-home/config/config.toml: what the plan set ---");
    for line in config.lines().filter(|l| {
        [
            "moniker",
            "persistent_peers",
            "max_num_",
            "timeout_commit",
            "enable",
            "rpc_servers",
            "trust_",
        ]
        .iter()
        .any(|k| l.starts_with(k))
            || l.starts_with('[')
    }) {
        println!("  {line}");
    }
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            out.extend(
                walk(&entry.path())?
                    .into_iter()
                    .map(|f| format!("{name}/{f}")),
            );
        } else {
            out.push(format!("{name} ({} bytes)", entry.metadata()?.len()));
        }
    }
    Ok(out)
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Everything CI checks.
fn test(root: &Path) -> Result<()> {
    build_plugins(root)?;
    build_examples(root)?;
    let plugins_manifest = root.join("plugins/Cargo.toml");
    let fuzz_manifest = root.join("fuzz/Cargo.toml");
    let native_target = root.join("target/plugins-native");
    run(host_cargo()
        .current_dir(root)
        .args(["fmt", "--all", "--", "--check"]))?;
    for manifest in [&plugins_manifest, &fuzz_manifest] {
        run(host_cargo()
            .current_dir(root)
            .args(["fmt", "--all", "--manifest-path"])
            .arg(manifest)
            .args(["--", "--check"]))?;
    }
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
        .args(["clippy", "--all-targets", "--features", "libfuzzer"])
        .args(["--target-dir", "target", "--manifest-path"])
        .arg(&fuzz_manifest)
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
    // Tests that need root (chown to another user) are `#[ignore]`d; as root, run them.
    let mut test = host_cargo();
    test.current_dir(root)
        .args(["test", "--workspace", "--", "--skip", CRASH_TEST]);
    if is_root() {
        test.arg("--include-ignored");
    }
    run(&mut test)?;
    run(host_cargo().current_dir(root).args([
        "test",
        "--package",
        "planrt-e2e",
        "--test",
        "crash",
        "--",
        "--nocapture",
    ]))?;
    // The fuzz campaign, bounded and seeded: its properties, then a fixed number of
    // inputs per cargo-fuzz target, the same on every machine (longer campaigns explore:
    // `cargo xtask fuzz`). 100 000 inputs take 1–12 s per target here.
    const CI_FUZZ_RUNS: u64 = 100_000;
    fuzz::fuzz(
        root,
        &fuzz::FuzzOptions {
            budget: fuzz::Budget::Runs(CI_FUZZ_RUNS),
            cases: 4096,
            only: None,
            seed: Some(20261127),
        },
    )?;
    // Benchmarks are not tests: a quick run on the debug build only checks that every
    // suite executes (their figures come from `cargo xtask bench` on a release build).
    let debug_planrt = root.join("target/debug/planrt");
    let smoke = [
        "--quick",
        "--planrt",
        debug_planrt.to_str().context("a UTF-8 path")?,
    ];
    bench::bench(root, &smoke.map(str::to_owned))?;
    Ok(())
}
