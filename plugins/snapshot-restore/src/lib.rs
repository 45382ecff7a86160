//! `snapshot-restore`: restores a node's data directory from a snapshot archive
//! (docs/DESIGN.md §9).
//!
//! Params: `{baseUrl, chainId, targetHeight?, sha256?}`. The archive is
//! `{baseUrl}/{chainId}/{height}.tar.gz`, the height given or read from
//! `{baseUrl}/{chainId}/latest.txt`. It is streamed through sha256 and gzip into a staging
//! directory under `/home` (memory stays bounded whatever its size), every entry checked to
//! land inside `data/` and synced to disk, then swapped in for `/home/data` (keeping the
//! validator's `priv_validator_state.json`) in a way every attempt can finish or undo after
//! a crash ([`swap`]). The restored height is recorded in `/home/data/.planrt-snapshot.json`:
//! the same height again is a no-op.

pub mod archive;
pub mod swap;

use std::io::{self, Read};

use planrt_node_common::durable;
use planrt_node_common::http::{self, FetchError};
use planrt_plugin_sdk::{
    Context, DirMode, DirNeed, Guest, Info, Level, Needs, TaskError, export_plugin, log, progress,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use swap::{Layout, Recovery, SwapError};

const HOME: &str = "/home";
/// Where the restored height is recorded, in the data dir.
const MARKER_FILE: &str = ".planrt-snapshot.json";
const MARKER: &str = "/home/data/.planrt-snapshot.json";

const PARAMS_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["baseUrl", "chainId"],
  "additionalProperties": false,
  "properties": {
    "baseUrl": { "type": "string", "description": "http(s) URL holding {chainId}/{height}.tar.gz and {chainId}/latest.txt" },
    "chainId": { "type": "string" },
    "targetHeight": { "type": "integer", "minimum": 1, "description": "Restore this height instead of latest.txt's" },
    "sha256": { "type": "string", "description": "Expected sha256 of the archive, hex" }
  }
}"#;

/// Checked params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Where archives are.
    pub base_url: String,
    /// Chain ID (a path segment).
    pub chain_id: String,
    /// Height to restore, else latest.
    pub target_height: Option<u64>,
    /// Expected sha256, lower-case hex.
    pub sha256: Option<String>,
}

/// Reads and checks params.
pub fn parse_params(params: &str) -> Result<Params, String> {
    let value: Value =
        serde_json::from_str(params).map_err(|e| format!("params are not JSON: {e}"))?;
    let object = value.as_object().ok_or("params must be an object")?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !["baseUrl", "chainId", "targetHeight", "sha256"].contains(&k.as_str()))
    {
        return Err(format!("unknown param `{unknown}`"));
    }
    let base_url = object
        .get("baseUrl")
        .and_then(Value::as_str)
        .ok_or("`baseUrl` (a URL) is required")?;
    http::Url::parse(base_url).map_err(|e| format!("`baseUrl`: {e}"))?;
    let chain_id = object
        .get("chainId")
        .and_then(Value::as_str)
        .ok_or("`chainId` is required")?;
    if chain_id.is_empty()
        || !chain_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        || chain_id.starts_with('.')
    {
        return Err(format!(
            "`chainId` `{chain_id}` must be letters, digits, `.`, `_` or `-`"
        ));
    }
    let target_height = match object.get("targetHeight") {
        None => None,
        Some(h) => Some(
            h.as_u64()
                .filter(|h| *h > 0)
                .ok_or("`targetHeight` must be a positive integer")?,
        ),
    };
    let sha256 = match object.get("sha256") {
        None => None,
        Some(s) => {
            let s = s
                .as_str()
                .ok_or("`sha256` must be a string")?
                .to_ascii_lowercase();
            if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err("`sha256` must be 64 hex digits".into());
            }
            Some(s)
        }
    };
    Ok(Params {
        base_url: base_url.to_owned(),
        chain_id: chain_id.to_owned(),
        target_height,
        sha256,
    })
}

/// The height in `latest.txt`: a number, or an archive name `{height}.tar.gz`.
pub fn parse_latest(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let number = text.strip_suffix(".tar.gz").unwrap_or(text);
    number
        .parse::<u64>()
        .ok()
        .filter(|h| *h > 0)
        .ok_or_else(|| format!("latest.txt holds `{text}`, not a height"))
}

/// Passes bytes through while hashing them and reporting progress.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    total: Option<u64>,
    reported: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read - self.reported >= 1 << 20 || (n == 0 && self.read != self.reported) {
            self.reported = self.read;
            progress(self.read, self.total, "downloading and extracting");
        }
        Ok(n)
    }
}

fn fetch_error(what: &str, e: FetchError) -> TaskError {
    match e {
        // A height the server does not have will not appear by retrying.
        FetchError::Status(404) | FetchError::BadUrl(_) => {
            TaskError::Permanent(format!("{what}: {e}"))
        }
        _ => TaskError::Transient(format!("{what}: {e}")),
    }
}

fn io_failure(what: &str) -> impl Fn(io::Error) -> TaskError + '_ {
    move |e| TaskError::Transient(format!("{what}: {e}"))
}

fn recorded_height(chain_id: &str) -> Option<u64> {
    let marker: Value = serde_json::from_str(&std::fs::read_to_string(MARKER).ok()?).ok()?;
    (marker.get("chainId")?.as_str()? == chain_id).then(|| marker.get("height")?.as_u64())?
}

/// How a swap failure fails the task: a home in a state to refuse, or a mount point that
/// cannot be renamed, will not fix itself; other I/O errors may.
fn swap_failure(what: &str) -> impl Fn(SwapError) -> TaskError + '_ {
    move |e| match e {
        SwapError::Refused(why) => TaskError::Permanent(format!("{what}: {why}")),
        SwapError::Io(e) if e.kind() == io::ErrorKind::ResourceBusy => TaskError::Permanent(
            format!("{what}: {e} (is /home/data a mount point? grant its parent as the home)"),
        ),
        SwapError::Io(e) => TaskError::Transient(format!("{what}: {e}")),
    }
}

/// Finishes or undoes whatever a killed attempt left in the home (see [`swap`]).
fn recover(layout: &Layout) -> Result<(), TaskError> {
    let recovery = layout
        .recover()
        .map_err(swap_failure("repairing an interrupted restore"))?;
    let note = match recovery {
        Recovery::Clean => return Ok(()),
        Recovery::StagingRemoved => "removed the partial extraction of an interrupted attempt",
        Recovery::OldDataPutBack => {
            "an interrupted attempt had moved the data dir aside: it is back in place"
        }
        Recovery::SwapFinished => {
            "an interrupted attempt had swapped the new data dir in: finished its clean-up"
        }
    };
    log(Level::Warn, note);
    Ok(())
}

fn restore(params: Params) -> Result<Value, TaskError> {
    // Before anything else: a home left mid-swap by a killed attempt has no data dir.
    let layout = Layout::new(HOME);
    recover(&layout)?;
    let base = http::join(&params.base_url, &params.chain_id);
    let height = match params.target_height {
        Some(height) => height,
        None => {
            let url = http::join(&base, "latest.txt");
            let text = http::get_text(&url, 4096).map_err(|e| fetch_error(&url, e))?;
            parse_latest(&text).map_err(TaskError::Permanent)?
        }
    };
    if recorded_height(&params.chain_id) == Some(height) {
        log(
            Level::Info,
            &format!("height {height} of {} is already restored", params.chain_id),
        );
        return Ok(json!({ "height": height, "restored": false }));
    }

    let url = http::join(&base, &format!("{height}.tar.gz"));
    log(Level::Info, &format!("restoring {url}"));
    let response = http::get(&url).map_err(|e| fetch_error(&url, e))?;
    let total = response.content_length;
    let mut hashing = Hashing {
        inner: response,
        hasher: Sha256::new(),
        read: 0,
        total,
        reported: 0,
    };
    layout
        .prepare_staging()
        .map_err(io_failure("creating the staging dir"))?;
    let extracted = {
        let mut gunzip = flate2::read::GzDecoder::new(&mut hashing);
        let extracted = archive::extract(&mut gunzip, &layout.staging()).map_err(|e| match e {
            archive::ExtractError::Hostile { .. } => TaskError::Permanent(e.to_string()),
            archive::ExtractError::Io(_) => TaskError::Transient(format!("{url}: {e}")),
        })?;
        // Read the gzip trailer and anything after the tar end, so the hash covers it all.
        io::copy(&mut gunzip, &mut io::sink()).map_err(io_failure(&url))?;
        extracted
    };
    io::copy(&mut hashing, &mut io::sink()).map_err(io_failure(&url))?;
    let digest = hex::encode(hashing.hasher.finalize());
    if let Some(expected) = &params.sha256
        && *expected != digest
    {
        layout
            .discard_staging()
            .map_err(io_failure("removing the staging dir"))?;
        return Err(TaskError::Transient(format!(
            "{url}: sha256 is {digest}, expected {expected}"
        )));
    }
    if !layout.staged_data().is_dir() {
        return Err(TaskError::Permanent(format!(
            "{url} holds no data/ directory"
        )));
    }
    // The marker goes in with the data (replacing any the archive brought), so the
    // restored height is recorded exactly when the data is in place.
    let marker =
        json!({ "chainId": params.chain_id, "height": height, "sha256": digest, "url": url });
    durable::write_atomically(
        layout.staged_data().join(MARKER_FILE),
        marker.to_string().as_bytes(),
    )
    .map_err(io_failure("recording the restored height"))?;
    layout
        .swap_in()
        .map_err(swap_failure("swapping the restored data dir in"))?;
    Ok(json!({
        "height": height,
        "restored": true,
        "url": url,
        "sha256": digest,
        "bytes": hashing.read,
        "files": extracted.files,
    }))
}

struct SnapshotRestore;

impl Guest for SnapshotRestore {
    fn describe() -> Info {
        Info {
            task_type: "snapshot-restore".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Restore /home/data from a snapshot archive over HTTP".into(),
            params_schema: PARAMS_SCHEMA.into(),
            needs: Needs {
                dirs: vec![DirNeed {
                    guest_path: HOME.into(),
                    mode: DirMode::Rw,
                }],
                network: true,
            },
            default_timeout_ms: Some(6 * 60 * 60 * 1000),
            default_memory_limit: Some(256 << 20),
        }
    }

    fn validate(params: String) -> Result<(), String> {
        parse_params(&params).map(drop)
    }

    fn run(_context: Context, params: String) -> Result<String, TaskError> {
        let params = parse_params(&params).map_err(TaskError::InvalidParams)?;
        restore(params).map(|output| output.to_string())
    }
}

export_plugin!(SnapshotRestore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked() {
        let ok = parse_params(
            r#"{"baseUrl": "http://127.0.0.1:8080/snaps", "chainId": "sei-1", "targetHeight": 7}"#,
        )
        .unwrap();
        assert_eq!((ok.chain_id.as_str(), ok.target_height), ("sei-1", Some(7)));
        for bad in [
            r#"{"chainId": "x"}"#,
            r#"{"baseUrl": "ftp://x", "chainId": "x"}"#,
            r#"{"baseUrl": "http://x", "chainId": "../x"}"#,
            r#"{"baseUrl": "http://x", "chainId": "a/b"}"#,
            r#"{"baseUrl": "http://x", "chainId": "x", "targetHeight": 0}"#,
            r#"{"baseUrl": "http://x", "chainId": "x", "sha256": "abc"}"#,
            r#"{"baseUrl": "http://x", "chainId": "x", "extra": 1}"#,
        ] {
            assert!(parse_params(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn latest_txt_holds_a_height_or_an_archive_name() {
        assert_eq!(parse_latest("1234\n"), Ok(1234));
        assert_eq!(parse_latest("1234.tar.gz"), Ok(1234));
        assert!(parse_latest("soon").is_err());
        assert!(parse_latest("0").is_err());
    }
}
