//! What one call's store holds: the WASI context, the wasi:http context, the resource
//! table they share, and each capability's part of the call (its gate, its limiter, its
//! log…), kept by type so that a new capability brings its own part without changing
//! this file.

use http::Extensions;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;

/// The data of one call's `Store`.
pub struct AttemptState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    parts: Extensions,
}

impl AttemptState {
    /// A store's data: the WASI context the capabilities built, and their parts.
    pub(super) fn new(wasi: WasiCtx, parts: Extensions) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            parts,
        }
    }

    /// A capability's part of this call.
    pub fn part<T: Clone + Send + Sync + 'static>(&self) -> Option<&T> {
        self.parts.get::<T>()
    }

    /// A capability's part of this call, to change.
    pub fn part_mut<T: Clone + Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.parts.get_mut::<T>()
    }

    /// A capability's part of this call, put in with `make` if it is not there yet.
    pub fn part_or_insert_with<T: Clone + Send + Sync + 'static>(
        &mut self,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        self.parts.get_or_insert_with(make)
    }

    /// The wasi:http context, the resource table and the parts, borrowed apart (for
    /// the wasi:http view, whose hooks are a capability's part).
    pub(super) fn http_view_parts(
        &mut self,
    ) -> (&mut WasiHttpCtx, &mut ResourceTable, &mut Extensions) {
        (&mut self.http, &mut self.table, &mut self.parts)
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
