//! `cargo xtask fuzz [--seconds N | --runs N] [--cases N] [--only TARGET] [--seed N]`: the fuzz
//! campaign of `fuzz/` — its oracles' own tests and its proptest properties
//! (`PROPTEST_CASES` = `--cases`), then every `cargo fuzz` target for `--seconds` (or
//! `--runs` inputs) each, seeded from `seed-corpus` and keeping its corpus in
//! `target/fuzz-corpus/` between runs. Prints each target's executions and fails on the
//! first crash, printing the inputs libFuzzer saved.
//!
//! libFuzzer's coverage instrumentation works on the stable toolchain; its sanitizers need
//! nightly, so the targets run with `--sanitizer none` (the code under test is safe Rust:
//! the oracles look for panics and broken promises, not memory errors).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::{host_cargo, run};

/// The cargo-fuzz this campaign installs (under target/lang-tools) when it is missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// How long a target runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many seconds (`-max_total_time`).
    Seconds(u64),
    /// This many inputs (`-runs`; with a seed, the same inputs on any machine).
    Runs(u64),
}

/// What `cargo xtask fuzz` was asked for.
pub struct FuzzOptions {
    /// How long each target runs.
    pub budget: Budget,
    /// Cases per proptest property.
    pub cases: u64,
    /// One target only.
    pub only: Option<String>,
    /// Fixed seeds for libFuzzer and proptest (CI: the same inputs on every run, so a
    /// finding fails the commit that made it, not a later one); `None`: random.
    pub seed: Option<u64>,
}

impl FuzzOptions {
    /// Parses `--seconds N`, `--runs N` (the last of the two counts), `--cases N`,
    /// `--only TARGET` and `--seed N`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = FuzzOptions {
            budget: Budget::Seconds(60),
            cases: 4096,
            only: None,
            seed: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--seconds" => {
                    options.budget = Budget::Seconds(value()?.parse().context("--seconds")?)
                }
                "--cases" => options.cases = value()?.parse().context("--cases")?,
                "--only" => options.only = Some(value()?.clone()),
                "--runs" => options.budget = Budget::Runs(value()?.parse().context("--runs")?),
                "--seed" => {
                    let seed: u64 = value()?.parse().context("--seed")?;
                    // libFuzzer takes 0 as "pick one at random".
                    ensure!(
                        seed != 0,
                        "--seed must not be 0 (libFuzzer reads it as random)"
                    );
                    options.seed = Some(seed);
                }
                other => bail!(
                    "unknown argument {other} (--seconds N, --runs N, --cases N, --only TARGET, --seed N)"
                ),
            }
        }
        Ok(options)
    }
}

/// One target's run.
struct TargetRun {
    target: String,
    executions: u64,
    seconds: f64,
    corpus: usize,
}

/// Runs the campaign.
pub fn fuzz(root: &Path, options: &FuzzOptions) -> Result<()> {
    let manifest = root.join("fuzz/Cargo.toml");
    let tools = root.join("target/lang-tools");
    install_cargo_fuzz(&tools)?;

    let mut properties = host_cargo();
    if let Some(seed) = options.seed {
        properties.env("PROPTEST_RNG_SEED", seed.to_string());
    }
    run(properties
        .current_dir(root)
        .env("PROPTEST_CASES", options.cases.to_string())
        .args(["test", "--target-dir", "target", "--manifest-path"])
        .arg(&manifest))?;

    let corpus_root = root.join("target/fuzz-corpus");
    run(host_cargo()
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--target-dir",
            "target",
            "--manifest-path",
        ])
        .arg(&manifest)
        .args(["--example", "seed-corpus", "--"])
        .arg(&corpus_root))?;

    let path = format!(
        "{}:{}",
        tools.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let fuzz_target_dir = root.join("target/fuzz");
    run(host_cargo()
        .current_dir(root)
        .env("PATH", &path)
        .env("CARGO_TARGET_DIR", &fuzz_target_dir)
        .args(["fuzz", "build", "--fuzz-dir", "fuzz", "--sanitizer", "none"])
        .args(["--features", "libfuzzer"]))?;

    let binaries = fuzz_target_dir.join(host_triple()?).join("release");
    let targets = targets(root)?;
    let mut runs = Vec::new();
    for target in &targets {
        if options.only.as_ref().is_some_and(|only| only != target) {
            continue;
        }
        runs.push(fuzz_target(root, &binaries.join(target), target, options)?);
    }
    if runs.is_empty() {
        bail!(
            "no fuzz target {:?} (targets: {})",
            options.only,
            targets.join(", ")
        );
    }
    println!(
        "\n{:<16} {:>12} {:>9} {:>10} {:>8}",
        "target", "executions", "seconds", "per sec", "corpus"
    );
    for run in &runs {
        println!(
            "{:<16} {:>12} {:>9.0} {:>10.0} {:>8}",
            run.target,
            run.executions,
            run.seconds,
            run.executions as f64 / run.seconds,
            run.corpus
        );
    }
    let total: u64 = runs.iter().map(|r| r.executions).sum();
    println!(
        "{total} executions, 0 crashes, {} proptest cases per property",
        options.cases
    );
    Ok(())
}

/// The fuzz targets: the files of fuzz/fuzz_targets/.
fn targets(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut targets = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            targets.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    targets.sort();
    Ok(targets)
}

/// Runs one target's binary for `seconds` on its corpus; fails on a crash, a hang or an
/// oracle's panic, with the log's tail and the saved input.
fn fuzz_target(
    root: &Path,
    binary: &Path,
    target: &str,
    options: &FuzzOptions,
) -> Result<TargetRun> {
    let corpus = root.join("target/fuzz-corpus").join(target);
    let artifacts = root.join("target/fuzz-artifacts").join(target);
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&artifacts)?;
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{target}.log"));
    let log_file = std::fs::File::create(&log)?;
    let mut command = Command::new(binary);
    if let Some(seed) = options.seed {
        command.arg(format!("-seed={seed}"));
    }
    command
        .arg(&corpus)
        .arg(match options.budget {
            Budget::Runs(runs) => format!("-runs={runs}"),
            Budget::Seconds(seconds) => format!("-max_total_time={seconds}"),
        })
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // One input taking 10 s is a hang, reported like a crash.
        .arg("-timeout=10")
        // Archives need room: the seed snapshot is several KiB.
        .arg("-max_len=65536")
        .arg("-print_final_stats=1")
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let budget = match options.budget {
        Budget::Runs(runs) => format!("{runs} inputs"),
        Budget::Seconds(seconds) => format!("{seconds} s"),
    };
    eprintln!("xtask: fuzzing {target}: {budget} (log: {})", log.display());
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} failed ({status}); the log's tail:\n{}\n{}",
            tail.join("\n"),
            saved_inputs(&artifacts, started_at)
        );
    }
    let executions = text
        .lines()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no execution count in {}", log.display()))?;
    Ok(TargetRun {
        target: target.to_owned(),
        executions,
        seconds: elapsed,
        corpus: std::fs::read_dir(&corpus)?.count(),
    })
}

/// The inputs libFuzzer saved under `artifacts` since `since` (earlier runs' stay, for
/// whoever reproduces them), each named and in hex: a CI machine's `target/` is gone
/// after the run, the log is what remains.
fn saved_inputs(artifacts: &Path, since: std::time::SystemTime) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(artifacts).into_iter().flatten().flatten() {
        let modified = entry.metadata().and_then(|m| m.modified());
        if modified.is_ok_and(|at| at < since) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        out += &format!(
            "saved input {} ({} bytes, hex):\n{}\n",
            entry.path().display(),
            bytes.len(),
            hex::encode(&bytes)
        );
    }
    out
}

/// Installs cargo-fuzz under `tools` unless the pinned version is there.
fn install_cargo_fuzz(tools: &Path) -> Result<()> {
    let binary: PathBuf = tools.join("bin/cargo-fuzz");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION));
    if installed {
        return Ok(());
    }
    run(host_cargo()
        .args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ])
        .arg("--root")
        .arg(tools))
}

/// The host's target triple (`cargo fuzz` builds for it explicitly).
fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}
