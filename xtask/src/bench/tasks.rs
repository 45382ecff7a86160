//! `cargo xtask bench` suites for what planrt adds around the work (issue 10): per-task
//! overhead against spawning a native no-op, plans of 1 000 to 100 000 tasks (wall and
//! peak RSS: linearity), a wide graph of sleeping tasks, and cold and warm start with
//! every shipped plugin in the plugin dir. Each figure is measured in the same run as
//! its baseline and printed as a Markdown table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use super::{Measured, measure};

/// What the suites run with.
pub struct Setup<'a> {
    /// The planrt binary measured.
    pub planrt: &'a Path,
    /// A scratch directory, emptied first.
    pub work: PathBuf,
    /// The built plugins (`target/plugins`) and test plugins (`target/test-plugins`).
    pub plugins: &'a Path,
    pub test_plugins: &'a Path,
    /// Smaller sizes: a smoke run that checks the suites execute.
    pub quick: bool,
}

impl Setup<'_> {
    fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// A plugin dir holding `test-noop` (and, with `shipped`, every shipped plugin).
    fn plugin_dir(&self, name: &str, shipped: bool) -> Result<PathBuf> {
        let dir = self.dir(name)?;
        std::fs::copy(
            self.test_plugins.join("test-noop.wasm"),
            dir.join("test-noop.wasm"),
        )
        .context("test-noop.wasm (run `cargo xtask plugins`)")?;
        if shipped {
            for entry in std::fs::read_dir(self.plugins)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "wasm") {
                    std::fs::copy(&path, dir.join(path.file_name().unwrap()))?;
                }
            }
        }
        Ok(dir)
    }

    /// A scratch dir `name`, a plugin dir with `test-noop`, and a state dir whose compiled
    /// cache is warm (one run done).
    fn warm(&self, name: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
        let dir = self.dir(name)?;
        let plugins = self.plugin_dir(&format!("{name}-plugins"), false)?;
        let state = dir.join("state");
        let one = noop_plan(&dir, "warm", 1, 0, None)?;
        self.run(&one, &plugins, &state, "process")?;
        Ok((dir, plugins, state))
    }

    /// `planrt run PLAN` with its own state dir, measured (wall, peak RSS).
    fn run(&self, plan: &Path, plugins: &Path, state: &Path, durability: &str) -> Result<Measured> {
        measure(
            self.planrt,
            &[
                "run",
                plan.to_str().unwrap(),
                "--plugins",
                plugins.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
                "--durability",
                durability,
                "--output",
                "json",
            ],
            &self.work,
        )
    }
}

/// A plan of `n` `test-noop` tasks, written to `dir/name.toml`; `graph` gives the tasks
/// `dependsOn` (a `width`-wide graph: each task waits for the one `width` before it).
fn noop_plan(
    dir: &Path,
    name: &str,
    n: usize,
    sleep_ms: u64,
    graph: Option<usize>,
) -> Result<PathBuf> {
    let mut text = String::with_capacity(n * 64);
    if let Some(width) = graph {
        text += &format!("[defaults]\nmaxParallel = {width}\n");
    }
    for i in 0..n {
        text += "[[tasks]]\ntype = \"test-noop\"\n";
        if let Some(width) = graph {
            text += &format!("name = \"t{i}\"\n");
            match i.checked_sub(width) {
                Some(before) => text += &format!("dependsOn = [\"t{before}\"]\n"),
                None => text += "dependsOn = []\n",
            }
        }
        if sleep_ms > 0 {
            text += &format!("params = {{ sleepMs = {sleep_ms} }}\n");
        }
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Spawns `/bin/true` `n` times (posix_spawn, then wait): the native baseline per task.
fn native_spawns(n: usize) -> Result<Duration> {
    let started = Instant::now();
    for _ in 0..n {
        let status = Command::new("/bin/true").status()?;
        ensure!(status.success(), "/bin/true failed");
    }
    Ok(started.elapsed() / n as u32)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

pub(super) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Per-task overhead: (wall of N tasks − wall of 1 task) / (N − 1), a chain of no-op
/// tasks, warm compiled cache, for both durabilities, against spawning a native no-op.
pub fn overhead(setup: &Setup) -> Result<()> {
    let n = if setup.quick { 50 } else { 1000 };
    let dir = setup.dir("overhead")?;
    let plugins = setup.plugin_dir("overhead-plugins", false)?;
    let one = noop_plan(&dir, "one", 1, 0, None)?;
    let many = noop_plan(&dir, "many", n, 0, None)?;
    let native = native_spawns(n)?;
    println!("\n### Per-task overhead ({n} no-op tasks, warm cache)\n");
    println!(
        "native baseline: spawn + wait of /bin/true: {} per process\n",
        ms(native)
    );
    println!("| durability | per task | × native spawn | target |");
    println!("|---|---|---|---|");
    for (durability, target) in [("process", "≤ 0.10"), ("full", "≤ 0.25")] {
        let state = dir.join(format!("state-{durability}"));
        // The compiled cache lives in the state dir: warm it, then measure (the median
        // of three differences).
        setup.run(&one, &plugins, &state, durability)?;
        let mut samples = Vec::new();
        for _ in 0..3 {
            let single = setup.run(&one, &plugins, &state, durability)?;
            let all = setup.run(&many, &plugins, &state, durability)?;
            samples.push(all.wall.saturating_sub(single.wall) / (n as u32 - 1));
        }
        let per_task = *super::median_by_key(&mut samples, |d| *d);
        println!(
            "| `{durability}` | {} | {:.2} | {target} |",
            ms(per_task),
            per_task.as_secs_f64() / native.as_secs_f64()
        );
    }
    Ok(())
}

/// Plans of growing size: wall, per task and peak RSS (linear cost shows as a flat
/// per-task figure).
pub fn plans(setup: &Setup) -> Result<()> {
    let sizes: &[usize] = if setup.quick {
        &[100, 1000]
    } else {
        &[1000, 10_000, 100_000]
    };
    let (dir, plugins, state) = setup.warm("plans")?;
    println!("\n### Plans of no-op tasks (`--durability process`, warm cache)\n");
    println!("| tasks | wall | per task | peak RSS |");
    println!("|---|---|---|---|");
    for &n in sizes {
        let plan = noop_plan(&dir, &format!("n{n}"), n, 0, None)?;
        let m = setup.run(&plan, &plugins, &state, "process")?;
        println!(
            "| {n} | {:.2} s | {} | {} |",
            m.wall.as_secs_f64(),
            ms(m.wall / n as u32),
            mib(m.peak_rss_kib)
        );
    }
    Ok(())
}

/// A `width`-wide graph of tasks sleeping 100 ms, `depth` levels: wall ≈ 100 ms × depth
/// when the graph runs in parallel (× the task count if it did not).
pub fn graph(setup: &Setup) -> Result<()> {
    let (width, depth) = if setup.quick { (8, 2) } else { (64, 4) };
    let sleep = 100;
    let (dir, plugins, state) = setup.warm("graph")?;
    let plan = noop_plan(&dir, "graph", width * depth, sleep, Some(width))?;
    let m = setup.run(&plan, &plugins, &state, "process")?;
    let ideal = Duration::from_millis(sleep * depth as u64);
    let sequential = Duration::from_millis(sleep * (width * depth) as u64);
    // Parallel up to its width: well within a few times the ideal (a width of 3 would
    // already take 64/3 × the ideal here).
    ensure!(
        m.wall < (ideal * 3).min(sequential / 2),
        "the graph did not run in parallel: {:.2} s, ideal {:.2} s, sequential {:.2} s",
        m.wall.as_secs_f64(),
        ideal.as_secs_f64(),
        sequential.as_secs_f64()
    );
    println!("\n### A {width}-wide graph, {depth} levels, tasks sleeping {sleep} ms\n");
    println!("| wall | ideal (100 ms × depth) | sequential would be | peak RSS |");
    println!("|---|---|---|---|");
    println!(
        "| {:.2} s | {:.2} s | {:.1} s | {} |",
        m.wall.as_secs_f64(),
        ideal.as_secs_f64(),
        sequential.as_secs_f64(),
        mib(m.peak_rss_kib)
    );
    Ok(())
}

/// A 1-task plan with every shipped plugin in the plugin dir: cold (an empty state dir,
/// nothing compiled) and warm (the second run), against spawning a native no-op.
pub fn start(setup: &Setup) -> Result<()> {
    let dir = setup.dir("start")?;
    let plugins = setup.plugin_dir("start-plugins", true)?;
    let count = std::fs::read_dir(&plugins)?.count();
    let plan = noop_plan(&dir, "one", 1, 0, None)?;
    let state = dir.join("state");
    let cold = setup.run(&plan, &plugins, &state, "process")?;
    let rounds = if setup.quick { 3 } else { 11 };
    let mut warm: Vec<Duration> = (0..rounds)
        .map(|_| {
            setup
                .run(&plan, &plugins, &state, "process")
                .map(|m| m.wall)
        })
        .collect::<Result<_>>()?;
    let native = native_spawns(20)?;
    println!("\n### Start, a 1-task plan, {count} plugins in the dir\n");
    println!("| | wall | target |");
    println!("|---|---|---|");
    println!(
        "| cold (empty state dir: every plugin compiled) | {} | |",
        ms(cold.wall)
    );
    println!(
        "| warm (median of {rounds}) | {} | ≤ 20 ms |",
        ms(*super::median_by_key(&mut warm, |d| *d))
    );
    println!("| native spawn of /bin/true | {} | |", ms(native));
    Ok(())
}
