//! The real job: snapshot-restore → config-patch → discover-peers → configure-state-sync
//! on a node home, against a snapshot server and fake CometBFT RPCs on 127.0.0.1.

use std::path::{Path, PathBuf};

use planrt_e2e::fixtures::{Entry, FakeRpc, random_bytes, snapshot_server, tar_gz};
use planrt_e2e::{Scratch, workspace_root};
use serde_json::Value;

const CHAIN: &str = "test-chain";
const NODE_TYPES: &[&str] = &[
    "snapshot-restore",
    "config-patch",
    "discover-peers",
    "configure-state-sync",
];

fn node_home(s: &Scratch) -> PathBuf {
    let home = s.path().join("node-home");
    for file in ["config.toml", "app.toml"] {
        std::fs::create_dir_all(home.join("config")).unwrap();
        std::fs::copy(
            workspace_root()
                .join("examples/node-home/config")
                .join(file),
            home.join("config").join(file),
        )
        .unwrap();
    }
    std::fs::create_dir_all(home.join("data")).unwrap();
    std::fs::write(
        home.join("data/priv_validator_state.json"),
        r#"{"height":"0","round":0,"step":0}"#,
    )
    .unwrap();
    home
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `planrt run` of `plan`, which must exit `code`.
fn run_plan(s: &Scratch, plan: &str, code: i32) -> planrt_e2e::Run {
    let path = s.write("plan.toml", plan);
    let run = s.planrt(&["run", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, code, "{}", run.stderr);
    run
}

/// The Plan document [`run_plan`] prints.
fn run(s: &Scratch, plan: &str, code: i32) -> Value {
    run_plan(s, plan, code).json()
}

/// `bytes` as planrt's progress shows them (`48.01 MiB`).
fn in_mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn node_bootstrap_restores_patches_and_configures_the_node() {
    let s = Scratch::with_plugins(NODE_TYPES);
    let home = node_home(&s);
    let archive = tar_gz(&[
        Entry::Dir("data/"),
        Entry::File("data/application.db/000001.ldb", b"app state"),
        Entry::File("data/blockstore.db/CURRENT", b"MANIFEST-000001\n"),
        Entry::Symlink("data/latest", "application.db"),
    ]);
    let snapshots = snapshot_server(CHAIN, 5000, vec![(5000, archive)]);
    let (rpc1, rpc2) = (FakeRpc::start(12_345), FakeRpc::start(12_345));
    let dead = closed_port();
    let static_peer = "0123456789abcdef0123456789abcdef01234567@10.1.2.3:26656";
    let plan = format!(
        r#"name = "node-bootstrap"
[grants]
dirs = [{{ host = "node-home", guest = "/home", mode = "rw" }}]
http = ["{snap}", "{r1}", "{r2}", "127.0.0.1:{dead}"]

[[tasks]]
type = "snapshot-restore"
params = {{ baseUrl = "{snap_url}", chainId = "{CHAIN}" }}

[[tasks]]
type = "config-patch"
[tasks.params.files."config.toml"]
moniker = "bootstrapped"
p2p = {{ max_num_inbound_peers = 80 }}

[[tasks]]
type = "discover-peers"
[[tasks.params.sources]]
type = "static"
addresses = ["{static_peer}"]
[[tasks.params.sources]]
type = "endpoints"
endpoints = ["{r1_url}", "http://127.0.0.1:{dead}", "{r2_url}"]

[[tasks]]
type = "configure-state-sync"
params = {{ rpcServers = ["{r1_url}", "{r2_url}"], backfillBlocks = 100 }}
"#,
        snap = snapshots.addr,
        r1 = rpc1.server.addr,
        r2 = rpc2.server.addr,
        snap_url = snapshots.url(),
        r1_url = rpc1.server.url(),
        r2_url = rpc2.server.url(),
    );
    let doc = run(&s, &plan, 0);
    assert_eq!(doc["phase"], "Complete");

    // The data dir holds the archive's files; the validator state was kept.
    assert_eq!(
        read(&home.join("data/application.db/000001.ldb")),
        "app state"
    );
    assert_eq!(read(&home.join("data/latest/000001.ldb")), "app state");
    assert!(read(&home.join("data/priv_validator_state.json")).contains("\"round\":0"));
    let restored = &doc["tasks"][0]["output"];
    assert_eq!(
        (restored["height"].as_u64(), restored["restored"].as_bool()),
        (Some(5000), Some(true))
    );

    let config = read(&home.join("config/config.toml"));
    let parsed: toml::Table = config.parse().unwrap();
    assert_eq!(parsed["moniker"].as_str(), Some("bootstrapped"));
    assert_eq!(
        parsed["p2p"]["max_num_inbound_peers"].as_integer(),
        Some(80)
    );
    let peers = parsed["p2p"]["persistent_peers"].as_str().unwrap();
    assert_eq!(
        peers,
        format!(
            "{static_peer},{}@127.0.0.1:26656,{}@127.0.0.1:26656",
            rpc1.node_id, rpc2.node_id
        )
    );
    let statesync = &parsed["statesync"];
    assert_eq!(statesync["enable"].as_bool(), Some(true));
    assert_eq!(statesync["trust_height"].as_integer(), Some(10_345));
    assert_eq!(
        statesync["trust_hash"].as_str(),
        Some(rpc1.block_hash(10_345).as_str())
    );
    assert_eq!(
        statesync["rpc_servers"].as_str(),
        Some(format!("{},{}", rpc1.server.url(), rpc2.server.url()).as_str())
    );
    assert_eq!(statesync["trust_period"].as_str(), Some("168h0m0s"));
    assert_eq!(statesync["backfill_blocks"].as_integer(), Some(100));
    // Comments and untouched keys survive.
    assert!(config.contains("# Comma separated list of nodes to keep persistent connections to"));
    assert!(config.contains("# A custom human readable name for this node"));
    assert!(config.contains("db_backend = \"goleveldb\""));
    assert!(
        doc["tasks"][2]["attempts"][0]["logTail"]
            .as_str()
            .unwrap()
            .contains("skipping unreachable endpoint")
    );

    // The same height again is a no-op; state sync may trust the local snapshot instead.
    let again = run(
        &s,
        &plan.replace("backfillBlocks = 100", "useLocalSnapshot = true"),
        0,
    );
    assert_eq!(again["tasks"][0]["output"]["restored"], false);
    let parsed: toml::Table = read(&home.join("config/config.toml")).parse().unwrap();
    assert_eq!(parsed["statesync"]["trust_height"].as_integer(), Some(5000));
    assert_eq!(
        parsed["statesync"]["trust_hash"].as_str(),
        Some(rpc1.block_hash(5000).as_str())
    );
}

#[test]
fn keys_are_written_in_the_files_own_style() {
    let s = Scratch::with_plugins(&["discover-peers"]);
    let home = s.path().join("node-home");
    std::fs::create_dir_all(home.join("config")).unwrap();
    std::fs::write(
        home.join("config/config.toml"),
        "[p2p]\n# Sei style\nmax-num-inbound-peers = 40\n",
    )
    .unwrap();
    let rpc = FakeRpc::start(100);
    let plan = format!(
        "[grants]\ndirs = [{{ host = \"node-home\", guest = \"/home\", mode = \"rw\" }}]\nhttp = [\"{}\"]\n\
         [[tasks]]\ntype = \"discover-peers\"\n[[tasks.params.sources]]\ntype = \"endpoints\"\nendpoints = [\"{}\"]\n",
        rpc.server.addr,
        rpc.server.url()
    );
    run(&s, &plan, 0);
    let config = read(&home.join("config/config.toml"));
    assert_eq!(
        config,
        format!(
            "[p2p]\n# Sei style\nmax-num-inbound-peers = 40\npersistent-peers = \"{}@127.0.0.1:26656\"\n",
            rpc.node_id
        )
    );
}

#[test]
fn a_source_without_peers_fails_transient() {
    let s = Scratch::with_plugins(&["discover-peers"]);
    node_home(&s);
    let dead = closed_port();
    let plan = format!(
        "[grants]\ndirs = [{{ host = \"node-home\", guest = \"/home\", mode = \"rw\" }}]\nhttp = [\"127.0.0.1:{dead}\"]\n\
         [[tasks]]\ntype = \"discover-peers\"\nmaxRetries = 1\nbackoff = {{ initial = \"10ms\" }}\n\
         [[tasks.params.sources]]\ntype = \"endpoints\"\nendpoints = [\"http://127.0.0.1:{dead}\"]\n"
    );
    let doc = run(&s, &plan, 1);
    let attempts = doc["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "transient: retried");
    assert_eq!(attempts[1]["errorKind"], "transient");
    assert!(
        attempts[1]["message"]
            .as_str()
            .unwrap()
            .contains("yielded no peer")
    );
}

/// A plan restoring from `url`, with `extra` task keys (`maxRetries = 2` unless given).
fn restore_plan(server: &str, url: &str, extra: &str) -> String {
    let retries = if extra.contains("maxRetries") {
        ""
    } else {
        "maxRetries = 2\n"
    };
    format!(
        "[grants]\ndirs = [{{ host = \"node-home\", guest = \"/home\", mode = \"rw\" }}]\nhttp = [\"{server}\"]\n\
         [[tasks]]\ntype = \"snapshot-restore\"\n{retries}{extra}params = {{ baseUrl = \"{url}\", chainId = \"{CHAIN}\" }}\n"
    )
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_archives_fail_permanent_and_write_nothing_outside_the_home() {
    let cases: Vec<(&str, Vec<Entry<'_>>)> = vec![
        (
            "/tmp/planrt-evil",
            vec![Entry::File("/tmp/planrt-evil", b"x")],
        ),
        (
            "data/../../evil",
            vec![Entry::File("data/../../evil", b"x")],
        ),
        (
            "data/escape",
            vec![
                Entry::Symlink("data/escape", "../config"),
                Entry::File("data/escape/x", b"x"),
            ],
        ),
        (
            "data/cfg",
            vec![Entry::Symlink("data/cfg", "../config/config.toml")],
        ),
        ("data/up", vec![Entry::Symlink("data/up", "../../../etc")]),
        (
            "data/passwd",
            vec![Entry::Hardlink("data/passwd", "config/config.toml")],
        ),
    ];
    for (entry, entries) in cases {
        let s = Scratch::with_plugins(&["snapshot-restore"]);
        let home = node_home(&s);
        let config_before = read(&home.join("config/config.toml"));
        let outside_before = tree(s.path());
        let server = snapshot_server(CHAIN, 7, vec![(7, tar_gz(&entries))]);
        let doc = run(
            &s,
            &restore_plan(&server.addr.to_string(), &server.url(), ""),
            1,
        );
        let attempts = doc["tasks"][0]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{entry}: permanent, not retried");
        assert_eq!(attempts[0]["errorKind"], "permanent", "{entry}");
        let message = attempts[0]["message"].as_str().unwrap();
        assert!(message.contains(entry), "{entry}: {message}");
        assert_eq!(
            read(&home.join("config/config.toml")),
            config_before,
            "{entry}"
        );
        assert!(
            home.join("data/priv_validator_state.json").exists(),
            "{entry}: the old data dir stays"
        );
        assert!(!Path::new("/tmp/planrt-evil").exists());
        // Outside the staging dir nothing changed (state files aside).
        let after: Vec<String> = tree(s.path())
            .into_iter()
            .filter(|p| {
                !p.starts_with("state") && !p.contains(".planrt-restore") && p != "plan.toml"
            })
            .collect();
        let before: Vec<String> = outside_before
            .into_iter()
            .filter(|p| !p.starts_with("state"))
            .collect();
        assert_eq!(after, before, "{entry}");
    }
}

#[test]
fn an_archive_larger_than_the_memory_limit_streams_through() {
    let s = Scratch::with_plugins(&["snapshot-restore"]);
    let home = node_home(&s);
    let big = random_bytes(48 << 20, 7);
    let archive = tar_gz(&[Entry::File("data/blockstore.db/big.ldb", &big)]);
    assert!(
        archive.len() > 40 << 20,
        "incompressible: {}",
        archive.len()
    );
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&archive));
    let archive_len = archive.len() as u64;
    let server = snapshot_server(CHAIN, 9, vec![(9, archive)]);
    let plan = restore_plan(
        &server.addr.to_string(),
        &server.url(),
        "memoryLimit = \"32MiB\"\n",
    )
    .replace(
        &format!("chainId = \"{CHAIN}\""),
        &format!("chainId = \"{CHAIN}\", sha256 = \"{digest}\", targetHeight = 9"),
    );
    let restore = run_plan(&s, &plan, 0);
    let doc = restore.json();
    assert_eq!(doc["tasks"][0]["output"]["sha256"], digest.as_str());
    // Progress in bytes (`planrt:task@0.3.0`), shown in binary units and kept in the
    // attempt's record.
    let progress = &doc["tasks"][0]["attempts"][0]["progress"];
    assert_eq!(progress["unit"], "bytes", "{progress}");
    assert_eq!(progress["done"], archive_len, "{progress}");
    assert_eq!(progress["total"], archive_len, "{progress}");
    let total = format!("/{}", in_mib(archive_len));
    assert!(
        restore
            .stderr
            .lines()
            .any(|l| l.contains("task 0 (snapshot-restore): ")
                && l.contains(" MiB")
                && l.contains(&total)),
        "no progress in MiB of {total}: {}",
        restore.stderr
    );
    assert_eq!(
        std::fs::metadata(home.join("data/blockstore.db/big.ldb"))
            .unwrap()
            .len(),
        48 << 20
    );

    // A wrong digest is a transient failure and leaves the data dir as it was.
    let s = Scratch::with_plugins(&["snapshot-restore"]);
    let home = node_home(&s);
    let wrong = "0".repeat(64);
    let plan = restore_plan(&server.addr.to_string(), &server.url(), "maxRetries = 0\n").replace(
        &format!("chainId = \"{CHAIN}\""),
        &format!("chainId = \"{CHAIN}\", sha256 = \"{wrong}\", targetHeight = 9"),
    );
    let doc = run(&s, &plan, 1);
    assert_eq!(doc["tasks"][0]["attempts"][0]["errorKind"], "transient");
    assert!(
        doc["tasks"][0]["error"]
            .as_str()
            .unwrap()
            .contains("sha256")
    );
    assert!(!home.join("data/blockstore.db").exists());
}

#[test]
fn a_missing_height_is_permanent() {
    let s = Scratch::with_plugins(&["snapshot-restore"]);
    node_home(&s);
    let server = snapshot_server(CHAIN, 11, vec![]);
    let doc = run(
        &s,
        &restore_plan(&server.addr.to_string(), &server.url(), ""),
        1,
    );
    assert_eq!(doc["tasks"][0]["attempts"][0]["errorKind"], "permanent");
    assert!(doc["tasks"][0]["error"].as_str().unwrap().contains("404"));
}

#[test]
fn the_data_decides_what_is_restored_and_the_kv_store_records_each_restore() {
    let s = Scratch::with_plugins(&["snapshot-restore"]);
    let home = node_home(&s);
    let archive = |height: &[u8]| {
        tar_gz(&[
            Entry::Dir("data/"),
            Entry::File("data/application.db/000001.ldb", height),
        ])
    };
    let server = snapshot_server(
        CHAIN,
        7,
        vec![(7, archive(b"seven")), (8, archive(b"eight"))],
    );
    let plan = restore_plan(&server.addr.to_string(), &server.url(), "");
    let first = run(&s, &plan, 0);
    assert_eq!(first["tasks"][0]["output"]["restored"], true);
    let first_id = format!("{}.1", first["tasks"][0]["id"].as_str().unwrap());

    let kv = || -> Vec<(String, Value)> {
        let db = rusqlite::Connection::open(s.state().join("planrt.db")).unwrap();
        let mut query = db
            .prepare("SELECT key, value FROM kv WHERE task_type = 'snapshot-restore' ORDER BY key")
            .unwrap();
        query
            .query_map([], |row| Ok((row.get(0)?, row.get::<_, Vec<u8>>(1)?)))
            .unwrap()
            .map(|r| {
                let (key, value) = r.unwrap();
                (key, serde_json::from_slice(&value).unwrap())
            })
            .collect()
    };
    // The restore is recorded in planrt's state under the ID its provenance file carries;
    // neither holds the URL (it may be a secret).
    let records = kv();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, format!("restored/{CHAIN}/{first_id}"));
    assert_eq!(records[0].1["height"], 7);
    assert!(records[0].1.get("url").is_none(), "{records:?}");
    let provenance: Value =
        serde_json::from_str(&read(&home.join("data/.planrt-snapshot.json"))).unwrap();
    assert_eq!(provenance["restoreId"], first_id.as_str());
    assert!(provenance.get("url").is_none(), "{provenance}");

    // The same height again is a no-op and the node's newer data stays — decided by the
    // data itself, so even without planrt's records (another state dir, a moved host).
    std::fs::write(home.join("data/application.db/000002.ldb"), "newer").unwrap();
    let db = rusqlite::Connection::open(s.state().join("planrt.db")).unwrap();
    db.execute("DELETE FROM kv", []).unwrap();
    drop(db);
    assert_eq!(run(&s, &plan, 0)["tasks"][0]["output"]["restored"], false);
    assert_eq!(read(&home.join("data/application.db/000002.ldb")), "newer");
    // ... and the missing record of the data in place is written again.
    let keys: Vec<String> = kv().into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, [format!("restored/{CHAIN}/{first_id}")]);

    // Another height replaces the data, and the record of the replaced restore goes.
    let eight = restore_plan(&server.addr.to_string(), &server.url(), "")
        .replace("chainId = ", "targetHeight = 8, chainId = ");
    let second = run(&s, &eight, 0);
    assert_eq!(second["tasks"][0]["output"]["restored"], true);
    assert_eq!(read(&home.join("data/application.db/000001.ldb")), "eight");
    let second_id = format!("{}.1", second["tasks"][0]["id"].as_str().unwrap());
    let keys: Vec<String> = kv().into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, [format!("restored/{CHAIN}/{second_id}")]);

    // A reset (`unsafe-reset-all`: the data dir removed and made again, the validator
    // state kept) is restored again once the node has started.
    std::fs::remove_dir_all(home.join("data")).unwrap();
    std::fs::create_dir_all(home.join("data/blockstore.db")).unwrap();
    std::fs::write(home.join("data/priv_validator_state.json"), SIGNED).unwrap();
    std::fs::write(home.join("data/blockstore.db/CURRENT"), "started").unwrap();
    let reset = run(&s, &plan, 0);
    assert_eq!(reset["tasks"][0]["output"]["restored"], true);
    assert_eq!(read(&home.join("data/application.db/000001.ldb")), "seven");
    assert_eq!(read(&home.join("data/priv_validator_state.json")), SIGNED);
}

/// A validator's last signed state, as the node wrote it.
const SIGNED: &str = r#"{"height":"4242","round":1,"step":3}"#;

#[test]
fn a_restore_killed_at_any_step_of_its_swap_is_repaired_and_keeps_the_validator_state() {
    // Each case builds the node home as a killed attempt leaves it, then runs the task
    // again (a retry, or a resume): the new data is in place and the validator's signed
    // state — never the archive's — is in it.
    let archive = tar_gz(&[
        Entry::File("data/application.db/000002.ldb", b"restored"),
        Entry::File("data/priv_validator_state.json", br#"{"height":"0"}"#),
    ]);
    let server = snapshot_server(CHAIN, 8, vec![(8, archive)]);
    // (case, how the killed attempt left the home, what the recovery logs)
    type Case = (&'static str, fn(&Path), &'static str);
    let cases: [Case; 4] = [
        (
            "killed while extracting",
            |home| {
                std::fs::create_dir_all(home.join(".planrt-restore/data/application.db")).unwrap();
                std::fs::write(
                    home.join(".planrt-restore/data/application.db/000002.ldb"),
                    "par",
                )
                .unwrap();
            },
            "partial extraction",
        ),
        (
            "killed between the two renames",
            |home| {
                std::fs::create_dir_all(home.join(".planrt-restore/data")).unwrap();
                std::fs::copy(
                    home.join("data/priv_validator_state.json"),
                    home.join(".planrt-restore/data/priv_validator_state.json"),
                )
                .unwrap();
                std::fs::rename(home.join("data"), home.join(".planrt-old-data")).unwrap();
            },
            "back in place",
        ),
        (
            "killed after the renames, before the clean-up",
            |home| {
                std::fs::create_dir_all(home.join(".planrt-restore")).unwrap();
                std::fs::rename(home.join("data"), home.join(".planrt-old-data")).unwrap();
                std::fs::create_dir_all(home.join("data")).unwrap();
                std::fs::copy(
                    home.join(".planrt-old-data/priv_validator_state.json"),
                    home.join("data/priv_validator_state.json"),
                )
                .unwrap();
            },
            "finished its clean-up",
        ),
        (
            "killed while removing the old dir, its copy of the state already gone",
            |home| {
                std::fs::rename(home.join("data"), home.join(".planrt-old-data")).unwrap();
                std::fs::create_dir_all(home.join("data")).unwrap();
                std::fs::write(home.join("data/priv_validator_state.json"), SIGNED).unwrap();
                std::fs::remove_file(home.join(".planrt-old-data/priv_validator_state.json"))
                    .unwrap();
            },
            "finished its clean-up",
        ),
    ];
    for (case, leave, note) in cases {
        let s = Scratch::with_plugins(&["snapshot-restore"]);
        let home = node_home(&s);
        std::fs::write(home.join("data/priv_validator_state.json"), SIGNED).unwrap();
        std::fs::write(home.join("data/old.db"), "old").unwrap();
        leave(&home);

        let doc = run(
            &s,
            &restore_plan(&server.addr.to_string(), &server.url(), ""),
            0,
        );
        assert_eq!(
            read(&home.join("data/priv_validator_state.json")),
            SIGNED,
            "{case}"
        );
        assert_eq!(
            read(&home.join("data/application.db/000002.ldb")),
            "restored",
            "{case}"
        );
        assert!(!home.join("data/old.db").exists(), "{case}");
        let mut left: Vec<String> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["config", "data"], "{case}");
        let tail = doc["tasks"][0]["attempts"][0]["logTail"].as_str().unwrap();
        assert!(tail.contains(note), "{case}: {tail}");
    }
}

#[test]
fn state_sync_never_lists_one_rpc_server_twice() {
    let s = Scratch::with_plugins(&["configure-state-sync"]);
    let home = node_home(&s);
    let rpc = FakeRpc::start(12_345);
    let before = read(&home.join("config/config.toml"));
    let plan = format!(
        "[grants]\ndirs = [{{ host = \"node-home\", guest = \"/home\", mode = \"rw\" }}]\nhttp = [\"{addr}\"]\n\
         [[tasks]]\ntype = \"configure-state-sync\"\nmaxRetries = 2\nparams = {{ rpcServers = [\"{url}\", \"{url}/\"] }}\n",
        addr = rpc.server.addr,
        url = rpc.server.url(),
    );
    let doc = run(&s, &plan, 1);
    let attempts = doc["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "not retried");
    assert_eq!(attempts[0]["errorKind"], "invalid-params");
    let message = attempts[0]["message"].as_str().unwrap();
    assert!(
        message.contains("at least two different servers") && message.contains(&rpc.server.url()),
        "{message}"
    );
    assert_eq!(
        read(&home.join("config/config.toml")),
        before,
        "config untouched"
    );
}
