//! Valid inputs for each target, the starting points of mutation: a fuzzer that starts from
//! inputs the parsers accept reaches their deep paths (graphs, grants, links) much sooner.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use planrt_plan::{
    PlanId, PlanRun, PlanSpec, PluginPin, Resolution, SAVED_PLAN_FORMAT_VERSION, SavedPlan,
};
use tar::{Builder, EntryType, Header};

/// The fuzz targets, by name (the binaries in fuzz_targets/ and the oracles in the crate).
pub const TARGETS: [&str; 6] = [
    "plan_toml",
    "plan_json",
    "saved_plan",
    "task_settings",
    "snapshot_tar",
    "snapshot_targz",
];

const NODE_BOOTSTRAP: &str = include_str!("../../examples/plans/node-bootstrap.toml");
const NODE_CONFIG: &str = include_str!("../../examples/plans/node-config.toml");

/// A graph with every key a plan file may hold.
const GRAPH_PLAN: &str = r#"name = "graph"
[defaults]
maxRetries = 3
timeout = "30s"
memoryLimit = "64MiB"
maxOutput = "1MiB"
maxParallel = 4
backoff = { initial = "1s", factor = 2, max = "1m", jitter = false }
[grants]
dirs = [{ host = "/srv/node", guest = "/home", mode = "rw" }]
http = ["127.0.0.1:8080", "example.com"]
[[tasks]]
type = "fetch"
name = "a"
params = { url = "http://127.0.0.1:8080/x" }
[[tasks]]
type = "fetch"
name = "b"
dependsOn = ["a"]
maxRetries = 0
[[tasks]]
type = "patch"
name = "c"
dependsOn = ["a", "b"]
timeout = "5s"
params = { files = { "config.toml" = { moniker = "x" } } }
"#;

const GRAPH_JSON: &str = r#"{"name":"graph","defaults":{"maxRetries":2,"maxParallel":2},
"grants":{"dirs":[{"host":"/srv/node","guest":"/home","mode":"ro"}],"http":["127.0.0.1:9"]},
"tasks":[{"type":"fetch","name":"a","params":{"url":"http://127.0.0.1:9/"}},
{"type":"fetch","name":"b","dependsOn":["a"]},{"type":"patch","dependsOn":["a","b"],"params":{}}]}"#;

const SETTINGS: &str = r#"[defaults]
maxRetries = 1
timeout = "10s"
[grants]
dirs = [{ host = "/srv/node", guest = "/home", mode = "rw" }]
http = ["127.0.0.1:8080"]
[secrets]
env = ["TOKEN", "NODE_KEY"]
"#;

/// The seeds of `target` (one of [`TARGETS`]).
pub fn of(target: &str) -> Vec<Vec<u8>> {
    match target {
        "plan_toml" => [NODE_BOOTSTRAP, NODE_CONFIG, GRAPH_PLAN]
            .map(|s| s.as_bytes().to_vec())
            .to_vec(),
        "plan_json" => vec![GRAPH_JSON.as_bytes().to_vec()],
        "saved_plan" => [NODE_BOOTSTRAP, GRAPH_PLAN].map(saved_plan).to_vec(),
        "task_settings" => vec![SETTINGS.as_bytes().to_vec()],
        "snapshot_tar" => vec![snapshot()],
        "snapshot_targz" => vec![gzip(&snapshot())],
        other => panic!("no fuzz target {other}"),
    }
}

/// The saved plan (`plan --out`) of a plan file, every type pinned.
fn saved_plan(source: &str) -> Vec<u8> {
    let spec = PlanSpec::parse(source, Path::new("/plans/seed.toml")).expect("a seed parses");
    let run = PlanRun::new(PlanId::new_random(), spec.name.clone(), &spec.tasks).unwrap();
    let plugins: BTreeMap<_, _> = spec
        .tasks
        .iter()
        .map(|task| {
            let pin = PluginPin {
                file: format!("/plugins/{}.wasm", task.task_type).into(),
                sha256: "ab".repeat(32),
                wit_version: "0.2.0".into(),
            };
            (task.task_type.clone(), pin)
        })
        .collect();
    let resolution = Resolution {
        format_version: SAVED_PLAN_FORMAT_VERSION,
        defaults: spec.defaults,
        grants: spec.grants,
        plugins,
    };
    serde_json::to_vec_pretty(&SavedPlan::of(resolution, run.document())).unwrap()
}

/// A small node snapshot with every entry kind the extractor takes: dirs, files, a
/// symlink and a hardlink inside `data/`.
pub fn snapshot() -> Vec<u8> {
    let mut builder = Builder::new(Vec::new());
    let mut add = |name: &str, kind: EntryType, body: &[u8], link: Option<&str>| {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(body.len() as u64);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        builder.append_data(&mut header, name, body).unwrap();
    };
    add("data/", EntryType::Directory, b"", None);
    add("data/application.db/", EntryType::Directory, b"", None);
    add(
        "data/application.db/000001.log",
        EntryType::Regular,
        &[7; 1500],
        None,
    );
    add(
        "data/priv_validator_state.json",
        EntryType::Regular,
        b"{\"height\":\"0\"}",
        None,
    );
    add(
        "data/current",
        EntryType::Symlink,
        b"",
        Some("application.db"),
    );
    add(
        "data/copy.log",
        EntryType::Link,
        b"",
        Some("data/application.db/000001.log"),
    );
    builder.into_inner().unwrap()
}

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}
