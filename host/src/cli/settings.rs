//! Built settings: directories resolved from flags, environment and defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::args::{DurabilityArg, GlobalArgs, OutputFormat};
use crate::store::Durability;

/// What every command works with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Plugin directory (exists).
    pub plugin_dir: PathBuf,
    /// State directory (exists).
    pub state_dir: PathBuf,
    /// Output format.
    pub output: OutputFormat,
    /// What a recorded transition survives.
    pub durability: Durability,
}

impl Settings {
    /// Resolves the directories: flag or environment, else the defaults of DESIGN §8.
    /// A missing plugin directory is an error; a missing state directory is created.
    pub fn build(args: &GlobalArgs) -> anyhow::Result<Self> {
        let defaults = Defaults::for_this_user();
        let plugin_dir = args.plugins.clone().unwrap_or(defaults.plugins);
        let state_dir = args.state.clone().unwrap_or(defaults.state);
        if !plugin_dir.is_dir() {
            bail!(
                "plugin directory {} does not exist (set --plugins or PLANRT_PLUGINS)",
                plugin_dir.display()
            );
        }
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        let durability = match args.durability {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Process => Durability::Process,
        };
        Ok(Self {
            plugin_dir: absolute(&plugin_dir)?,
            state_dir: absolute(&state_dir)?,
            output: args.output,
            durability,
        })
    }

    /// Where compiled components are cached.
    pub fn compiled_cache_dir(&self) -> PathBuf {
        self.state_dir.join("compiled")
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

struct Defaults {
    plugins: PathBuf,
    state: PathBuf,
}

impl Defaults {
    fn for_this_user() -> Self {
        if rustix::process::geteuid().is_root() {
            let base = Path::new("/var/lib/planrt");
            return Self {
                plugins: base.join("plugins"),
                state: base.join("state"),
            };
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(fallback))
        };
        Self {
            plugins: xdg("XDG_DATA_HOME", ".local/share").join("planrt/plugins"),
            state: xdg("XDG_STATE_HOME", ".local/state").join("planrt"),
        }
    }
}
