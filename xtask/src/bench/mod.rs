//! `cargo xtask bench [--only SUITE]… [--quick] [--size-mib N] [--perf] [--planrt BIN]`:
//! each figure measured against its native baseline in the same run. Suites:
//! `overhead`, `plans`, `graph`, `start` ([`tasks`]) and `snapshot` (below).
//!
//! The snapshot suite: snapshot-restore against a native extractor of the same bytes from
//! the same server, in the same run.
//!
//! It generates a `.tar.gz` of N MiB of data (64 files, half random, half compressible),
//! serves it on 127.0.0.1, then runs, each in a child process whose peak RSS is measured:
//! the native extractor (`xtask native-extract`: HTTP GET → sha256 → gunzip → tar into a
//! directory, each file synced as the plugin does, with ureq, sha2, flate2 and tar) and
//! `planrt run` (release build, warm
//! compiled cache) of one snapshot-restore task. It prints the throughput of extracted
//! data of both and their ratio.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::run;

mod tasks;

const CHAIN: &str = "bench-chain";
const HEIGHT: u64 = 100;
const FILES: usize = 64;

/// What one measured child did.
struct Measured {
    wall: Duration,
    peak_rss_kib: u64,
}

/// The suites, in the order they run.
const SUITES: &[&str] = &["overhead", "plans", "graph", "start", "snapshot"];

/// Runs `program args` under `xtask rss-of` (whose only child it is, so the peak RSS of
/// the wrapper's children is the program's), which times it from spawn to exit (the
/// wrapper's own start is not counted) and takes its peak RSS; the program's stdout is
/// discarded (what `planrt run` prints is part of its work, not of the measurement).
fn measure(program: &Path, args: &[&str], dir: &Path) -> Result<Measured> {
    measure_with_env(program, args, dir, &[])
}

/// [`measure`], with variables added to the program's environment.
fn measure_with_env(
    program: &Path,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<Measured> {
    let mut command = Command::new(std::env::current_exe().context("the xtask binary")?);
    command
        .args(["rss-of", "--"])
        .arg(program)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    let out = command
        .output()
        .with_context(|| format!("cannot start {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figure = |name: &str| -> Result<u64> {
        let prefix = format!("{name}=");
        Ok(stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .with_context(|| format!("rss-of printed no {name}"))?
            .parse()?)
    };
    Ok(Measured {
        wall: Duration::from_nanos(figure("wall_ns")?),
        peak_rss_kib: figure("peak_rss_kib")?,
    })
}

/// The archive: `size` bytes of data in [`FILES`] files under `data/`, every other file
/// random (incompressible), the rest compressible text.
fn archive(size: usize) -> Vec<u8> {
    use planrt_fixtures::{Entry, random_bytes, tar_gz};
    let per_file = size / FILES;
    let contents: Vec<(String, Vec<u8>)> = (0..FILES)
        .map(|i| {
            let data = if i % 2 == 0 {
                random_bytes(per_file, i as u64 + 1)
            } else {
                format!("block {i} of the application state, height {HEIGHT}\n")
                    .into_bytes()
                    .into_iter()
                    .cycle()
                    .take(per_file)
                    .collect()
            };
            (format!("data/application.db/{i:06}.ldb"), data)
        })
        .collect();
    let mut entries = vec![Entry::Dir("data/"), Entry::Dir("data/application.db/")];
    entries.extend(contents.iter().map(|(name, data)| Entry::File(name, data)));
    tar_gz(&entries)
}

fn as_strs(strings: &[String]) -> Vec<&str> {
    strings.iter().map(String::as_str).collect()
}

/// `cargo xtask bench [--only SUITE]… [--quick] [--size-mib N] [--perf] [--planrt BIN]
/// [--plugins DIR]`: every suite unless `--only` picks some; `--quick`: small sizes (a
/// smoke run, as CI does); `--perf`: one more snapshot run under `perf record`, its
/// profile left in `target/bench/snapshot`; `--planrt BIN` and `--plugins DIR`: measure
/// that binary and those shipped plugins (say, older builds) instead of this tree's.
pub fn bench(root: &Path, args: &[String]) -> Result<()> {
    let usage = format!(
        "usage: cargo xtask bench [--only {}]… [--quick] [--size-mib N] [--perf] [--planrt BIN] [--plugins DIR]",
        SUITES.join("|")
    );
    let mut size_mib: Option<usize> = None;
    let mut perf = false;
    let mut quick = false;
    let mut only: Vec<String> = Vec::new();
    let mut given_planrt: Option<PathBuf> = None;
    let mut given_plugins: Option<PathBuf> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size-mib" => {
                size_mib = Some(
                    args.next()
                        .context(usage.clone())?
                        .parse()
                        .context("--size-mib takes a number")?,
                )
            }
            "--perf" => perf = true,
            "--quick" => quick = true,
            "--only" => {
                let suite = args.next().context(usage.clone())?;
                ensure!(SUITES.contains(&suite.as_str()), "{usage}");
                only.push(suite.clone());
            }
            "--planrt" => given_planrt = Some(PathBuf::from(args.next().context(usage.clone())?)),
            "--plugins" => given_plugins = Some(PathBuf::from(args.next().context(usage.clone())?)),
            _ => bail!(usage),
        }
    }
    let size_mib = size_mib.unwrap_or(if quick { 8 } else { 128 });
    // Test plugins (the no-op) always come from this tree.
    crate::build_plugins(root)?;
    let plugins = match given_plugins {
        Some(dir) => std::path::absolute(dir)?,
        None => root.join("target/plugins"),
    };
    let planrt = match given_planrt {
        Some(planrt) => std::path::absolute(planrt)?,
        None => {
            run(crate::host_cargo().current_dir(root).args([
                "build",
                "--release",
                "--package",
                "planrt",
            ]))?;
            root.join("target/release/planrt")
        }
    };
    let work = root.join("target/bench");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let setup = tasks::Setup {
        planrt: &planrt,
        work: work.clone(),
        plugins: &plugins,
        test_plugins: &root.join("target/test-plugins"),
        quick,
    };
    println!(
        "# cargo xtask bench{}: {}, {} CPU(s)",
        if quick { " --quick" } else { "" },
        planrt.display(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let chosen = |suite: &str| only.is_empty() || only.iter().any(|o| o == suite);
    if chosen("overhead") {
        tasks::overhead(&setup)?;
    }
    if chosen("plans") {
        tasks::plans(&setup)?;
    }
    if chosen("graph") {
        tasks::graph(&setup)?;
    }
    if chosen("start") {
        tasks::start(&setup)?;
    }
    if chosen("snapshot") {
        // One sample per side is noise at this size; the smoke run takes one.
        let samples = if quick { 1 } else { 3 };
        snapshot(&plugins, &planrt, &work, size_mib, samples, perf)?;
    }
    Ok(())
}

/// The snapshot suite: a generated archive of `size_mib` MiB served on 127.0.0.1,
/// restored `samples` times by the native extractor and by planrt, taking turns; each
/// run's output is deleted before the next, so every run writes into the same state of
/// the page cache. Reports the median of each side.
fn snapshot(
    shipped_plugins: &Path,
    planrt: &Path,
    work: &Path,
    size_mib: usize,
    samples: usize,
    perf: bool,
) -> Result<()> {
    let size = size_mib << 20;
    eprintln!("xtask: generating a {size_mib} MiB archive");
    let archive = archive(size);
    let archive_len = archive.len();
    let server = planrt_fixtures::snapshot_server(CHAIN, HEIGHT, vec![(HEIGHT, archive)]);
    let url = format!("{}/{CHAIN}/{HEIGHT}.tar.gz", server.url());

    let work = work.join("snapshot");
    let plugins = work.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let plugin = shipped_plugins.join("snapshot-restore.wasm");
    std::fs::copy(&plugin, plugins.join("snapshot-restore.wasm"))
        .with_context(|| format!("copying {}", plugin.display()))?;
    let plan = work.join("plan.toml");
    // The plan of a home named `home`; each run gets a copy naming its own home.
    std::fs::write(
        &plan,
        format!(
            "[grants]\ndirs = [{{ host = \"home\", guest = \"/home\", mode = \"rw\" }}]\nhttp = [\"{}\"]\n\
             [[tasks]]\ntype = \"snapshot-restore\"\nparams = {{ baseUrl = \"{}\", chainId = \"{CHAIN}\", targetHeight = {HEIGHT} }}\n",
            server.addr,
            server.url()
        ),
    )?;
    let state = work.join("state");
    let fresh_home = |name: &str| -> Result<PathBuf> {
        let home = work.join(name);
        std::fs::create_dir_all(home.join("data"))?;
        Ok(home)
    };
    let planrt_args = |home: &str| -> Vec<String> {
        let plan = std::fs::read_to_string(&plan).expect("the plan was written");
        let home_plan = work.join(format!("{home}.toml"));
        std::fs::write(
            &home_plan,
            plan.replace("host = \"home\"", &format!("host = \"{home}\"")),
        )
        .expect("writing a plan");
        [
            "run",
            home_plan.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--durability",
            "process",
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // Warm-up: compiles the plugin into the cache (and warms the page cache).
    fresh_home("warm-up")?;
    measure(planrt, &as_strs(&planrt_args("warm-up")), &work)?;

    std::fs::remove_dir_all(work.join("warm-up"))?;

    let mut natives = Vec::new();
    let mut planrts = Vec::new();
    let native_out = work.join("native");
    let mut run_native = || -> Result<()> {
        natives.push(measure(
            &std::env::current_exe()?,
            &["native-extract", &url, native_out.to_str().unwrap()],
            &work,
        )?);
        std::fs::remove_dir_all(&native_out)?;
        Ok(())
    };
    let mut run_planrt = || -> Result<()> {
        let home = fresh_home("measured")?;
        planrts.push(measure(planrt, &as_strs(&planrt_args("measured")), &work)?);
        std::fs::remove_dir_all(&home)?;
        Ok(())
    };
    // Each side goes first every other time (native, planrt, planrt, native, …).
    for sample in 0..samples {
        if sample % 2 == 0 {
            run_native()?;
            run_planrt()?;
        } else {
            run_planrt()?;
            run_native()?;
        }
    }
    if perf {
        // A separate run under `perf record` (its overhead stays out of the figures).
        fresh_home("profiled")?;
        let data = work.join("planrt.perf.data");
        let mut args = vec!["record", "-g", "-o", data.to_str().unwrap(), "--"];
        args.push(planrt.to_str().unwrap());
        let planrt_args = planrt_args("profiled");
        args.extend(as_strs(&planrt_args));
        // planrt names its guests' JIT code for perf (`PLANRT_WASM_PROFILER`).
        let env = [("PLANRT_WASM_PROFILER", "perfmap")];
        measure_with_env(Path::new("perf"), &args, &work, &env)?;
        eprintln!(
            "xtask: profile in {}: perf report -i {} --no-children --sort dso,sym",
            data.display(),
            data.display()
        );
    }

    let mib = size as f64 / f64::from(1 << 20);
    let rate = |m: &Measured| mib / m.wall.as_secs_f64();
    println!(
        "\n### snapshot-restore: {size_mib} MiB of data in {FILES} files, archive {:.1} MiB, served from {}",
        archive_len as f64 / f64::from(1 << 20),
        server.addr
    );
    println!(
        "| extractor (median of {samples}) | wall | throughput (extracted data) | peak RSS (highest) | every wall |"
    );
    println!("|---|---|---|---|---|");
    let mut medians = Vec::new();
    for (name, runs) in [
        ("native (ureq + sha2 + flate2 + tar)", &mut natives),
        ("planrt run, snapshot-restore", &mut planrts),
    ] {
        let every: Vec<String> = runs
            .iter()
            .map(|m| format!("{:.2}", m.wall.as_secs_f64()))
            .collect();
        let peak = runs.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0);
        let median = median_by_key(runs, |m| m.wall);
        println!(
            "| {name} | {:.2} s | {:.1} MiB/s | {} | {} s |",
            median.wall.as_secs_f64(),
            rate(median),
            tasks::mib(peak),
            every.join(", ")
        );
        medians.push(rate(median));
    }
    println!(
        "\nratio planrt / native (medians): {:.2} (target ≥ 0.8)",
        medians[1] / medians[0]
    );
    Ok(())
}

/// `xtask rss-of -- CMD ARGS`: runs CMD as this process's only child, its stdout
/// discarded, and prints `wall_ns=N` (spawn to exit) and `peak_rss_kib=N`, the child's
/// peak RSS (`getrusage` of the children).
pub fn rss_of(args: &[String]) -> Result<()> {
    let [dashdash, program, rest @ ..] = args else {
        bail!("usage: xtask rss-of -- CMD [ARGS]");
    };
    ensure!(dashdash == "--", "usage: xtask rss-of -- CMD [ARGS]");
    let started = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .stdout(std::process::Stdio::null())
        .status()?;
    let wall = started.elapsed();
    ensure!(status.success(), "{program} failed with {status}");
    println!("wall_ns={}", wall.as_nanos());
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    println!("peak_rss_kib={}", usage.ru_maxrss);
    Ok(())
}

/// `xtask native-extract URL DIR`: the native baseline, the same work as the plugin —
/// stream the body through sha256 and gunzip into tar entries written under DIR.
pub fn native_extract(args: &[String]) -> Result<()> {
    let [url, dir] = args else {
        bail!("usage: xtask native-extract URL DIR");
    };
    struct Hashing<R> {
        inner: R,
        hasher: sha2::Sha256,
    }
    impl<R: Read> Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            use sha2::Digest;
            let n = self.inner.read(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
    }
    let response = ureq::get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let mut body = Hashing {
        inner: response.into_body().into_reader(),
        hasher: <sha2::Sha256 as sha2::Digest>::new(),
    };
    {
        // The plugin's work: every file synced to disk once written.
        let gunzip = flate2::read::GzDecoder::new(&mut body);
        let mut archive = tar::Archive::new(gunzip);
        std::fs::create_dir_all(dir)?;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = Path::new(dir).join(entry.path()?);
            entry
                .unpack_in(dir)
                .with_context(|| format!("extracting into {dir}"))?;
            if entry.header().entry_type().is_file() {
                std::fs::File::open(&path)?.sync_all()?;
            }
        }
    }
    std::io::copy(&mut body, &mut std::io::sink())?;
    let digest = sha2::Digest::finalize(body.hasher);
    eprintln!("native-extract: sha256 {}", hex::encode(digest));
    Ok(())
}

/// The median of `samples` by `key` (the upper one of an even count); sorts them.
fn median_by_key<T, K: Ord>(samples: &mut [T], key: impl FnMut(&T) -> K) -> &T {
    samples.sort_by_key(key);
    &samples[samples.len() / 2]
}
