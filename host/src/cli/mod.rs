//! The `planrt` command line: flags, settings, commands and exit codes (docs/DESIGN.md §8).

pub mod args;
pub mod commands;
pub mod progress;
pub mod render;
pub mod scaffold;
pub mod serve;
pub mod settings;
pub mod terminal;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use args::{Cli, Command};

use crate::executor::{ErrorClass, ServiceError};
use commands::Outcome;
use settings::Settings;

/// Exit code of a complete plan or an answered query.
pub const EXIT_OK: u8 = 0;
/// Exit code of a failed plan.
pub const EXIT_PLAN_FAILED: u8 = 1;
/// Exit code of bad input, usage, unknown IDs, unusable state or plugin dirs.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when the environment (the store, the disk) failed after work started; the
/// plan is left as last recorded, resumable. Also when stdout cannot take the result.
pub const EXIT_ENVIRONMENT: u8 = 3;
/// Exit code after SIGINT/SIGTERM (the plan stays resumable).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Parses the command line, runs the command and maps its end to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit 2 here, before anything else
    let terminal = terminal::Terminal::detect();
    init_tracing(&terminal);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let result = runtime.block_on(dispatch(cli, terminal));
    // Blocking work still running (a commit stuck on the disk) does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(Outcome::Success) => ExitCode::from(EXIT_OK),
        Ok(Outcome::PlanFailed) => ExitCode::from(EXIT_PLAN_FAILED),
        Ok(Outcome::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        Err(e) => {
            eprintln!("error: {e:#}");
            let class = e
                .chain()
                .find_map(|c| c.downcast_ref::<ServiceError>())
                .map(ServiceError::class);
            let stdout_failed = e.chain().any(|c| c.is::<commands::StdoutError>());
            ExitCode::from(match class {
                Some(ErrorClass::Environment) => EXIT_ENVIRONMENT,
                _ if stdout_failed => EXIT_ENVIRONMENT,
                _ => EXIT_BAD_INPUT,
            })
        }
    }
}

async fn dispatch(cli: Cli, terminal: terminal::Terminal) -> anyhow::Result<Outcome> {
    // Writing a project needs no plugin or state directory.
    if let Command::New {
        task_type,
        lang,
        dir,
    } = &cli.command
    {
        return commands::new_project(cli.global.output, task_type, *lang, dir.as_deref());
    }
    let settings = Settings::build(&cli.global, terminal)?;
    match &cli.command {
        Command::Plan { plan, out } => commands::plan(&settings, plan, out.as_deref()).await,
        Command::Run { plan } => commands::run(&settings, plan).await,
        Command::Resume {
            plan_id,
            from,
            allow_plugin_change,
        } => commands::resume(&settings, plan_id, *from, *allow_plugin_change).await,
        Command::Status { plan_id, limit } => {
            commands::status(&settings, plan_id.as_deref(), *limit)
        }
        Command::History { plan_id } => commands::history(&settings, plan_id),
        Command::Plugins => commands::plugins(&settings).await,
        Command::Serve(args) => serve::serve(&settings, args).await,
        Command::New { .. } => unreachable!("handled before the settings are built"),
    }
}

fn init_tracing(terminal: &terminal::Terminal) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,cranelift=warn,wasmtime=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(terminal.log_writer())
        .with_ansi(terminal.colour())
        .with_target(false)
        .init();
}
