//! `configure-state-sync`: points the node's state sync at trusted RPC servers
//! (docs/DESIGN.md §9).
//!
//! Params: `{rpcServers?, trustPeriod?, useLocalSnapshot?, backfillBlocks?}`. The trust
//! height is the locally restored snapshot's (recorded by snapshot-restore) or the latest
//! height − 2000; the trust hash is `result.block_id.hash` of `GET {rpc}/block?height=H`.
//! Written to `[statesync]` of `/home/config/config.toml` in the file's key style.

use planrt_node_common::{config, durable, http};
use planrt_plugin_sdk::{
    Context, DirMode, DirNeed, Info, Needs, Task, TaskError, export_task, log,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

const CONFIG: &str = "/home/config/config.toml";
const SNAPSHOT_MARKER: &str = "/home/data/.planrt-snapshot.json";
/// How far below the latest height the trust height is taken.
pub const TRUST_OFFSET: u64 = 2000;
/// CometBFT's default trust period.
pub const DEFAULT_TRUST_PERIOD: &str = "168h0m0s";

/// How to set up state sync.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// RPC servers, http(s) URLs (else `[statesync] rpc_servers`, else the persistent peers')
    #[serde(default)]
    pub rpc_servers: Vec<String>,
    /// `trust_period`, a duration like "168h0m0s"
    #[serde(default = "default_trust_period")]
    pub trust_period: String,
    /// Trust the height snapshot-restore restored, instead of the latest height − 2000
    #[serde(default)]
    pub use_local_snapshot: bool,
    /// `backfill_blocks` (Sei), when given
    pub backfill_blocks: Option<u64>,
}

fn default_trust_period() -> String {
    DEFAULT_TRUST_PERIOD.to_owned()
}

impl Params {
    /// What the schema cannot say: http(s) URLs, a trust period that is not empty.
    pub fn check(&self) -> Result<(), String> {
        for url in &self.rpc_servers {
            http::Url::parse(url).map_err(|e| format!("`rpcServers`: {e}"))?;
        }
        if self.trust_period.is_empty() {
            return Err("`trustPeriod` must be a duration like \"168h0m0s\"".into());
        }
        Ok(())
    }
}

/// Reads and checks params.
pub fn parse_params(params: &str) -> Result<Params, String> {
    let params: Params = planrt_plugin_sdk::parse_params(params)?;
    params.check()?;
    Ok(params)
}

/// The trust height for `latest`: `latest − 2000`, at least 1.
pub fn trust_height_below(latest: u64) -> u64 {
    latest.saturating_sub(TRUST_OFFSET).max(1)
}

/// The first answer of `ask` over the servers, or a transient error naming all failures.
fn first_answer<T>(
    servers: &[String],
    what: &str,
    ask: impl Fn(&str) -> Result<T, String>,
) -> Result<T, TaskError> {
    let mut failures = Vec::new();
    for server in servers {
        match ask(server) {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                log!(Warn, "{what}: {e}");
                failures.push(e);
            }
        }
    }
    Err(TaskError::Transient(format!(
        "no RPC server answered for the {what}: {}",
        failures.join("; ")
    )))
}

fn latest_height(server: &str) -> Result<u64, String> {
    let url = http::join(server, "status");
    let status = http::get_json(&url).map_err(|e| format!("{url}: {e}"))?;
    status
        .pointer("/result/sync_info/latest_block_height")
        .and_then(|h| {
            h.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| h.as_u64())
        })
        .ok_or_else(|| format!("{url}: no result.sync_info.latest_block_height"))
}

fn block_hash(server: &str, height: u64) -> Result<String, String> {
    let url = http::join(server, &format!("block?height={height}"));
    let block = http::get_json(&url).map_err(|e| format!("{url}: {e}"))?;
    block
        .pointer("/result/block_id/hash")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("{url}: no result.block_id.hash"))
}

fn local_snapshot_height() -> Result<u64, TaskError> {
    let text = std::fs::read_to_string(SNAPSHOT_MARKER).map_err(|e| {
        TaskError::Permanent(format!(
            "useLocalSnapshot: no restored snapshot recorded ({SNAPSHOT_MARKER}: {e})"
        ))
    })?;
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|m| m.get("height")?.as_u64())
        .ok_or_else(|| TaskError::Permanent(format!("{SNAPSHOT_MARKER} holds no height")))
}

/// Where the RPC servers of state sync came from; decides how too few is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSource {
    /// `rpcServers` in the params.
    Params,
    /// `[statesync] rpc_servers` already in the config.
    Config,
    /// The RPC port of each host in `[p2p] persistent_peers` (as discover-peers wrote them).
    Peers,
}

/// The CometBFT RPC port, for servers derived from peers.
pub const RPC_PORT: u16 = 26657;

/// `servers` without repeats of the same server (scheme and host compared
/// case-insensitively, a default port and a trailing `/` ignored); the first spelling is
/// kept.
pub fn distinct_servers(servers: &[String]) -> Vec<String> {
    let key = |server: &str| {
        let (scheme, rest) = server.split_once("://").unwrap_or(("", server));
        match http::Url::parse(&format!("{}://{rest}", scheme.to_ascii_lowercase())) {
            Ok(url) => {
                let (scheme, default_port) = if url.https {
                    ("https", 443)
                } else {
                    ("http", 80)
                };
                let authority = url.authority.to_ascii_lowercase();
                let has_port = !authority.ends_with(']') && authority.contains(':');
                let authority = if has_port {
                    authority
                } else {
                    format!("{authority}:{default_port}")
                };
                let path = url.path_and_query.trim_end_matches('/');
                format!("{scheme}://{authority}{path}")
            }
            Err(_) => server.to_owned(),
        }
    };
    let mut seen = Vec::new();
    let mut distinct = Vec::new();
    for server in servers {
        let k = key(server);
        if !seen.contains(&k) {
            seen.push(k);
            distinct.push(server.clone());
        }
    }
    distinct
}

/// `http://{host}:26657` of each `id@host:port` peer (an IPv6 host in brackets).
pub fn servers_of_peers(peers: &str) -> Vec<String> {
    peers
        .split(',')
        .filter_map(|peer| {
            let (_, address) = peer.trim().split_once('@')?;
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            (!host.is_empty()).then(|| format!("http://{host}:{RPC_PORT}"))
        })
        .collect()
}

fn list(doc: &toml_edit::DocumentMut, table: &str, key: &str) -> String {
    config::get_str(doc, table, key)
        .unwrap_or_default()
        .to_owned()
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Why fewer than two servers will not do.
fn too_few(source: &str, servers: &[String]) -> String {
    format!(
        "state sync's light client checks each RPC server against another, so it needs at \
         least two different servers, but {source} gives {}",
        if servers.is_empty() {
            "none".to_owned()
        } else {
            format!("only {}", servers.join(", "))
        }
    )
}

/// The distinct RPC servers state sync will use, and where they came from. The light
/// client cross-checks what one server says against another, so fewer than two distinct
/// servers is an error, never one server listed twice. An operator's `rpcServers` is final
/// (`invalid-params` if it has fewer than two). Otherwise `[statesync] rpc_servers`, and
/// when that has fewer than two, the persistent peers' RPC servers: fewer than two there is
/// `transient` (more peers may be discovered before a later attempt).
pub fn choose_servers(
    params: &Params,
    doc: &toml_edit::DocumentMut,
) -> Result<(Vec<String>, ServerSource), TaskError> {
    if !params.rpc_servers.is_empty() {
        let given = distinct_servers(&params.rpc_servers);
        return match given.len() {
            2.. => Ok((given, ServerSource::Params)),
            _ => Err(TaskError::InvalidParams(too_few("`rpcServers`", &given))),
        };
    }
    let configured = distinct_servers(&split_list(&list(doc, "statesync", "rpc_servers")));
    if configured.len() >= 2 {
        return Ok((configured, ServerSource::Config));
    }
    let from_peers = distinct_servers(&servers_of_peers(&list(doc, "p2p", "persistent_peers")));
    if from_peers.len() >= 2 {
        return Ok((from_peers, ServerSource::Peers));
    }
    Err(match (configured.is_empty(), from_peers.is_empty()) {
        (true, true) => TaskError::InvalidParams(
            "no `rpcServers` given, none in [statesync] rpc_servers, and no persistent peers to \
             take them from"
                .into(),
        ),
        (false, true) => TaskError::InvalidParams(too_few("[statesync] rpc_servers", &configured)),
        (_, false) => TaskError::Transient(format!(
            "{}; a later attempt may find more once more peers are discovered",
            too_few("[p2p] persistent_peers", &from_peers)
        )),
    })
}

fn configure(params: Params) -> Result<Value, TaskError> {
    let mut doc = config::load(CONFIG).map_err(TaskError::Permanent)?;
    let (servers, source) = choose_servers(&params, &doc)?;
    if source == ServerSource::Peers {
        log!(
            Info,
            "RPC servers taken from the persistent peers ([statesync] rpc_servers has fewer than two)"
        );
    }
    let trust_height = if params.use_local_snapshot {
        local_snapshot_height()?
    } else {
        trust_height_below(first_answer(&servers, "latest height", latest_height)?)
    };
    let trust_hash = first_answer(&servers, "trust hash", |s| block_hash(s, trust_height))?;
    let mut changed = false;
    changed |= config::set(&mut doc, "statesync", "enable", true);
    changed |= config::set(&mut doc, "statesync", "rpc_servers", servers.join(","));
    changed |= config::set(&mut doc, "statesync", "trust_height", trust_height as i64);
    changed |= config::set(&mut doc, "statesync", "trust_hash", trust_hash.clone());
    changed |= config::set(
        &mut doc,
        "statesync",
        "trust_period",
        params.trust_period.clone(),
    );
    if let Some(blocks) = params.backfill_blocks {
        changed |= config::set(&mut doc, "statesync", "backfill_blocks", blocks as i64);
    }
    if changed {
        durable::write_atomically(CONFIG, doc.to_string().as_bytes())
            .map_err(|e| TaskError::Transient(format!("cannot write {CONFIG}: {e}")))?;
    }
    log!(Info, "state sync from height {trust_height} ({trust_hash})");
    Ok(json!({ "trustHeight": trust_height, "trustHash": trust_hash, "rpcServers": servers }))
}

/// The task type.
pub struct ConfigureStateSync;

impl Task for ConfigureStateSync {
    type Params = Params;
    type Output = Value;

    fn info() -> Info {
        Info {
            needs: Needs {
                dirs: vec![
                    DirNeed {
                        guest_path: "/home/config".into(),
                        mode: DirMode::Rw,
                    },
                    DirNeed {
                        guest_path: "/home/data".into(),
                        mode: DirMode::Ro,
                    },
                ],
                network: true,
            },
            default_timeout_ms: Some(120_000),
            default_memory_limit: Some(64 << 20),
            ..Info::new(
                "configure-state-sync",
                env!("CARGO_PKG_VERSION"),
                "Enable state sync with a trust height and hash from RPC servers",
            )
        }
    }

    fn validate(params: &Params) -> Result<(), String> {
        params.check()
    }

    fn run(_context: Context, params: Params) -> Result<Value, TaskError> {
        configure(params)
    }
}

export_task!(ConfigureStateSync);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked_and_defaulted() {
        let p = parse_params(r#"{"rpcServers": ["http://127.0.0.1:26657"], "backfillBlocks": 10}"#)
            .unwrap();
        assert_eq!(p.trust_period, DEFAULT_TRUST_PERIOD);
        assert_eq!((p.use_local_snapshot, p.backfill_blocks), (false, Some(10)));
        assert_eq!(
            parse_params("{}").unwrap().rpc_servers,
            Vec::<String>::new()
        );
        for bad in [
            r#"{"rpcServers": "x"}"#,
            r#"{"rpcServers": ["x"]}"#,
            r#"{"useLocalSnapshot": 1}"#,
            r#"{"other": 1}"#,
            r#"{"trustPeriod": ""}"#,
            r#"{"backfillBlocks": -1}"#,
        ] {
            assert!(parse_params(bad).is_err(), "{bad}");
        }
        assert!(
            parse_params(r#"{"other": 1}"#)
                .unwrap_err()
                .starts_with("unknown field `other`")
        );
        assert!(
            parse_params(r#"{"rpcServers": ["x"]}"#)
                .unwrap_err()
                .starts_with("`rpcServers`: ")
        );
    }

    #[test]
    fn the_schema_says_what_the_old_one_said() {
        let schema: Value =
            serde_json::from_str(&planrt_plugin_sdk::params_schema::<Params>()).unwrap();
        let properties = &schema["properties"];
        assert_eq!(properties["rpcServers"]["type"], "array");
        assert_eq!(properties["rpcServers"]["items"]["type"], "string");
        assert_eq!(properties["trustPeriod"]["type"], "string");
        assert_eq!(properties["trustPeriod"]["default"], DEFAULT_TRUST_PERIOD);
        assert_eq!(properties["useLocalSnapshot"]["type"], "boolean");
        assert_eq!(properties["backfillBlocks"]["minimum"], 0);
        assert!(schema.get("required").is_none_or(|r| r == &json!([])));
    }

    fn params(json: &str) -> Params {
        parse_params(json).unwrap()
    }

    fn doc(text: &str) -> toml_edit::DocumentMut {
        text.parse().unwrap()
    }

    #[test]
    fn a_server_is_never_listed_twice() {
        let servers: Vec<String> = [
            "http://a:26657",
            "HTTP://A:26657/",
            "http://a:26657/Other",
            "http://b:26657",
            "http://a:26657",
            "http://c",
            "http://c:80",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(
            distinct_servers(&servers),
            [
                "http://a:26657",
                "http://a:26657/Other",
                "http://b:26657",
                "http://c"
            ]
        );
    }

    #[test]
    fn servers_come_from_params_then_config_then_peers() {
        let config = doc(
            "[statesync]\nrpc_servers = \"http://x:1,http://y:1\"\n[p2p]\npersistent_peers = \"id@p:26656,id@q:26656\"\n",
        );
        let given = params(r#"{"rpcServers": ["http://a:1", "http://b:1"]}"#);
        let servers = |p: &Params, d| choose_servers(p, d).unwrap();
        assert_eq!(
            servers(&given, &config),
            (
                vec!["http://a:1".into(), "http://b:1".into()],
                ServerSource::Params
            )
        );
        assert_eq!(
            servers(&params("{}"), &config),
            (
                vec!["http://x:1".into(), "http://y:1".into()],
                ServerSource::Config
            )
        );
        let peers_only =
            doc("[p2p]\npersistent_peers = \"id@p:26656, id@q:26656,id@p:26656,id@[::1]:26656\"\n");
        let from_peers = (
            vec![
                "http://p:26657".into(),
                "http://q:26657".into(),
                "http://[::1]:26657".into(),
            ],
            ServerSource::Peers,
        );
        assert_eq!(servers(&params("{}"), &peers_only), from_peers);
        // A config listing one server twice (as older versions wrote it) falls through.
        let one_twice = doc(
            "[statesync]\nrpc_servers = \"http://x:1,http://x:1\"\n[p2p]\npersistent_peers = \"id@p:26656, id@q:26656,id@p:26656,id@[::1]:26656\"\n",
        );
        assert_eq!(servers(&params("{}"), &one_twice), from_peers);
    }

    #[test]
    fn fewer_than_two_distinct_servers_is_refused_saying_why() {
        let one_twice = params(r#"{"rpcServers": ["http://a:1", "http://a:1/"]}"#);
        match choose_servers(&one_twice, &doc("")) {
            Err(TaskError::InvalidParams(m)) => {
                assert!(m.contains("at least two different servers"), "{m}");
                assert!(m.contains("`rpcServers` gives only http://a:1"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let config = doc("[statesync]\nrpc_servers = \"http://x:1\"\n");
        assert!(matches!(
            choose_servers(&params("{}"), &config),
            Err(TaskError::InvalidParams(m)) if m.contains("[statesync] rpc_servers gives only http://x:1")
        ));
        let one_peer = doc("[p2p]\npersistent_peers = \"id@p:26656\"\n");
        assert!(matches!(
            choose_servers(&params("{}"), &one_peer),
            Err(TaskError::Transient(m)) if m.contains("more peers are discovered")
        ));
        assert!(matches!(
            choose_servers(&params("{}"), &doc("")),
            Err(TaskError::InvalidParams(m)) if m.contains("no `rpcServers` given")
        ));
    }

    #[test]
    fn trust_height_is_2000_below_latest_and_positive() {
        assert_eq!(trust_height_below(12_345), 10_345);
        assert_eq!(trust_height_below(100), 1);
    }
}
