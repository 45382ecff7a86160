//! `snapshot-restore`: restores a node's data directory from a snapshot archive
//! (docs/DESIGN.md §9).
//!
//! Params: `{baseUrl, chainId, targetHeight?, sha256?}`. The archive is
//! `{baseUrl}/{chainId}/{height}.tar.gz`, the height given or read from
//! `{baseUrl}/{chainId}/latest.txt`. It is streamed through sha256 and gzip (both run by
//! the host at native speed: `planrt:task@0.3.0`'s `digest` and `compression`) into a staging
//! directory under `/home` (memory stays bounded whatever its size), every entry checked to
//! land inside `data/` and synced to disk, then swapped in for `/home/data` (keeping the
//! validator's `priv_validator_state.json`) in a way every attempt can finish or undo after
//! a crash ([`swap`]). The restored height is recorded in the task type's kv store
//! once the data is in place: the same height again, with the data
//! dir still there, is a no-op. The snapshot's provenance also lands in the data dir
//! (`.planrt-snapshot.json`), for `configure-state-sync` and operators.

pub mod archive;
pub mod swap;

use std::io::{self, Read};

use planrt_node_common::durable;
use planrt_node_common::http::{self, FetchError};
use planrt_plugin_sdk::codec::{DecodeReader, Format, Hasher};
use planrt_plugin_sdk::{
    Context, DirMode, DirNeed, Info, Needs, Task, TaskError, cancelled, export_task, kv_delete,
    kv_get, kv_set, log, progress_bytes,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use swap::{Layout, Recovery, SwapError};

const HOME: &str = "/home";
/// The restored snapshot's provenance, `{chainId, height, sha256, restoreId}`, written into
/// the data dir so it lands with the data (no URL: `baseUrl` may be a secret). It is what
/// decides whether a height is restored — it reaches the data dir only by the rename
/// that puts the data in place — and what `configure-state-sync` reads for
/// `useLocalSnapshot`.
const PROVENANCE_FILE: &str = ".planrt-snapshot.json";
const PROVENANCE: &str = "/home/data/.planrt-snapshot.json";
const DATA: &str = "/home/data";

/// What a restore put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Restored {
    height: u64,
    sha256: String,
}

impl Restored {
    fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            height: value.get("height")?.as_u64()?,
            sha256: value.get("sha256")?.as_str()?.to_owned(),
        })
    }

    fn to_json(&self) -> Value {
        json!({ "height": self.height, "sha256": self.sha256 })
    }
}

/// The kv key of the record of restore `restore_id` of `chain_id`: the task type's own
/// account of the restores whose data is in place in some node home (an audit record,
/// deleted when that data is replaced by another restore). It decides nothing: a record
/// in planrt's state cannot prove what a node home holds (a home may be restored with
/// another state dir, or share this one with other homes).
fn record_key(chain_id: &str, restore_id: &str) -> String {
    format!("restored/{chain_id}/{restore_id}")
}

/// Where the archive is, and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// http(s) URL holding {chainId}/{height}.tar.gz and {chainId}/latest.txt
    pub base_url: String,
    /// Chain ID (a path segment under baseUrl): letters, digits, `.`, `_` or `-`
    pub chain_id: String,
    /// Restore this height instead of latest.txt's
    #[schemars(range(min = 1))]
    pub target_height: Option<u64>,
    /// Expected sha256 of the archive, hex
    pub sha256: Option<String>,
}

impl Params {
    /// What the schema cannot say: an http(s) URL, a chain ID that is one safe path
    /// segment, a positive height, 64 hex digits.
    pub fn check(&self) -> Result<(), String> {
        http::Url::parse(&self.base_url).map_err(|e| format!("`baseUrl`: {e}"))?;
        let chain_id = &self.chain_id;
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
        if self.target_height == Some(0) {
            return Err("`targetHeight` must be a positive integer".into());
        }
        if let Some(s) = &self.sha256
            && (s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err("`sha256` must be 64 hex digits".into());
        }
        Ok(())
    }

    /// The params with `sha256` in lower case, as digests are compared.
    pub fn normalized(self) -> Self {
        Self {
            sha256: self.sha256.map(|s| s.to_ascii_lowercase()),
            ..self
        }
    }
}

/// Reads and checks params (`sha256` in lower case).
pub fn parse_params(params: &str) -> Result<Params, String> {
    let params: Params = planrt_plugin_sdk::parse_params(params)?;
    params.check()?;
    Ok(params.normalized())
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

/// Passes the download through, reporting its progress.
struct Downloading<R> {
    inner: R,
    read: u64,
    total: Option<u64>,
    reported: u64,
}

impl<R: Read> Read for Downloading<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.reported >= 1 << 20 || (n == 0 && self.read != self.reported) {
            self.reported = self.read;
            progress_bytes(self.read, self.total, "downloading and extracting");
            // Asked once per MiB read (one host call, like the progress report), so a
            // cancel or a shutdown finds the extraction between two writes, with the grace
            // to stop there (the next attempt discards the staging dir).
            if cancelled() {
                return Err(io::Error::other(
                    "stopped: planrt is cancelling this attempt",
                ));
            }
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

/// Whether the data dir holds node data: anything but what a reset keeps
/// ([`swap::KEEP_FILES`]) and the provenance file.
fn has_node_data() -> bool {
    std::fs::read_dir(DATA).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name != PROVENANCE_FILE && !swap::KEEP_FILES.contains(&name.as_ref())
        })
    })
}

/// The provenance file of the data dir, if it is about `chain_id`: what it says is
/// restored, and the ID of the restore that wrote it (none for planrt before 0.2).
fn provenance(chain_id: &str) -> Option<(Restored, Option<String>)> {
    let marker: Value = serde_json::from_str(&std::fs::read_to_string(PROVENANCE).ok()?).ok()?;
    if marker.get("chainId")?.as_str()? != chain_id {
        return None;
    }
    let restore_id = marker
        .get("restoreId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some((Restored::from_json(&marker)?, restore_id))
}

/// What is restored for `chain_id` in the data dir as it is now (after `recover`): its
/// provenance file, if the dir holds node data (a dir that is missing, or holds nothing
/// but what a reset keeps, has nothing restored).
fn recorded(chain_id: &str) -> Option<(Restored, Option<String>)> {
    has_node_data().then(|| provenance(chain_id)).flatten()
}

/// The chain and restore ID the data dir's provenance file names, whatever the chain (the
/// restore a new one replaces).
fn provenance_id() -> Option<(String, String)> {
    let marker: Value = serde_json::from_str(&std::fs::read_to_string(PROVENANCE).ok()?).ok()?;
    Some((
        marker.get("chainId")?.as_str()?.to_owned(),
        marker.get("restoreId")?.as_str()?.to_owned(),
    ))
}

/// Records restore `restore_id` in the kv store (best effort: the data is in place
/// already, so a kv failure is logged, never the attempt's failure).
fn record_restore(chain_id: &str, restore_id: &str, restored: &Restored) {
    let recorded = kv_set(
        &record_key(chain_id, restore_id),
        restored.to_json().to_string().as_bytes(),
    );
    if let Err(e) = recorded {
        log!(Warn, "could not record the restore in the kv store: {e:?}");
    }
}

/// Deletes the record of the restore whose data was replaced (best effort, on its own:
/// whether or not the new record could be written).
fn forget_restore(replaced: Option<(String, String)>, restore_id: &str) {
    if let Some((chain, old)) = replaced.filter(|(_, old)| old != restore_id)
        && let Err(e) = kv_delete(&record_key(&chain, &old))
    {
        log!(
            Warn,
            "could not delete the record of the replaced restore: {e:?}"
        );
    }
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
    log!(Warn, "{note}");
    Ok(())
}

fn restore(params: Params, restore_id: &str) -> Result<Value, TaskError> {
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
    if let Some((restored, id)) = recorded(&params.chain_id)
        && restored.height == height
        && params.sha256.as_ref().is_none_or(|s| *s == restored.sha256)
    {
        // The data is in place; its record may be missing (a crash between the swap and
        // the kv write, a failed write): write it now.
        if let Some(id) = id
            && kv_get(&record_key(&params.chain_id, &id)).is_ok_and(|r| r.is_none())
        {
            record_restore(&params.chain_id, &id, &restored);
        }
        log!(
            Info,
            "height {height} of {} is already restored",
            params.chain_id
        );
        return Ok(json!({ "height": height, "restored": false }));
    }

    let url = http::join(&base, &format!("{height}.tar.gz"));
    log!(Info, "restoring {url}");
    let response = http::get(&url).map_err(|e| fetch_error(&url, e))?;
    let total = response.content_length;
    let mut download = Downloading {
        inner: response,
        read: 0,
        total,
        reported: 0,
    };
    let mut hasher = Hasher::sha256();
    layout
        .prepare_staging()
        .map_err(io_failure("creating the staging dir"))?;
    let extracted = {
        let mut gunzip = DecodeReader::new(hasher.tee(&mut download), Format::Gzip);
        let extracted = archive::extract(&mut gunzip, &layout.staging()).map_err(|e| match e {
            archive::ExtractError::Hostile { .. } => TaskError::Permanent(e.to_string()),
            archive::ExtractError::Io(_) => TaskError::Transient(format!("{url}: {e}")),
        })?;
        // Read past the tar end to the end of the download (the decoder checks the gzip
        // trailer there), so the hash covers it all.
        io::copy(&mut gunzip, &mut io::sink()).map_err(io_failure(&url))?;
        extracted
    };
    let digest = hex::encode(hasher.finish());
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
    // The provenance goes in with the data (replacing any the archive brought).
    let provenance = json!({
        "chainId": params.chain_id,
        "height": height,
        "sha256": digest,
        "restoreId": restore_id,
    });
    durable::write_atomically(
        layout.staged_data().join(PROVENANCE_FILE),
        provenance.to_string().as_bytes(),
    )
    .map_err(io_failure("recording the snapshot's provenance"))?;
    let replaced = provenance_id();
    layout
        .swap_in()
        .map_err(swap_failure("swapping the restored data dir in"))?;
    let restored = Restored {
        height,
        sha256: digest.clone(),
    };
    forget_restore(replaced, restore_id);
    record_restore(&params.chain_id, restore_id, &restored);
    Ok(json!({
        "height": height,
        "restored": true,
        "url": url,
        "sha256": digest,
        "bytes": download.read,
        "files": extracted.files,
    }))
}

/// The task type.
pub struct SnapshotRestore;

impl Task for SnapshotRestore {
    type Params = Params;
    type Output = Value;

    fn info() -> Info {
        Info {
            needs: Needs {
                dirs: vec![DirNeed {
                    guest_path: HOME.into(),
                    mode: DirMode::Rw,
                }],
                network: true,
            },
            default_timeout_ms: Some(6 * 60 * 60 * 1000),
            default_memory_limit: Some(256 << 20),
            ..Info::new(
                "snapshot-restore",
                env!("CARGO_PKG_VERSION"),
                "Restore /home/data from a snapshot archive over HTTP",
            )
        }
    }

    fn validate(params: &Params) -> Result<(), String> {
        params.check()
    }

    fn run(context: Context, params: Params) -> Result<Value, TaskError> {
        // Unique per attempt of every task: names the restore in the data and in kv.
        let restore_id = format!("{}.{}", context.task_id, context.attempt);
        restore(params.normalized(), &restore_id)
    }
}

export_task!(SnapshotRestore);

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
            r#"{"baseUrl": "http://x", "chainId": "x", "sha256": 7}"#,
            r#"{"baseUrl": "http://x", "chainId": ".x"}"#,
            r#"{"baseUrl": "http://x", "chainId": ""}"#,
        ] {
            assert!(parse_params(bad).is_err(), "{bad}");
        }
        assert!(
            parse_params(r#"{"baseUrl": "http://x", "chainId": "x", "extra": 1}"#)
                .unwrap_err()
                .starts_with("unknown field `extra`")
        );
        assert!(
            parse_params(r#"{"baseUrl": "ftp://x", "chainId": "x"}"#)
                .unwrap_err()
                .starts_with("`baseUrl`: ")
        );
        assert_eq!(
            parse_params(r#"{"baseUrl": "http://x", "chainId": "a/b"}"#).unwrap_err(),
            "`chainId` `a/b` must be letters, digits, `.`, `_` or `-`"
        );
    }

    #[test]
    fn sha256_is_64_hex_digits_compared_in_lower_case() {
        let upper = "AB".repeat(32);
        let params = parse_params(&format!(
            r#"{{"baseUrl": "http://x", "chainId": "x", "sha256": "{upper}"}}"#
        ))
        .unwrap();
        assert_eq!(params.sha256, Some("ab".repeat(32)));
        assert_eq!(
            parse_params(r#"{"baseUrl": "http://x", "chainId": "x", "sha256": "abc"}"#)
                .unwrap_err(),
            "`sha256` must be 64 hex digits"
        );
    }

    #[test]
    fn the_schema_says_what_the_old_one_said() {
        let schema: Value =
            serde_json::from_str(&planrt_plugin_sdk::params_schema::<Params>()).unwrap();
        assert_eq!(schema["required"], json!(["baseUrl", "chainId"]));
        assert_eq!(schema["additionalProperties"], false);
        let properties = &schema["properties"];
        assert_eq!(properties["targetHeight"]["minimum"], 1);
        for key in ["baseUrl", "chainId", "targetHeight", "sha256"] {
            assert!(properties[key]["description"].is_string(), "{key}");
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
