//! `discover-peers`: finds peers and writes them as the node's persistent peers
//! (docs/DESIGN.md §9, as the reference sidecar).
//!
//! Params: `{sources: [{type: "static", addresses: ["id@host:port", …]},
//! {type: "endpoints", endpoints: ["http://host:26657", …]}]}`. An endpoint's peer is
//! `{result.node_info.id of GET /status}@{its host}:26656`; unreachable endpoints are
//! skipped; a source that yields no peer fails the attempt `transient`. Peers are
//! deduplicated and written to `[p2p] persistent_peers` of `/home/config/config.toml` in
//! the file's own key style.

use planrt_node_common::{config, durable, http};
use planrt_plugin_sdk::{
    Context, DirMode, DirNeed, Info, Needs, Task, TaskError, export_task, log,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

const CONFIG: &str = "/home/config/config.toml";
/// The P2P port peers found through RPC endpoints are dialled on.
pub const P2P_PORT: u16 = 26656;

/// Where to find peers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// Where peers come from, in order: each must yield at least one peer
    pub sources: Vec<Source>,
}

/// Where peers come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = type_enum)]
pub enum Source {
    /// Peers given as they are
    Static {
        /// Addresses as `id@host:port`, with a 40-hex-digit node ID
        addresses: Vec<String>,
    },
    /// CometBFT RPC endpoints whose GET /status names the peer `{id}@{host}:26656`
    Endpoints {
        /// http(s) URLs of the RPC endpoints
        endpoints: Vec<String>,
    },
}

/// Adds `type` (one of the variants' tags) to the schema of the whole union, so a source
/// of an unknown type is reported at `/sources/N/type` as not one of them, not only as
/// matching no variant.
fn type_enum(schema: &mut schemars::Schema) {
    let tags: Vec<Value> = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|variant| variant.pointer("/properties/type/const").cloned())
        .collect();
    schema.insert("type".into(), json!("object"));
    schema.insert("required".into(), json!(["type"]));
    schema.insert(
        "properties".into(),
        json!({ "type": { "type": "string", "enum": tags } }),
    );
}

impl Params {
    /// What the schema cannot say: at least one source, addresses as `id@host:port`,
    /// endpoints as http(s) URLs.
    pub fn check(&self) -> Result<(), String> {
        if self.sources.is_empty() {
            return Err("`sources` is empty".into());
        }
        for (i, source) in self.sources.iter().enumerate() {
            match source {
                Source::Static { addresses } => {
                    if let Some(bad) = addresses.iter().find(|a| !is_peer_address(a)) {
                        return Err(format!("sources[{i}]: `{bad}` is not id@host:port"));
                    }
                }
                Source::Endpoints { endpoints } => {
                    for endpoint in endpoints {
                        http::Url::parse(endpoint).map_err(|e| format!("sources[{i}]: {e}"))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The params with node IDs in lower case: node IDs are hex, one spelling, so the
    /// same peer deduplicates.
    pub fn normalized(self) -> Self {
        let sources = self
            .sources
            .into_iter()
            .map(|source| match source {
                Source::Static { addresses } => Source::Static {
                    addresses: addresses.iter().map(|a| lowercase_id(a)).collect(),
                },
                endpoints => endpoints,
            })
            .collect();
        Self { sources }
    }
}

fn is_node_id(id: &str) -> bool {
    id.len() == 40 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether `address` is `id@host:port` with a 40-hex-digit ID.
pub fn is_peer_address(address: &str) -> bool {
    let Some((id, host_port)) = address.split_once('@') else {
        return false;
    };
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return false;
    };
    is_node_id(id) && !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// `id@host:port` with the ID in lower case.
fn lowercase_id(address: &str) -> String {
    match address.split_once('@') {
        Some((id, rest)) => format!("{}@{rest}", id.to_ascii_lowercase()),
        None => address.to_owned(),
    }
}

/// Reads and checks params (node IDs in lower case).
pub fn parse_params(params: &str) -> Result<Params, String> {
    let params: Params = planrt_plugin_sdk::parse_params(params)?;
    params.check()?;
    Ok(params.normalized())
}

/// The peer an RPC endpoint stands for, from its `/status`.
fn endpoint_peer(endpoint: &str) -> Result<String, String> {
    let url = http::join(endpoint, "status");
    let status = http::get_json(&url).map_err(|e| format!("{url}: {e}"))?;
    let id = status
        .pointer("/result/node_info/id")
        .and_then(Value::as_str)
        .filter(|id| is_node_id(id))
        .ok_or_else(|| format!("{url}: no result.node_info.id"))?;
    let host = http::Url::parse(endpoint)
        .map_err(|e| e.to_string())?
        .host()
        .to_owned();
    // An IPv6 address keeps its brackets, as CometBFT writes it: `id@[::1]:26656`.
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!("{}@{host}:{P2P_PORT}", id.to_ascii_lowercase()))
}

/// Adds `peer` unless present.
fn push_unique(peers: &mut Vec<String>, peer: String) {
    if !peers.contains(&peer) {
        peers.push(peer);
    }
}

fn discover(sources: &[Source]) -> Result<Vec<String>, TaskError> {
    let mut peers = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let found: Vec<String> = match source {
            Source::Static { addresses } => addresses.clone(),
            Source::Endpoints { endpoints } => endpoints
                .iter()
                .filter_map(|endpoint| match endpoint_peer(endpoint) {
                    Ok(peer) => Some(peer),
                    Err(e) => {
                        log!(Warn, "skipping unreachable endpoint: {e}");
                        None
                    }
                })
                .collect(),
        };
        if found.is_empty() {
            return Err(TaskError::Transient(format!(
                "sources[{i}] yielded no peer"
            )));
        }
        found.into_iter().for_each(|p| push_unique(&mut peers, p));
    }
    Ok(peers)
}

/// The task type.
pub struct DiscoverPeers;

impl Task for DiscoverPeers {
    type Params = Params;
    type Output = Value;

    fn info() -> Info {
        Info {
            needs: Needs {
                dirs: vec![DirNeed {
                    guest_path: "/home/config".into(),
                    mode: DirMode::Rw,
                }],
                network: true,
            },
            default_timeout_ms: Some(120_000),
            default_memory_limit: Some(64 << 20),
            ..Info::new(
                "discover-peers",
                env!("CARGO_PKG_VERSION"),
                "Find peers (static or from RPC /status) and write them as persistent peers",
            )
        }
    }

    fn validate(params: &Params) -> Result<(), String> {
        params.check()
    }

    fn run(_context: Context, params: Params) -> Result<Value, TaskError> {
        let peers = discover(&params.normalized().sources)?;
        let mut doc = config::load(CONFIG).map_err(TaskError::Permanent)?;
        if config::set(&mut doc, "p2p", "persistent_peers", peers.join(",")) {
            durable::write_atomically(CONFIG, doc.to_string().as_bytes())
                .map_err(|e| TaskError::Transient(format!("cannot write {CONFIG}: {e}")))?;
        }
        log!(Info, "{} persistent peer(s)", peers.len());
        Ok(json!({ "peers": peers }))
    }
}

export_task!(DiscoverPeers);

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn params_are_checked() {
        let ok = parse_params(&format!(
            r#"{{"sources": [{{"type": "static", "addresses": ["{ID}@10.0.0.1:26656"]}}, {{"type": "endpoints", "endpoints": ["http://127.0.0.1:26657"]}}]}}"#
        ))
        .unwrap();
        assert_eq!(ok.sources.len(), 2);
        let upper = parse_params(&format!(
            r#"{{"sources": [{{"type": "static", "addresses": ["{}@10.0.0.1:26656"]}}]}}"#,
            ID.to_ascii_uppercase()
        ))
        .unwrap();
        assert_eq!(
            upper.sources[0],
            Source::Static {
                addresses: vec![format!("{ID}@10.0.0.1:26656")]
            }
        );
        for bad in [
            r#"{"sources": []}"#,
            r#"{"sources": [{"type": "dns"}]}"#,
            r#"{"sources": [{"type": "static", "addresses": ["nope"]}]}"#,
            r#"{"sources": [{"type": "static", "addresses": ["abc@host:1"]}]}"#,
            r#"{"sources": [{"type": "endpoints", "endpoints": ["127.0.0.1:26657"]}]}"#,
            r#"{"sources": [{"type": "static"}]}"#,
            r#"{"sources": [{"type": "static", "addresses": [1]}]}"#,
            r#"{"sources": [{"type": "endpoints", "endpoints": [], "addresses": []}]}"#,
            r#"{"sources": [], "extra": 1}"#,
            r#"{}"#,
        ] {
            assert!(parse_params(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_params(r#"{"sources": [{"type": "static", "addresses": ["nope"]}]}"#)
                .unwrap_err(),
            "sources[0]: `nope` is not id@host:port"
        );
        assert_eq!(
            parse_params(r#"{"sources": []}"#).unwrap_err(),
            "`sources` is empty"
        );
    }

    #[test]
    fn the_schema_says_what_the_old_one_said() {
        let schema: Value =
            serde_json::from_str(&planrt_plugin_sdk::params_schema::<Params>()).unwrap();
        assert_eq!(schema["required"], json!(["sources"]));
        assert_eq!(schema["properties"]["sources"]["type"], "array");
        let text = schema.to_string();
        for word in ["\"static\"", "\"endpoints\"", "addresses"] {
            assert!(text.contains(word), "{word}: {text}");
        }
        let source = &schema["$defs"]["Source"];
        assert_eq!(source["required"], json!(["type"]));
        assert_eq!(
            source["properties"]["type"]["enum"],
            json!(["static", "endpoints"])
        );
    }

    #[test]
    fn peers_are_deduplicated_in_order() {
        let mut peers = vec![];
        for p in ["b", "a", "b", "c", "a"] {
            push_unique(&mut peers, p.to_owned());
        }
        assert_eq!(peers, ["b", "a", "c"]);
        assert!(is_peer_address(&format!("{ID}@node-1.example.com:26656")));
        assert!(!is_peer_address(&format!("{ID}@:26656")));
    }
}
