//! `$env` secrets: resolved for the plugin, and masked (`***`) in everything planrt
//! stores, prints or logs — output, error messages, log tails, its own log, progress,
//! `validate` refusals — each path checked on its own.

use planrt_e2e::{Run, Scratch};

const VAR: &str = "PLANRT_TEST_SECRET";
const SECRET: &str = "s3cr3t-value-42";

fn scratch() -> Scratch {
    Scratch::with_plugins(&["test-chatty", "test-echo"])
}

/// `planrt run` of a one-task `test-chatty` plan whose `say` is the secret, plus `extra`
/// params, with the secret in the environment.
fn run_chatty(s: &Scratch, extra: &str) -> Run {
    let path = s.write(
        "p.toml",
        &format!(
            "[[tasks]]\ntype = \"test-chatty\"\nparams = {{ say = {{ \"$env\" = \"{VAR}\" }}{extra} }}\n"
        ),
    );
    s.command(&["run", path.to_str().unwrap(), "--output", "json"])
        .env(VAR, SECRET)
        .output()
        .unwrap()
        .into()
}

/// Every text column of the database that holds the secret, read through SQLite (in WAL
/// mode the rows may not be in the main file yet).
fn stored_leaks(s: &Scratch) -> Vec<String> {
    let db = rusqlite::Connection::open(s.state().join("planrt.db")).unwrap();
    let mut leaks = Vec::new();
    for (table, columns) in [
        ("plans", &["resolved", "name"][..]),
        ("tasks", &["params", "output", "error"][..]),
        (
            "attempts",
            &["message", "backtrace", "log_tail", "progress"][..],
        ),
    ] {
        for column in columns {
            let found: i64 = db
                .query_row(
                    &format!(
                        "SELECT count(*) FROM {table} WHERE instr(coalesce({column}, ''), ?1) > 0"
                    ),
                    [SECRET],
                    |r| r.get(0),
                )
                .unwrap();
            if found > 0 {
                leaks.push(format!("{table}.{column}"));
            }
        }
    }
    leaks
}

fn assert_nowhere(s: &Scratch, run: &Run) {
    assert!(!run.stdout.contains(SECRET), "stdout: {}", run.stdout);
    assert!(!run.stderr.contains(SECRET), "stderr: {}", run.stderr);
    assert_eq!(stored_leaks(s), Vec::<String>::new(), "stored");
}

#[test]
fn the_plugin_gets_the_value_and_its_output_is_masked() {
    let s = scratch();
    let run = run_chatty(&s, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let task = &doc["tasks"][0];
    // The plugin said the value back (as a value and as a key): both masked.
    assert_eq!(task["output"]["said"], "***");
    assert_eq!(task["output"]["***"], "as a key");
    // The plan keeps the reference, never the value.
    assert_eq!(task["params"]["say"], serde_json::json!({"$env": VAR}));
    // It also wrote it to stdout, stderr and a log line: the log tail masks them all,
    // and the host log (stderr) shows the masked lines.
    let tail = task["attempts"][0]["logTail"].as_str().unwrap();
    for line in ["stdout: ***", "stderr 0: ***", "[info] log 0: ***"] {
        assert!(tail.contains(line), "{line}: {tail}");
    }
    assert!(run.stderr.contains("stderr 0: ***"), "{}", run.stderr);
    assert!(run.stderr.contains("log 0: ***"), "{}", run.stderr);
    assert!(run.stderr.contains("progress: ***"), "{}", run.stderr);
    // The attempt's record keeps its last progress report, masked.
    assert_eq!(
        task["attempts"][0]["progress"],
        serde_json::json!({"done": 1, "total": 2, "unit": "items", "note": "progress: ***"})
    );
    assert_nowhere(&s, &run);
}

#[test]
fn error_messages_are_masked() {
    for (extra, kind) in [
        (", fail = \"transient\"", "transient"),
        (", fail = \"permanent\"", "permanent"),
        (", panic = true", "trap"),
    ] {
        let s = scratch();
        let run = run_chatty(&s, extra);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let doc = run.json();
        let attempt = &doc["tasks"][0]["attempts"][0];
        assert_eq!(attempt["errorKind"], kind);
        // A failed attempt keeps how far it got.
        assert_eq!(attempt["progress"]["note"], "progress: ***", "{kind}");
        let message = attempt["message"].as_str().unwrap();
        assert!(message.contains("***"), "{kind}: {message}");
        assert!(
            doc["tasks"][0]["error"].as_str().unwrap().contains("***"),
            "{kind}"
        );
        assert!(
            doc["failedTaskDetail"]["error"]
                .as_str()
                .unwrap()
                .contains("***"),
            "{kind}"
        );
        assert_nowhere(&s, &run);
    }
}

#[test]
fn a_validate_refusal_is_masked() {
    let s = scratch();
    let path = s.write(
        "p.toml",
        &format!("[[tasks]]\ntype = \"test-chatty\"\nparams = {{ reject = {{ \"$env\" = \"{VAR}\" }} }}\n"),
    );
    let run: Run = s
        .command(&["plan", path.to_str().unwrap()])
        .env(VAR, SECRET)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("refused: ***"), "{}", run.stderr);
    assert!(
        run.stderr.contains("validate refuses: ***"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(SECRET), "{}", run.stderr);
}

#[test]
fn a_flood_that_cuts_the_log_tail_inside_the_secret_leaks_no_part_of_it() {
    // 2 000 stderr lines "stderr N: <secret>", then 14 log lines: the 16 KiB tail then
    // starts inside a secret, at "-value-42" (test-chatty's line formats fix where).
    let s = scratch();
    let run = run_chatty(&s, ", stderrLines = 2000, logLines = 14");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tail = run.json()["tasks"][0]["attempts"][0]["logTail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tail.contains("earlier bytes dropped"), "{}", &tail[..80]);
    let kept = tail.split_once('\n').unwrap().1;
    let first_line = kept.lines().next().unwrap();
    assert_eq!(
        first_line, "***",
        "the tail was meant to start inside the secret"
    );
    // Any end of the secret that starts the kept text is masked too.
    for end in (1..SECRET.len()).map(|i| &SECRET[i..]) {
        assert!(
            !first_line.starts_with(end),
            "the cut left `{end}` of the secret: {first_line}"
        );
    }
    assert_nowhere(&s, &run);
}

#[test]
fn a_missing_variable_stops_the_plan_naming_it() {
    let s = scratch();
    let path = s.write(
        "p.toml",
        &format!(
            "[[tasks]]\ntype = \"test-echo\"\nparams = {{ token = {{ \"$env\" = \"{VAR}\" }} }}\n"
        ),
    );
    let run: Run = s
        .command(&["run", path.to_str().unwrap()])
        .env_remove(VAR)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(VAR), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn a_denied_host_that_is_part_of_a_secret_url_is_masked() {
    // The whole URL is the secret: the host the gate denies is only a piece of it.
    let s = Scratch::with_plugins(&["test-fetch"]);
    let url = "http://internal-billing.invalid:9/token-7f3a";
    let path = s.write(
        "p.toml",
        &format!(
            "[grants]\nhttp = [\"127.0.0.1\"]\n[[tasks]]\ntype = \"test-fetch\"\nparams = {{ urls = [{{ \"$env\" = \"{VAR}\" }}] }}\n"
        ),
    );
    let run: Run = s
        .command(&["run", path.to_str().unwrap(), "--output", "json"])
        .env(VAR, url)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let attempt = &run.json()["tasks"][0]["attempts"][0];
    assert_eq!(attempt["errorKind"], "http-denied");
    assert!(
        attempt["message"].as_str().unwrap().contains("denied"),
        "{attempt}"
    );
    for leak in ["internal-billing", "token-7f3a"] {
        assert!(!run.stdout.contains(leak), "stdout: {}", run.stdout);
        assert!(!run.stderr.contains(leak), "stderr: {}", run.stderr);
    }
    let db = rusqlite::Connection::open(s.state().join("planrt.db")).unwrap();
    let stored: i64 = db
        .query_row(
            "SELECT count(*) FROM attempts WHERE instr(coalesce(message, ''), 'internal-billing') > 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);
}
