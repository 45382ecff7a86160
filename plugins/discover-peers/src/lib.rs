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
    Context, DirMode, DirNeed, Guest, Info, Level, Needs, TaskError, export_plugin, log,
};
use serde_json::{Value, json};

const CONFIG: &str = "/home/config/config.toml";
/// The P2P port peers found through RPC endpoints are dialled on.
pub const P2P_PORT: u16 = 26656;

/// Where peers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Addresses given as `id@host:port`.
    Static(Vec<String>),
    /// CometBFT RPC endpoints to ask for their node ID.
    Endpoints(Vec<String>),
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

/// Reads and checks params.
pub fn parse_params(params: &str) -> Result<Vec<Source>, String> {
    let value: Value =
        serde_json::from_str(params).map_err(|e| format!("params are not JSON: {e}"))?;
    let sources = value
        .get("sources")
        .and_then(Value::as_array)
        .ok_or("`sources` must be a list")?;
    if sources.is_empty() {
        return Err("`sources` is empty".into());
    }
    let strings = |v: Option<&Value>, key: &str| -> Result<Vec<String>, String> {
        let list = v
            .and_then(Value::as_array)
            .ok_or(format!("`{key}` must be a list of strings"))?;
        list.iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or(format!("`{key}` must be a list of strings"))
            })
            .collect()
    };
    sources
        .iter()
        .enumerate()
        .map(
            |(i, source)| match source.get("type").and_then(Value::as_str) {
                Some("static") => {
                    let addresses = strings(source.get("addresses"), "addresses")?;
                    if let Some(bad) = addresses.iter().find(|a| !is_peer_address(a)) {
                        return Err(format!("sources[{i}]: `{bad}` is not id@host:port"));
                    }
                    // Node IDs are hex: one spelling, so the same peer deduplicates.
                    Ok(Source::Static(
                        addresses.iter().map(|a| lowercase_id(a)).collect(),
                    ))
                }
                Some("endpoints") => {
                    let endpoints = strings(source.get("endpoints"), "endpoints")?;
                    for endpoint in &endpoints {
                        http::Url::parse(endpoint).map_err(|e| format!("sources[{i}]: {e}"))?;
                    }
                    Ok(Source::Endpoints(endpoints))
                }
                other => Err(format!(
                    "sources[{i}]: unknown type {other:?} (expected \"static\" or \"endpoints\")"
                )),
            },
        )
        .collect()
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
            Source::Static(addresses) => addresses.clone(),
            Source::Endpoints(endpoints) => endpoints
                .iter()
                .filter_map(|endpoint| match endpoint_peer(endpoint) {
                    Ok(peer) => Some(peer),
                    Err(e) => {
                        log(Level::Warn, &format!("skipping unreachable endpoint: {e}"));
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

struct DiscoverPeers;

impl Guest for DiscoverPeers {
    fn describe() -> Info {
        Info {
            task_type: "discover-peers".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Find peers (static or from RPC /status) and write them as persistent peers".into(),
            params_schema: r#"{"type":"object","required":["sources"],"properties":{"sources":{"type":"array","items":{"type":"object","required":["type"],"properties":{"type":{"enum":["static","endpoints"]},"addresses":{"type":"array","items":{"type":"string"}},"endpoints":{"type":"array","items":{"type":"string"}}}}}}}"#.into(),
            needs: Needs { dirs: vec![DirNeed { guest_path: "/home/config".into(), mode: DirMode::Rw }], network: true },
            default_timeout_ms: Some(120_000),
            default_memory_limit: Some(64 << 20),
        }
    }

    fn validate(params: String) -> Result<(), String> {
        parse_params(&params).map(drop)
    }

    fn run(_context: Context, params: String) -> Result<String, TaskError> {
        let sources = parse_params(&params).map_err(TaskError::InvalidParams)?;
        let peers = discover(&sources)?;
        let mut doc = config::load(CONFIG).map_err(TaskError::Permanent)?;
        if config::set(&mut doc, "p2p", "persistent_peers", peers.join(",")) {
            durable::write_atomically(CONFIG, doc.to_string().as_bytes())
                .map_err(|e| TaskError::Transient(format!("cannot write {CONFIG}: {e}")))?;
        }
        log(Level::Info, &format!("{} persistent peer(s)", peers.len()));
        Ok(json!({ "peers": peers }).to_string())
    }
}

export_plugin!(DiscoverPeers);

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
        assert_eq!(ok.len(), 2);
        let upper = parse_params(&format!(
            r#"{{"sources": [{{"type": "static", "addresses": ["{}@10.0.0.1:26656"]}}]}}"#,
            ID.to_ascii_uppercase()
        ))
        .unwrap();
        assert_eq!(
            upper[0],
            Source::Static(vec![format!("{ID}@10.0.0.1:26656")])
        );
        for bad in [
            r#"{"sources": []}"#,
            r#"{"sources": [{"type": "dns"}]}"#,
            r#"{"sources": [{"type": "static", "addresses": ["nope"]}]}"#,
            r#"{"sources": [{"type": "static", "addresses": ["abc@host:1"]}]}"#,
            r#"{"sources": [{"type": "endpoints", "endpoints": ["127.0.0.1:26657"]}]}"#,
        ] {
            assert!(parse_params(bad).is_err(), "{bad}");
        }
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
