//! Finding (or installing) a toolchain that builds wasm32-wasip2 components.
//!
//! 1. rustup's target, when its std is installed: the normal path on a machine with
//!    internet (`rustup target add wasm32-wasip2`). Never called from here: offline it hangs.
//! 2. Otherwise Debian's rustc-web with std built from source (`-Zbuild-std`), wasi-libc,
//!    wasm-ld-19 and the `wasm-component-ld` linker that rustup toolchains bundle.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "libstd-rust-web-dev",
    "lld-19",
    "wasi-libc",
];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const WASI_SYSROOT: &str = "/usr/lib/wasm32-wasi";
const WASM_LD: &str = "/usr/bin/wasm-ld-19";
const WASM_COMPONENT_LD_VERSION: &str = "0.5.31";

fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn rustup_rustc() -> Command {
    Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
}

/// Whether rustup's toolchain has a std for wasm32-wasip2.
fn rustup_has_wasip2() -> bool {
    let Some(libdir) =
        output(rustup_rustc().args(["--print", "target-libdir", "--target", "wasm32-wasip2"]))
    else {
        return false;
    };
    std::fs::read_dir(libdir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false)
}

fn debian_toolchain_present() -> bool {
    let sysroot = output(Command::new(DEBIAN_RUSTC).args(["--print", "sysroot"]));
    let has_src = sysroot.is_some_and(|s| {
        Path::new(&s)
            .join("lib/rustlib/src/rust/library/std")
            .is_dir()
    });
    has_src
        && Path::new(DEBIAN_CARGO).exists()
        && Path::new(WASM_LD).exists()
        && Path::new(WASI_SYSROOT).is_dir()
}

fn install_debian_toolchain() -> Result<()> {
    let is_root = output(Command::new("id").arg("-u")).as_deref() == Some("0");
    if !is_root || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "no wasm32-wasip2 toolchain: run `rustup target add wasm32-wasip2`, or install the Debian fallback \
             as root: apt-get install {}",
            DEBIAN_PACKAGES.join(" ")
        );
    }
    eprintln!("xtask: installing the Debian wasm toolchain fallback");
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(DEBIAN_PACKAGES))
}

/// The `wasm-component-ld` linker: bundled with rustup toolchains, else installed into
/// `target/tools`.
fn wasm_component_ld(root: &Path) -> Result<PathBuf> {
    let sysroot = output(rustup_rustc().args(["--print", "sysroot"]));
    let host = output(rustup_rustc().args(["--print", "host-tuple"]));
    if let (Some(sysroot), Some(host)) = (sysroot, host) {
        let bundled = Path::new(&sysroot)
            .join("lib/rustlib")
            .join(host)
            .join("bin/wasm-component-ld");
        if bundled.exists() {
            return Ok(bundled);
        }
    }
    let tools = root.join("target/tools");
    let installed = tools.join("bin/wasm-component-ld");
    if !installed.exists() {
        run(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["install", "--locked", "--root"])
                .arg(&tools)
                .arg(format!("wasm-component-ld@{WASM_COMPONENT_LD_VERSION}")),
        )?;
    }
    Ok(installed)
}

/// A `cargo` command set up to build wasm32-wasip2 components (add `build ...`).
pub fn wasm_build_command(root: &Path) -> Result<Command> {
    if rustup_has_wasip2() {
        return Ok(Command::new(
            std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        ));
    }
    if !debian_toolchain_present() {
        install_debian_toolchain()?;
    }
    let linker = wasm_component_ld(root).context("finding wasm-component-ld")?;
    let mut command = Command::new(DEBIAN_CARGO);
    command
        // rustup's variables would steer Debian's cargo back to rustup's toolchain.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_WASM32_WASIP2_LINKER", linker)
        .env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            format!("-Clink-self-contained=no -Lnative={WASI_SYSROOT} -Clink-arg=--wasm-ld-path={WASM_LD}"),
        )
        .arg("-Zbuild-std=std,panic_abort");
    Ok(command)
}
