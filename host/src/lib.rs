//! planrt: a plan runtime whose task types are WebAssembly components.
//!
//! Arrows point one way: `cli` → `server` → `executor` → `plan`, `store`, `runtime` (the
//! CLI also calls the executor directly). `plan` is pure domain; `runtime` and `store`
//! never know each other. `state_dir` (the private state directory) sits below `store` and
//! `runtime`, as `plan` does.

pub mod blocking;
pub mod cli;
pub mod executor;
/// The plan domain, its own crate (`planrt-plan`) so that it builds without wasmtime.
pub use planrt_plan as plan;
pub mod runtime;
pub mod server;
pub mod state_dir;
pub mod store;
