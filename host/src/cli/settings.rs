//! Built settings: directories resolved from flags, environment and defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::args::{DurabilityArg, GlobalArgs, OutputFormat};
use super::terminal::Terminal;
use crate::state_dir::StateDir;
use crate::store::Durability;

/// What every command works with: directories resolved, not yet touched. Each command
/// opens what it needs: readers never create or change the state dir, and only commands
/// that load plugins need a plugin dir.
#[derive(Debug, Clone)]
pub struct Settings {
    plugin_dir: PathBuf,
    state_dir: PathBuf,
    /// Output format.
    pub output: OutputFormat,
    /// What a recorded transition survives.
    pub durability: Durability,
    /// What stderr is (colour, progress bars).
    pub terminal: Terminal,
    /// `--max-parallel`: a graph's runnable tasks at once, over the plan's.
    pub max_parallel: Option<usize>,
}

impl Settings {
    /// Resolves the directories: flag or environment, else the defaults (see `--help`).
    pub fn build(args: &GlobalArgs, terminal: Terminal) -> anyhow::Result<Self> {
        let defaults = Defaults::for_this_user();
        let plugin_dir = args.plugins.clone().unwrap_or(defaults.plugins);
        let state_dir = args.state.clone().unwrap_or(defaults.state);
        let durability = match args.durability {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Process => Durability::Process,
        };
        Ok(Self {
            plugin_dir: absolute(&plugin_dir)?,
            state_dir: absolute(&state_dir)?,
            output: args.output,
            durability,
            terminal,
            max_parallel: args.max_parallel.map(|n| n as usize),
        })
    }

    /// The plugin directory, which must exist.
    pub fn plugin_dir(&self) -> anyhow::Result<&Path> {
        if !self.plugin_dir.is_dir() {
            bail!(
                "plugin directory {} does not exist (set --plugins or PLANRT_PLUGINS)",
                self.plugin_dir.display()
            );
        }
        Ok(&self.plugin_dir)
    }

    /// The state directory where it will be.
    pub fn state_dir_path(&self) -> &Path {
        &self.state_dir
    }

    /// The state directory for a command that writes: created (`0700`) if missing,
    /// refused if another user could change it.
    pub fn open_state_dir(&self) -> anyhow::Result<StateDir> {
        StateDir::open_or_create(&self.state_dir)
            .with_context(|| "cannot use the state directory (set --state or PLANRT_STATE)")
    }

    /// The state directory for a command that only reads: `None` if it does not exist.
    pub fn existing_state_dir(&self) -> anyhow::Result<Option<StateDir>> {
        StateDir::open_existing(&self.state_dir)
            .with_context(|| "cannot use the state directory (set --state or PLANRT_STATE)")
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
