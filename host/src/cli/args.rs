//! Raw command-line flags, as clap parses them. [`super::settings`] builds them into
//! what commands use.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// planrt: run plans whose task types are WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "planrt", version, about, propagate_version = true)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Plugin directory: every *.wasm in it is loaded [default: /var/lib/planrt/plugins as
    /// root, else $XDG_DATA_HOME/planrt/plugins]
    #[arg(long, global = true, env = "PLANRT_PLUGINS", value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// State directory (created if missing) [default: /var/lib/planrt/state as root, else
    /// $XDG_STATE_HOME/planrt]
    #[arg(long, global = true, env = "PLANRT_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Output format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// What a recorded transition survives: `full` fsyncs each one (survives power
    /// loss); `process` survives the process dying (kill -9, OOM), not power loss.
    #[arg(long, global = true, env = "PLANRT_DURABILITY", value_enum, default_value_t = DurabilityArg::Full)]
    pub durability: DurabilityArg,
    /// A graph's runnable tasks at once (plans with `dependsOn`), over the plan's
    /// `maxParallel` [default: the plan's, else the CPU count]
    #[arg(long, global = true, env = "PLANRT_MAX_PARALLEL", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_parallel: Option<u32>,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync per transition.
    Full,
    /// Survives kill -9, not power loss.
    Process,
}

/// What goes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// Exactly one JSON document.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve a plan file with a fresh plan ID and show it (or save it with --out).
    Plan {
        /// The plan file (TOML).
        plan: PathBuf,
        /// Save the resolved plan (IDs, absolute grants, plugin hashes) to run later with
        /// `planrt run FILE`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run a plan file, or a plan saved by `plan --out`.
    Run {
        /// A plan file (TOML) or a saved plan (JSON).
        plan: PathBuf,
    },
    /// Continue a stored plan with the same IDs (after a crash, a stop or a failure).
    Resume {
        /// The plan ID.
        plan_id: String,
        /// Restart at task N: it and every task after it (in a graph, every task that
        /// depends on it, directly or not) run again with a fresh retry budget, even if
        /// complete. Earlier history is kept.
        #[arg(long, value_name = "N")]
        from: Option<usize>,
        /// Run even if a plugin file changed since the plan was made (re-pins it).
        #[arg(long)]
        allow_plugin_change: bool,
    },
    /// Show recent plans, or one plan in full.
    Status {
        /// The plan ID; without it, the most recent plans.
        plan_id: Option<String>,
        /// How many recent plans to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Every attempt of a plan, in the order they started.
    History {
        /// The plan ID.
        plan_id: String,
    },
    /// List the plugins in the plugin directory.
    Plugins,
    /// Serve the HTTP API (the reference sidecar's task API, and plans) until SIGTERM or
    /// ctrl-c.
    Serve(ServeArgs),
    /// Write a new plugin project: the WIT it targets, a minimal task type, a build
    /// script, a README and a plan that runs it.
    New {
        /// The task type: `[a-z][a-z0-9-]*`, at most 63 characters.
        task_type: String,
        /// The language.
        #[arg(long, value_enum, default_value_t = super::scaffold::Lang::Rust)]
        lang: super::scaffold::Lang,
        /// Where to write it (new or empty) [default: ./TASK_TYPE].
        dir: Option<PathBuf>,
    },
}

/// `planrt serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; beyond loopback a token is required.
    #[arg(long, default_value = "127.0.0.1:7777", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// At most N attempts at once across all tasks and plans [default: the CPU count].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent: Option<u32>,
    /// A TOML file with the `[defaults]` and `[grants]` tables of a plan file: what every
    /// task submitted on its own (POST /v0/tasks) runs with.
    #[arg(long, value_name = "FILE")]
    pub grants: Option<PathBuf>,
    /// Require `Authorization: Bearer TOKEN` on every request but the probes. Prefer the
    /// environment variable: a flag shows in the process list.
    #[arg(
        long,
        env = "PLANRT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Require `X-Remote-User`, set by an authenticating proxy in front (the reference's
    /// `trusted-header` mode); the probes and metrics answer without it. Loopback only.
    #[arg(long)]
    pub trusted_header: bool,
    /// Largest request body (larger: 413).
    #[arg(long, default_value = "1MiB", value_name = "SIZE")]
    pub max_body: String,
    /// Longest a read may take (longer: 503), and a request that changes state may take
    /// to send its body (longer: 408).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub request_timeout: String,
}
