//! The shipped config-patch plugin on a real node home.

use planrt_e2e::{Scratch, workspace_root};

fn node_home(s: &Scratch) -> std::path::PathBuf {
    let config = s.path().join("node-home/config");
    std::fs::create_dir_all(&config).unwrap();
    for file in ["config.toml", "app.toml"] {
        let example = workspace_root()
            .join("examples/node-home/config")
            .join(file);
        std::fs::copy(example, config.join(file)).unwrap();
    }
    config
}

const GRANT: &str =
    "[grants]\ndirs = [{ host = \"node-home\", guest = \"/home\", mode = \"rw\" }]\n";

#[test]
fn merges_values_keeping_comments_order_and_other_keys() {
    let s = Scratch::with_plugins(&["config-patch"]);
    let config = node_home(&s);
    let before = std::fs::read_to_string(config.join("config.toml")).unwrap();
    let plan = s.write(
        "p.toml",
        &format!(
            "{GRANT}[[tasks]]\ntype = \"config-patch\"\n[tasks.params.files.\"config.toml\"]\n\
             p2p = {{ max_num_inbound_peers = 80 }}\nrpc = {{ cors_allowed_origins = [\"a\", \"b\"] }}\n\
             [tasks.params.files.\"config.toml\".statesync]\nenable = true\ntrust_height = 42\n"
        ),
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = std::fs::read_to_string(config.join("config.toml")).unwrap();

    let expected = before
        .replace("max_num_inbound_peers = 40", "max_num_inbound_peers = 80")
        .replace(
            "cors_allowed_origins = []",
            "cors_allowed_origins = [\"a\", \"b\"]",
        )
        + "\n[statesync]\nenable = true\ntrust_height = 42\n";
    assert_eq!(after, expected);
    assert!(after.contains(
        "# Comma separated list of seed nodes to connect to\nseeds = \"seed1@10.0.0.1:26656\""
    ));
    let output = &run.json()["tasks"][0]["output"];
    assert_eq!(output["files"]["config.toml"]["changed"], 4);

    // Running it again changes nothing (idempotent for the same task).
    let again = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(
        again.json()["tasks"][0]["output"]["files"]["config.toml"]["changed"],
        0
    );
    assert_eq!(
        std::fs::read_to_string(config.join("config.toml")).unwrap(),
        expected
    );
}

#[test]
fn a_type_conflict_is_invalid_params_and_the_file_is_untouched() {
    let s = Scratch::with_plugins(&["config-patch"]);
    let config = node_home(&s);
    let before = std::fs::read_to_string(config.join("config.toml")).unwrap();
    let plan = s.write(
        "p.toml",
        &format!("{GRANT}[[tasks]]\ntype = \"config-patch\"\nmaxRetries = 2\n[tasks.params.files.\"config.toml\"]\np2p = 5\n"),
    );
    let run = s.planrt(&["run", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let task = &run.json()["tasks"][0];
    assert_eq!(task["attempts"][0]["errorKind"], "invalid-params");
    assert_eq!(task["attempts"].as_array().unwrap().len(), 1);
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("`p2p` is a table in the file but a number in the patch")
    );
    assert_eq!(
        std::fs::read_to_string(config.join("config.toml")).unwrap(),
        before
    );
}

#[test]
fn the_plugin_sees_only_its_granted_directory() {
    let s = Scratch::with_plugins(&["config-patch"]);
    node_home(&s);
    let plan = s.write(
        "p.toml",
        &format!("{GRANT}[[tasks]]\ntype = \"config-patch\"\n[tasks.params.files.\"../data/x.toml\"]\na = 1\n"),
    );
    // Params that reach outside /home/config are refused by validate, before running.
    let run = s.planrt(&["run", plan.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("without `..`"), "{}", run.stderr);
}
