//! GETs each of `urls` over wasi:http and returns the status code and body each server
//! sent: drives the host's HTTP allowlist and its timeout for guests waiting on the network.

use std::io::Read;

use planrt_node_common::http;
use planrt_plugin_sdk::{Context, Guest, Info, Needs, TaskError, export_plugin};
use serde_json::{Value, json};

fn urls(params: &str) -> Result<Vec<String>, String> {
    let value: Value = serde_json::from_str(params).map_err(|e| e.to_string())?;
    value
        .get("urls")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| "`urls` must be a list of URLs".to_owned())
}

/// The status and body the server sent, whatever the status.
fn fetch(url: &str) -> Result<Value, String> {
    let response = http::request(url).map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status;
    let mut body = String::new();
    response
        .take(1 << 20)
        .read_to_string(&mut body)
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok(json!({ "url": url, "status": status, "body": body }))
}

struct Fetch;

impl Guest for Fetch {
    fn describe() -> Info {
        Info {
            params_schema: r#"{"type":"object","required":["urls"]}"#.into(),
            needs: Needs {
                dirs: vec![],
                network: true,
            },
            ..Info::new("test-fetch", "0.1.0", "GETs URLs over wasi:http")
        }
    }

    fn validate(params: String) -> Result<(), String> {
        urls(&params).map(drop)
    }

    fn run(_context: Context, params: String) -> Result<String, TaskError> {
        let urls = urls(&params).map_err(TaskError::InvalidParams)?;
        let mut results = Vec::new();
        for url in &urls {
            results.push(fetch(url).map_err(TaskError::Transient)?);
        }
        Ok(json!({ "responses": results }).to_string())
    }
}

export_plugin!(Fetch);
