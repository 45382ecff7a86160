//! Outgoing HTTP: only a plugin that declares `network` may make requests, and only to
//! the plan's allowlist (`[grants] http`). The gate sits in wasmtime-wasi-http's
//! `send_request` hook: an allowed request goes out through its client, any other is
//! denied and recorded, and the attempt fails `http-denied` whatever the plugin returns.

use std::sync::{Arc, Mutex};

use wasmtime::component::Linker;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::effects::{EffectGate, effects_allowed};
use super::{AttemptSetup, CallEnd, Capability, Refusal, Sandbox, TaskRequest};
use crate::plan::http_allow::allowed;
use crate::plan::{HttpAllow, Redactor};
use crate::runtime::error::AttemptError;
use crate::runtime::state::AttemptState;

/// The hosts a task may reach (its sandbox part; absent or empty: none).
#[derive(Debug, Clone, Default)]
pub struct Allowlist(pub Arc<[HttpAllow]>);

/// The HTTP capability.
#[derive(Debug, Clone, Copy)]
pub struct Http;

impl Capability for Http {
    fn rank(&self) -> u8 {
        super::rank::CONFIGURATION
    }

    fn init(&self, linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
    }

    fn configure(&self, task: &TaskRequest<'_>, sandbox: &mut Sandbox) -> Result<(), Refusal> {
        // Deny by default: only a plugin that declares `network` gets the allowlist.
        if task.info.network {
            if task.grants.http.is_empty() {
                return Err(Refusal::NotGranted(
                    "network (outgoing HTTP), but the plan's [grants] http allows no host".into(),
                ));
            }
            sandbox.insert(Allowlist(Arc::from(task.grants.http.as_slice())));
        }
        Ok(())
    }

    fn prepare(&self, sandbox: &Sandbox, setup: &mut AttemptSetup<'_>) -> Result<(), AttemptError> {
        let allow = sandbox.get::<Allowlist>().cloned().unwrap_or_default();
        let effects = setup.inputs.get::<EffectGate>().cloned();
        setup
            .parts
            .insert(HttpGate::new(allow.0, setup.inputs.redactor()).after(effects));
        Ok(())
    }

    fn conclude(
        &self,
        _sandbox: &Sandbox,
        state: &AttemptState,
        _end: &CallEnd<'_>,
    ) -> Option<AttemptError> {
        let denied = state.part::<HttpGate>()?.denied();
        (!denied.is_empty()).then_some(AttemptError::HttpDenied {
            authorities: denied,
        })
    }
}

/// One call's gate (its store part).
#[derive(Debug, Clone)]
pub struct HttpGate {
    allow: Arc<[HttpAllow]>,
    denied: Arc<Mutex<Vec<String>>>,
    redactor: Redactor,
    /// What a request (or a denial's log line) waits for first.
    effects: Option<EffectGate>,
}

impl HttpGate {
    /// A gate letting through what `allow` allows; a denied host that is part of a secret
    /// is recorded and logged as `***`.
    pub fn new(allow: Arc<[HttpAllow]>, redactor: Redactor) -> Self {
        Self {
            allow,
            denied: Arc::default(),
            redactor,
            effects: None,
        }
    }

    /// This gate, with every request waiting for `effects` before it leaves.
    pub fn after(self, effects: Option<EffectGate>) -> Self {
        Self { effects, ..self }
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
        request: ::http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: BoxedIo,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    ::http::Response<wasmtime_wasi_http::WasiBody>,
                    BoxedIo,
                )>,
            > + Send,
    > {
        let effects = self.effects.clone();
        let uri = request.uri();
        let https = uri.scheme() == Some(&::http::uri::Scheme::HTTPS);
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        if !allowed(&self.allow, &authority, https) {
            // Never userinfo (`user:password@`), and never a piece of a secret.
            let host = authority.rsplit_once('@').map_or(&*authority, |(_, h)| h);
            let shown = if self.redactor.is_part_of_secret(host) {
                crate::plan::redact::MASK.to_owned()
            } else {
                self.redactor.redact(host).into_owned()
            };
            self.denied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(shown.clone());
            return Box::new(async move {
                effects_allowed(effects).await.map_err(gate_closed)?;
                tracing::warn!(
                    authority = shown,
                    "HTTP request denied: not in the plan's [grants] http"
                );
                Err(wasmtime_wasi_http::Error::HttpRequestDenied)
            });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            effects_allowed(effects).await.map_err(gate_closed)?;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as BoxedIo))
        })
    }
}

/// A closed effect gate, as the guest's request sees it.
fn gate_closed(error: wasmtime::Error) -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(Some(error.to_string()))
}

impl WasiHttpView for AttemptState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let (ctx, table, parts) = self.http_view_parts();
        // `Http::prepare` gives every call a gate; a store made without it denies all.
        let hooks = parts.get_or_insert_with(|| HttpGate::new(Arc::from([]), Redactor::default()));
        WasiHttpCtxView { ctx, table, hooks }
    }
}
