//! The per-task-type key-value store of `planrt:task@0.2.0` and later (interface `kv`): small
//! durable values a plugin keeps across attempts, crashes and plans — idempotency
//! markers, cursors — kept by the host in its own state rather than in files of the
//! directories the plugin writes. The caller hands the store as a [`KvAccess`] input (the
//! executor's is the SQLite state store); every task of a type sees the same keys.
//!
//! Limits: keys of 1 to [`MAX_KEY`] bytes without control characters, values up to
//! [`MAX_VALUE`] bytes, at most [`LIMITS`] keys and value bytes per task type. `describe` and
//! `validate` have no store (they must be free of side effects): their calls fail
//! `unavailable`. A `kv-set` returns once it is committed.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::effects::effects_allowed;
use super::{AttemptSetup, Capability, Refusal, Sandbox, TaskRequest};
use crate::runtime::error::AttemptError;
use crate::runtime::state::AttemptState;
use crate::runtime::wit::latest::kv::{self, KvError};
use crate::runtime::wit::v0_2_0;

/// Longest key, in bytes.
pub const MAX_KEY: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 1 << 20;
/// What one task type may hold in all.
pub const LIMITS: KvLimits = KvLimits {
    keys: 1024,
    bytes: 16 << 20,
};

/// What one task type may hold in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Keys.
    pub keys: u64,
    /// Bytes of values.
    pub bytes: u64,
}

/// A write the limits refused (nothing was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvFull {
    /// A new key over [`KvLimits::keys`].
    Keys,
    /// Values over [`KvLimits::bytes`].
    Bytes,
}

/// Where values are kept, by task type (`scope`). Errors are messages for the plugin.
pub trait KvBackend: Send + Sync {
    /// The value of `key`.
    fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Sets `key`, committed before it returns, unless `scope` would then hold more than
    /// `limits` allow (nothing written).
    fn set(
        &self,
        scope: &str,
        key: &str,
        value: &[u8],
        limits: KvLimits,
    ) -> Result<Result<(), KvFull>, String>;
    /// Removes `key` (not an error when it is not set).
    fn delete(&self, scope: &str, key: &str) -> Result<(), String>;
}

/// The store a call's plugin may use (an input from the caller).
#[derive(Clone)]
pub struct KvAccess(pub Arc<dyn KvBackend>);

impl std::fmt::Debug for KvAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvAccess")
    }
}

/// Whose keys a task's attempts see (its sandbox part): its task type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvScope(pub String);

/// One call's store and scope (a store part).
#[derive(Clone)]
struct KvCall {
    scope: String,
    backend: Arc<dyn KvBackend>,
}

/// The kv capability.
#[derive(Debug, Clone, Copy)]
pub struct Kv;

impl Capability for Kv {
    fn init(&self, linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
        // 0.3.0 kept 0.2.0's interface unchanged: one implementation serves both.
        v0_2_0::planrt::task::kv::add_to_linker::<_, HasSelf<AttemptState>>(linker, |state| state)?;
        kv::add_to_linker::<_, HasSelf<AttemptState>>(linker, |state| state)
    }

    fn configure(&self, task: &TaskRequest<'_>, sandbox: &mut Sandbox) -> Result<(), Refusal> {
        // Every plugin may keep values of its own type; nothing to grant.
        sandbox.insert(KvScope(task.info.task_type.clone()));
        Ok(())
    }

    fn prepare(&self, sandbox: &Sandbox, setup: &mut AttemptSetup<'_>) -> Result<(), AttemptError> {
        if let (Some(scope), Some(access)) =
            (sandbox.get::<KvScope>(), setup.inputs.get::<KvAccess>())
        {
            setup.parts.insert(KvCall {
                scope: scope.0.clone(),
                backend: access.0.clone(),
            });
        }
        Ok(())
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(KvError::InvalidKey(format!(
            "a key is 1 to {MAX_KEY} bytes; this one is {}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(KvError::InvalidKey(format!(
            "key {key:?} has a control character"
        )));
    }
    Ok(())
}

impl AttemptState {
    fn kv_call(&self) -> Result<KvCall, KvError> {
        self.part::<KvCall>().cloned().ok_or_else(|| {
            KvError::Unavailable(
                "the kv store is only available in `run` (describe and validate have none)".into(),
            )
        })
    }
}

// Each call waits for the call's effect gate, then commits (or reads) through the
// backend synchronously: the SQLite store hands its tokio worker off while it waits
// (`crate::blocking`).
impl kv::Host for AttemptState {
    async fn kv_get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
        effects_allowed(self.effect_gate()).await?;
        Ok(self.get_value(key))
    }

    async fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        effects_allowed(self.effect_gate()).await?;
        Ok(self.set_value(key, value))
    }

    async fn kv_delete(&mut self, key: String) -> wasmtime::Result<Result<(), KvError>> {
        effects_allowed(self.effect_gate()).await?;
        Ok(self.delete_value(key))
    }
}

impl v0_2_0::planrt::task::kv::Host for AttemptState {
    async fn kv_get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v0_2_0::kv::KvError>> {
        Ok(kv::Host::kv_get(self, key).await?.map_err(Into::into))
    }

    async fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v0_2_0::kv::KvError>> {
        Ok(kv::Host::kv_set(self, key, value)
            .await?
            .map_err(Into::into))
    }

    async fn kv_delete(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<(), v0_2_0::kv::KvError>> {
        Ok(kv::Host::kv_delete(self, key).await?.map_err(Into::into))
    }
}

impl AttemptState {
    fn get_value(&self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        check_key(&key)?;
        let call = self.kv_call()?;
        call.backend
            .get(&call.scope, &key)
            .map_err(KvError::Unavailable)
    }

    fn set_value(&self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        check_key(&key)?;
        if value.len() > MAX_VALUE {
            return Err(KvError::TooLarge(format!(
                "a value is at most {MAX_VALUE} bytes; this one is {}",
                value.len()
            )));
        }
        let call = self.kv_call()?;
        match call.backend.set(&call.scope, &key, &value, LIMITS) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(KvFull::Keys)) => Err(KvError::TooLarge(format!(
                "task type `{}` already has {} keys: delete some first",
                call.scope, LIMITS.keys
            ))),
            Ok(Err(KvFull::Bytes)) => Err(KvError::TooLarge(format!(
                "task type `{}` would hold more than {} MiB of values: delete some first",
                call.scope,
                LIMITS.bytes >> 20
            ))),
            Err(message) => Err(KvError::Unavailable(message)),
        }
    }

    fn delete_value(&self, key: String) -> Result<(), KvError> {
        check_key(&key)?;
        let call = self.kv_call()?;
        call.backend
            .delete(&call.scope, &key)
            .map_err(KvError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_before_the_store_is_asked() {
        assert!(check_key("restored/5000").is_ok());
        assert!(matches!(check_key(""), Err(KvError::InvalidKey(_))));
        assert!(matches!(
            check_key(&"k".repeat(MAX_KEY + 1)),
            Err(KvError::InvalidKey(_))
        ));
        assert!(check_key(&"k".repeat(MAX_KEY)).is_ok());
        assert!(matches!(check_key("a\nb"), Err(KvError::InvalidKey(m)) if m.contains("control")));
    }
}
