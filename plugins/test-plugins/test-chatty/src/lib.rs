//! Says what it is told, as often as it is told, everywhere a plugin can: stdout, stderr,
//! `log` lines, progress notes, its output, its error and `validate`'s refusal. Drives the
//! host's secret masking, its rate cap on plugin logs and its output size limit.
//!
//! Params (all optional): `say` (text), `stderrLines` and `logLines` (how many lines of
//! `say` to write there, default 1), `sleepMs` (a pause after the first progress report,
//! before the lines), `progressReports` (progress reports made after the lines, default
//! 0), `outputBytes` (padding added to the output), `fail`
//! (`transient` or `permanent`: fail with a message holding `say`), `panic` (bool: panic
//! with a message holding `say`), `reject` (text: `validate` refuses the params with it),
//! `only` (`stdout`, `stderr`, `log` or `progress`: say it there once, nothing else, and
//! return `{}`).

use std::io::Write;

use planrt_plugin_sdk::{Context, Guest, Info, Level, TaskError, export_plugin, log, progress};
use serde_json::{Value, json};

fn params(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn count(params: &Value, key: &str, default: u64) -> u64 {
    params.get(key).and_then(Value::as_u64).unwrap_or(default)
}

struct Chatty;

impl Guest for Chatty {
    fn describe() -> Info {
        Info::new("test-chatty", "0.1.0", "Says what it is told, everywhere")
    }

    fn validate(text: String) -> Result<(), String> {
        let params = params(&text)?;
        match params.get("reject").and_then(Value::as_str) {
            Some(reason) => {
                eprintln!("validate refuses: {reason}");
                Err(format!("refused: {reason}"))
            }
            None => Ok(()),
        }
    }

    fn run(_context: Context, text: String) -> Result<String, TaskError> {
        let params = params(&text).map_err(TaskError::InvalidParams)?;
        let say = params.get("say").and_then(Value::as_str).unwrap_or("");
        if let Some(only) = params.get("only").and_then(Value::as_str) {
            match only {
                "stdout" => println!("{say}"),
                "stderr" => eprintln!("{say}"),
                "log" => log(Level::Info, say),
                "progress" => progress(1, Some(2), say),
                other => return Err(TaskError::InvalidParams(format!("`only`: {other}?"))),
            }
            return Ok("{}".into());
        }
        progress(0, Some(2), &format!("progress: {say}"));
        std::thread::sleep(std::time::Duration::from_millis(count(
            &params, "sleepMs", 0,
        )));
        println!("stdout: {say}");
        let mut stderr = std::io::stderr().lock();
        for i in 0..count(&params, "stderrLines", 1) {
            // One write per line, as a program printing in a loop does.
            let _ = stderr.write_all(format!("stderr {i}: {say}\n").as_bytes());
        }
        drop(stderr);
        for i in 0..count(&params, "logLines", 1) {
            log(Level::Info, &format!("log {i}: {say}"));
        }
        let reports = count(&params, "progressReports", 0);
        for i in 0..reports {
            progress(i, Some(reports), &format!("report {i}: {say}"));
        }
        progress(1, Some(2), &format!("progress: {say}"));
        if params.get("panic").and_then(Value::as_bool) == Some(true) {
            panic!("panicking with {say}");
        }
        match params.get("fail").and_then(Value::as_str) {
            Some("transient") => return Err(TaskError::Transient(format!("failing with {say}"))),
            Some("permanent") => return Err(TaskError::Permanent(format!("failing with {say}"))),
            _ => {}
        }
        let padding = "x".repeat(count(&params, "outputBytes", 0) as usize);
        Ok(json!({ "said": say, say: "as a key", "padding": padding }).to_string())
    }
}

export_plugin!(Chatty);
