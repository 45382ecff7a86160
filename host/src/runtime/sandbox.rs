//! The per-attempt store state: WASI context with only the granted preopens, captured
//! stdio, a memory limiter that records a hit, the HTTP gate and the host imports.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, format_err};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::planrt::task::{host, types};
use super::guest_log::{GuestLevel, GuestLog};
use crate::plan::http_allow::allowed;
use crate::plan::{HttpAllow, Redactor};

/// A directory mounted into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// Host directory.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// Whether the guest may write.
    pub writable: bool,
}

/// Receives progress reports of running attempts.
pub trait ProgressSink: Send + Sync {
    /// `done` of `total` units, with a short note.
    fn progress(&self, done: u64, total: Option<u64>, note: &str);
}

/// Caps the memory of all linear memories of one store together, and remembers
/// whether the cap was hit so the failure is reported as `memory-limit`.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: u64,
    used: u64,
    hit: bool,
}

/// Most table elements one store may hold: far above what real guests use.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory in total.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            hit: false,
        }
    }

    /// Whether a growth was refused.
    pub fn hit(&self) -> bool {
        self.hit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.used - current as u64 + desired as u64;
        if next > self.limit {
            self.hit = true;
            return Err(format_err!(
                "memory limit of {} reached (growing to {} bytes)",
                crate::plan::units::format_size(self.limit),
                next
            ));
        }
        self.used = next;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Outgoing HTTP gate: requests to hosts on the plan's allowlist go out through
/// wasmtime-wasi-http's client; every other one is denied and its authority recorded, so
/// the attempt fails `http-denied` whatever the plugin returns.
#[derive(Debug, Clone)]
pub struct HttpGate {
    allow: Arc<[HttpAllow]>,
    denied: Arc<Mutex<Vec<String>>>,
    redactor: Redactor,
}

impl HttpGate {
    /// A gate letting through what `allow` allows; a denied host that is part of a secret
    /// is recorded and logged as `***`.
    pub fn new(allow: Arc<[HttpAllow]>, redactor: Redactor) -> Self {
        Self {
            allow,
            denied: Arc::default(),
            redactor,
        }
    }

    /// Authorities of the requests denied so far.
    pub fn denied(&self) -> Vec<String> {
        self.denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

type BoxedIo = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: BoxedIo,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    BoxedIo,
                )>,
            > + Send,
    > {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        if !allowed(&self.allow, &authority, https) {
            // Never userinfo (`user:password@`), and never a piece of a secret.
            let host = authority.rsplit_once('@').map_or(&*authority, |(_, h)| h);
            let shown = if self.redactor.is_part_of_secret(host) {
                crate::plan::redact::MASK.to_owned()
            } else {
                self.redactor.redact(host).into_owned()
            };
            tracing::warn!(
                authority = shown,
                "HTTP request denied: not in the plan's [grants] http"
            );
            self.denied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(shown);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as BoxedIo))
        })
    }
}

/// What one call's sandbox is made of. The default grants nothing: no directories, no
/// HTTP, output into a fresh log with no secrets to mask.
#[derive(Default)]
pub struct Sandbox {
    /// Granted directories.
    pub preopens: Vec<Preopen>,
    /// Hosts the guest may reach over HTTP.
    pub http: Arc<[HttpAllow]>,
    /// Where stdout, stderr and log lines go (it masks the plan's secrets).
    pub log: GuestLog,
    /// Where progress reports go.
    pub progress: Option<Arc<dyn ProgressSink>>,
}

/// Everything a store of one attempt (or one `describe`/`validate` call) holds.
pub struct AttemptState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_gate: HttpGate,
    table: ResourceTable,
    limiter: MemoryLimiter,
    log: GuestLog,
    progress: Option<Arc<dyn ProgressSink>>,
}

impl AttemptState {
    /// A sandbox with exactly `preopens`, stdio captured into its log, no environment,
    /// no network beyond the HTTP gate, and a memory limit of `memory_limit` bytes.
    pub fn new(sandbox: Sandbox, memory_limit: u64) -> Result<Self, std::io::Error> {
        let Sandbox {
            preopens,
            http,
            log,
            progress,
        } = sandbox;
        let http_gate = HttpGate::new(http, log.redactor().clone());
        let mut builder = WasiCtx::builder();
        builder.stdout(log.stdout()).stderr(log.stderr());
        for preopen in &preopens {
            let perms = if preopen.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder
                .preopened_dir(&preopen.host, &preopen.guest, perms)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", preopen.host.display())))?;
        }
        Ok(Self {
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            http_gate,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            log,
            progress,
        })
    }

    /// The memory limiter, for `Store::limiter`.
    pub fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    /// Whether the memory limit was hit.
    pub fn memory_limit_hit(&self) -> bool {
        self.limiter.hit()
    }

    /// Authorities of denied HTTP requests.
    pub fn denied_requests(&self) -> Vec<String> {
        self.http_gate.denied()
    }
}

impl WasiView for AttemptState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for AttemptState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_gate,
        }
    }
}

impl types::Host for AttemptState {}

impl host::Host for AttemptState {
    fn log(&mut self, level: host::Level, message: String) {
        let level = match level {
            host::Level::Trace => GuestLevel::Trace,
            host::Level::Debug => GuestLevel::Debug,
            host::Level::Info => GuestLevel::Info,
            host::Level::Warn => GuestLevel::Warn,
            host::Level::Error => GuestLevel::Error,
        };
        self.log.log(level, &message);
    }

    fn progress(&mut self, done: u64, total: Option<u64>, note: String) {
        let note = self.log.redactor().redact_string(note);
        tracing::debug!(target: "planrt::plugin", done, total, "progress: {note}");
        if let Some(sink) = &self.progress {
            sink.progress(done, total, &note);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_sums_memories_and_records_the_hit() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(
            limiter.memory_growing(0, 40, None).unwrap(),
            "a second memory fits exactly"
        );
        assert!(!limiter.hit());
        let err = limiter.memory_growing(40, 41, None).unwrap_err();
        assert!(
            err.to_string().contains("memory limit of 100B reached"),
            "{err}"
        );
        assert!(limiter.hit());
        assert!(
            limiter.memory_growing(60, 60, None).unwrap(),
            "no growth is fine"
        );
    }
}
