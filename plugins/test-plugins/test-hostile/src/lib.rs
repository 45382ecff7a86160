//! Tries what a hostile plugin would, one `attack` per task, and reports what it could
//! reach as its output (the sandbox must make every probe come back empty-handed):
//! `read-outside` reads `/etc/passwd` (no preopen holds it), `symlink` reads
//! `/work/link/passwd` through a link to `/etc` planted in the grant, `dotdot` climbs out
//! of the
//! granted `/work` with `..`, `env` lists the environment, `recursion` recurses until the
//! stack is exhausted (a trap), `trap-in-validate` panics in `validate` (at plan time).

use planrt_plugin_sdk::{Context, DirMode, DirNeed, Info, Needs, Task, TaskError, export_task};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// What to try.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum Attack {
    ReadOutside,
    Symlink,
    Dotdot,
    Env,
    Recursion,
    TrapInValidate,
}

/// The params.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    attack: Attack,
}

/// What a read attempt got: the bytes read, or the error.
fn try_read(path: &str) -> Value {
    match std::fs::read(path) {
        Ok(bytes) => json!({ "path": path, "read": bytes.len() }),
        Err(e) => json!({ "path": path, "error": e.to_string() }),
    }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1) + frame[depth as usize % 16]
}

struct Hostile;

impl Task for Hostile {
    type Params = Params;
    type Output = Value;

    fn info() -> Info {
        Info {
            needs: Needs {
                dirs: vec![DirNeed {
                    guest_path: "/work".into(),
                    mode: DirMode::Ro,
                }],
                network: false,
            },
            default_timeout_ms: Some(30_000),
            ..Info::new("test-hostile", "0.1.0", "Probes the sandbox's walls")
        }
    }

    fn validate(params: &Params) -> Result<(), String> {
        match params.attack {
            Attack::TrapInValidate => panic!("test-hostile panics in validate on purpose"),
            _ => Ok(()),
        }
    }

    fn run(_context: Context, params: Params) -> Result<Value, TaskError> {
        Ok(match params.attack {
            Attack::ReadOutside => try_read("/etc/passwd"),
            // Through the granted dir, so the host itself must refuse to follow it.
            Attack::Symlink => try_read("/work/link/passwd"),
            Attack::Dotdot => try_read("/work/../../../../etc/passwd"),
            Attack::Env => json!({ "vars": std::env::vars().collect::<Vec<_>>() }),
            Attack::Recursion => json!({ "depth": recurse(0) }),
            Attack::TrapInValidate => unreachable!("validate refused it"),
        })
    }
}

export_task!(Hostile);
