//! The fuzz oracles as proptest properties, run by `cargo test` in CI's budget: mutated
//! seeds for every target, plus generators that build what byte mutation rarely reaches —
//! graphs with names, unknown names and cycles, and tar archives with hostile entry names
//! and link targets under valid checksums. `PROPTEST_CASES` scales every property.

use proptest::prelude::*;
use proptest::sample::{Index, select};
use tar::{EntryType, Header};

/// One edit of an input.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    InsertToken(Index, &'static str),
    Duplicate(Index, usize, Index),
    Truncate(Index),
}

/// Pieces of plan syntax worth splicing in: they make the parser's deeper checks fire.
const TOKENS: &[&str] = &[
    "[[tasks]]\ntype = \"t\"\n",
    "name = \"a\"\n",
    "name = \"b\"\n",
    "dependsOn = [\"a\"]\n",
    "dependsOn = [\"a\", \"a\"]\n",
    "dependsOn = []\n",
    "\"dependsOn\":[\"b\"],",
    "\"name\":\"a\",",
    "maxParallel = 0\n",
    "maxParallel = 4097\n",
    "maxRetries = 4294967296\n",
    "timeout = \"0s\"\n",
    "timeout = \"99999999999999999999h\"\n",
    "memoryLimit = \"1EiB\"\n",
    "backoff = { initial = \"1ms\", factor = 0.0, max = \"0s\" }\n",
    "[grants]\ndirs = [{ host = \"..\", guest = \"/\", mode = \"rw\" }]\n",
    "http = [\"*\", \"\", \"[::1]:0\"]\n",
    "{\"$env\":\"TOKEN\"}",
    "\u{0}",
    "\u{feff}",
    "\"",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "1e999",
    "-1",
    "null",
    "\"formatVersion\":1,",
    "\"formatVersion\":99,",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<Index>(), select(TOKENS)).prop_map(|(at, token)| Mutation::InsertToken(at, token)),
        (any::<Index>(), 1usize..256, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate(from, len, to)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = input.len();
        let at = |index: &Index| if len == 0 { 0 } else { index.index(len + 1) };
        match mutation {
            Mutation::FlipBit(index, bit) if len > 0 => input[index.index(len)] ^= 1 << bit,
            Mutation::FlipBit(..) => {}
            Mutation::Delete(index, n) => {
                let start = at(index);
                input.drain(start..(start + n).min(len));
            }
            Mutation::Insert(index, bytes) => {
                let start = at(index);
                input.splice(start..start, bytes.iter().copied());
            }
            Mutation::InsertToken(index, token) => {
                let start = at(index);
                input.splice(start..start, token.bytes());
            }
            Mutation::Duplicate(from, n, to) => {
                let start = at(from);
                let piece = input[start..(start + n).min(len)].to_vec();
                let to = at(to);
                input.splice(to..to, piece);
            }
            Mutation::Truncate(index) => input.truncate(at(index)),
        }
    }
    input
}

/// A seed of `target` with some edits.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = planrt_fuzz::seeds::of(target);
    (select(seeds), prop::collection::vec(mutation(), 0..6))
        .prop_map(|(seed, mutations)| apply(seed, &mutations))
}

/// A plan file whose tasks carry random names and `dependsOn` lists: duplicates, unknown
/// names, self-loops and longer cycles among them.
fn graph_plan() -> impl Strategy<Value = String> {
    const NAMES: &[&str] = &["a", "b", "c", "d", "e", "A", "a-b", "_", "1"];
    let task = (
        prop::option::of(select(NAMES)),
        prop::option::of(prop::collection::vec(select(NAMES), 0..4)),
        0u8..3,
    );
    (prop::collection::vec(task, 1..9), prop::option::of(0i64..6)).prop_map(
        |(tasks, max_parallel)| {
            let mut text = String::new();
            if let Some(max) = max_parallel {
                text.push_str(&format!("[defaults]\nmaxParallel = {max}\n"));
            }
            for (name, depends_on, kind) in tasks {
                text.push_str(&format!("[[tasks]]\ntype = \"type-{kind}\"\n"));
                if let Some(name) = name {
                    text.push_str(&format!("name = \"{name}\"\n"));
                }
                if let Some(list) = depends_on {
                    let list: Vec<String> = list.iter().map(|n| format!("\"{n}\"")).collect();
                    text.push_str(&format!("dependsOn = [{}]\n", list.join(", ")));
                }
            }
            text
        },
    )
}

/// A tar archive of entries with hostile names and link targets, headers written raw (the
/// tar crate's builder refuses `..`) with valid checksums.
fn hostile_archive() -> impl Strategy<Value = Vec<u8>> {
    const PARTS: &[&str] = &[
        "data", "data", "a", "b", "..", ".", "", "config", "link", "/",
    ];
    const TARGETS: &[&str] = &[
        "a",
        "..",
        "a/..",
        "link/..",
        "link/../..",
        "../config",
        "../../config/config.toml",
        "/etc",
        "data/a",
        "data/link",
        "link",
        "b/../..",
        "",
    ];
    let kind = select(
        &[
            EntryType::Directory,
            EntryType::Regular,
            EntryType::Regular,
            EntryType::Symlink,
            EntryType::Link,
            EntryType::Fifo,
        ][..],
    );
    let entry = (
        prop::collection::vec(select(PARTS), 1..5),
        kind,
        select(TARGETS),
        prop::collection::vec(any::<u8>(), 0..64),
    );
    prop::collection::vec(entry, 1..10).prop_map(|entries| {
        let mut out = Vec::new();
        for (parts, kind, target, body) in entries {
            let name = parts.join("/");
            let mut header = Header::new_gnu();
            let name = &name.as_bytes()[..name.len().min(99)];
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            header.set_entry_type(kind);
            header.set_mode(0o644);
            let body: &[u8] = if kind == EntryType::Regular {
                &body
            } else {
                &[]
            };
            header.set_size(body.len() as u64);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().next_multiple_of(512), 0);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    })
}

proptest! {
    // `PROPTEST_CASES` (read by the default config) sets the number of cases.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn mutated_plan_files(input in mutated("plan_toml")) {
        planrt_fuzz::plan_toml(&input);
    }

    #[test]
    fn generated_graphs(text in graph_plan()) {
        planrt_fuzz::plan_toml(text.as_bytes());
    }

    #[test]
    fn mutated_json_plans(input in mutated("plan_json")) {
        planrt_fuzz::plan_json(&input);
    }

    #[test]
    fn mutated_saved_plans(input in mutated("saved_plan")) {
        planrt_fuzz::saved_plan(&input);
    }

    #[test]
    fn mutated_task_settings(input in mutated("task_settings")) {
        planrt_fuzz::task_settings(&input);
    }

    #[test]
    fn mutated_archives(input in mutated("snapshot_tar")) {
        planrt_fuzz::snapshot_tar(&input);
    }

    #[test]
    fn mutated_gzip_streams(input in mutated("snapshot_targz")) {
        planrt_fuzz::snapshot_targz(&input);
    }

    #[test]
    fn hostile_archives(input in hostile_archive()) {
        planrt_fuzz::snapshot_tar(&input);
        planrt_fuzz::snapshot_targz(&planrt_fuzz::seeds::gzip(&input));
    }
}

/// The properties above could pass by rejecting everything: the unmutated seeds must be
/// accepted, and a hostile archive must be refused with nothing written outside.
#[test]
fn every_seed_is_accepted() {
    use std::path::Path;
    for seed in planrt_fuzz::seeds::of("plan_toml") {
        let text = std::str::from_utf8(&seed).unwrap();
        planrt_plan::PlanSpec::parse(text, Path::new("seed.toml")).unwrap();
    }
    for seed in planrt_fuzz::seeds::of("plan_json") {
        let value = serde_json::from_slice(&seed).unwrap();
        planrt_plan::PlanSpec::from_json(&value).unwrap();
    }
    for seed in planrt_fuzz::seeds::of("saved_plan") {
        let saved: planrt_plan::SavedPlan = serde_json::from_slice(&seed).unwrap();
        saved.to_plan_run().unwrap();
    }
    for seed in planrt_fuzz::seeds::of("task_settings") {
        let text = std::str::from_utf8(&seed).unwrap();
        planrt_plan::TaskSettings::parse(text, Path::new("seed.toml")).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let extracted =
        snapshot_restore::archive::extract(&planrt_fuzz::seeds::snapshot()[..], home.path())
            .unwrap();
    assert_eq!(extracted.files, 2);
    assert!(home.path().join("data/copy.log").is_file());
    assert!(home.path().join("data/current").is_symlink());
}

/// The one list of targets ([`planrt_fuzz::seeds::TARGETS`]) is what `fuzz_targets/`
/// holds, what `Cargo.toml` builds, and what has seeds: a target added in one place only
/// fails here.
#[test]
fn the_target_list_matches_the_binaries_and_the_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(root.join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<&str> = planrt_fuzz::seeds::TARGETS.to_vec();
    listed.sort_unstable();
    assert_eq!(files, listed);
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for target in planrt_fuzz::seeds::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "Cargo.toml has no [[bin]] {target}"
        );
        assert!(
            !planrt_fuzz::seeds::of(target).is_empty(),
            "{target} has no seeds"
        );
    }
}
