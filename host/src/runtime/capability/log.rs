//! The plugin's voice: its stdout and stderr (never inherited: captured into the
//! attempt's [`GuestLog`]), the `log` and `progress` host imports of
//! `planrt:task/host`, and the masking of the plan's secrets in all of them.

use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use super::effects::effects_allowed;
use super::{AttemptSetup, CallEnd, Capability, Sandbox};
use crate::plan::{Progress as ProgressReport, ProgressUnit, Redactor};
use crate::runtime::error::AttemptError;
use crate::runtime::guest_log::{GuestLevel, GuestLog};
use crate::runtime::state::AttemptState;
use crate::runtime::wit::latest::{host, types};
use crate::runtime::wit::{v0_1_0, v0_2_0};

impl From<host::Unit> for ProgressUnit {
    fn from(unit: host::Unit) -> Self {
        match unit {
            host::Unit::Items => Self::Items,
            host::Unit::Bytes => Self::Bytes,
        }
    }
}

/// Receives progress reports of running attempts.
pub trait ProgressSink: Send + Sync {
    /// `done` of `total` (`None`: unknown) counted in `unit`, with a short note.
    fn progress(&self, done: u64, total: Option<u64>, unit: ProgressUnit, note: &str);
}

/// Where a call's progress reports go (an input from the caller).
#[derive(Clone)]
pub struct ProgressTo(pub Option<Arc<dyn ProgressSink>>);

impl std::fmt::Debug for ProgressTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProgressTo({})",
            if self.0.is_some() {
                "a sink"
            } else {
                "nowhere"
            }
        )
    }
}

/// Longest progress note kept in an attempt's record, in bytes.
pub const MAX_NOTE: usize = 1024;

/// Where a call's last progress report is kept: an input from the caller, who can read
/// it while the call runs or after it was dropped — an attempt stopped past its grace
/// still says how far it got.
#[derive(Debug, Clone, Default)]
pub struct ProgressSlot(Arc<Mutex<Option<ProgressReport>>>);

impl ProgressSlot {
    /// A slot with no report yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last report kept, if any.
    pub fn get(&self) -> Option<ProgressReport> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `report` as the last one, its note cut to [`MAX_NOTE`] bytes.
    fn set(&self, mut report: ProgressReport) {
        if report.note.len() > MAX_NOTE {
            // A copy: the note's whole allocation is not held until the next report.
            report.note = report.note[..report.note.floor_char_boundary(MAX_NOTE)].to_owned();
        }
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
    }
}

/// One call's progress: where it goes, where its last report is kept, and the secrets
/// masked in its notes (a store part).
#[derive(Clone)]
struct Progress {
    sink: Option<Arc<dyn ProgressSink>>,
    slot: Option<ProgressSlot>,
    redactor: Redactor,
}

/// The log capability.
#[derive(Debug, Clone, Copy)]
pub struct Log;

impl Capability for Log {
    fn init(&self, linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
        // Every version's `host` interface (0.3.0 added a unit to `progress`).
        v0_1_0::planrt::task::host::add_to_linker::<_, HasSelf<AttemptState>>(linker, |state| {
            state
        })?;
        v0_2_0::planrt::task::host::add_to_linker::<_, HasSelf<AttemptState>>(linker, |state| {
            state
        })?;
        host::add_to_linker::<_, HasSelf<AttemptState>>(linker, |state| state)
    }

    fn prepare(
        &self,
        _sandbox: &Sandbox,
        setup: &mut AttemptSetup<'_>,
    ) -> Result<(), AttemptError> {
        let redactor = setup.inputs.redactor();
        let log = GuestLog::new(redactor.clone());
        setup.wasi.stdout(log.stdout()).stderr(log.stderr());
        setup.parts.insert(log);
        setup.parts.insert(Progress {
            sink: setup.inputs.get::<ProgressTo>().and_then(|to| to.0.clone()),
            slot: setup.inputs.get::<ProgressSlot>().cloned(),
            redactor,
        });
        Ok(())
    }

    fn conclude(
        &self,
        _sandbox: &Sandbox,
        state: &AttemptState,
        _end: &CallEnd<'_>,
    ) -> Option<AttemptError> {
        if let Some(log) = state.part::<GuestLog>() {
            log.finish();
        }
        None
    }
}

impl types::Host for AttemptState {}
impl v0_1_0::planrt::task::types::Host for AttemptState {}
impl v0_2_0::planrt::task::types::Host for AttemptState {}

// Every log line and progress report waits for the call's effect gate (in the newest
// version's functions, which the older ones call): nothing of an attempt is seen
// outside the process before its start is stored.
impl v0_1_0::planrt::task::host::Host for AttemptState {
    async fn log(
        &mut self,
        level: v0_1_0::planrt::task::host::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        host::Host::log(self, level.into(), message).await
    }

    async fn progress(
        &mut self,
        done: u64,
        total: Option<u64>,
        note: String,
    ) -> wasmtime::Result<()> {
        host::Host::progress(self, done, total, host::Unit::Items, note).await
    }
}

impl v0_2_0::planrt::task::host::Host for AttemptState {
    async fn log(
        &mut self,
        level: v0_2_0::planrt::task::host::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        host::Host::log(self, level.into(), message).await
    }

    async fn progress(
        &mut self,
        done: u64,
        total: Option<u64>,
        note: String,
    ) -> wasmtime::Result<()> {
        host::Host::progress(self, done, total, host::Unit::Items, note).await
    }
}

impl host::Host for AttemptState {
    async fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        effects_allowed(self.effect_gate()).await?;
        let level = match level {
            host::Level::Trace => GuestLevel::Trace,
            host::Level::Debug => GuestLevel::Debug,
            host::Level::Info => GuestLevel::Info,
            host::Level::Warn => GuestLevel::Warn,
            host::Level::Error => GuestLevel::Error,
        };
        if let Some(log) = self.part::<GuestLog>() {
            log.log(level, &message);
        }
        Ok(())
    }

    async fn progress(
        &mut self,
        done: u64,
        total: Option<u64>,
        unit: host::Unit,
        note: String,
    ) -> wasmtime::Result<()> {
        effects_allowed(self.effect_gate()).await?;
        self.report_progress(done, total, unit.into(), note);
        Ok(())
    }
}

impl AttemptState {
    /// A progress report of any contract version: masked, logged, handed to the sink.
    fn report_progress(&self, done: u64, total: Option<u64>, unit: ProgressUnit, note: String) {
        // Without `Log::prepare` nothing was set up to mask the note: it goes nowhere.
        let Some(progress) = self.part::<Progress>() else {
            return;
        };
        let note = progress.redactor.redact_string(note);
        tracing::debug!(target: "planrt::plugin", done, total, ?unit, "progress: {note}");
        if let Some(sink) = &progress.sink {
            sink.progress(done, total, unit, &note);
        }
        // The last report goes into the attempt's record.
        if let Some(slot) = &progress.slot {
            slot.set(ProgressReport {
                done,
                total,
                unit,
                note,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_progress_is_kept_with_its_note_cut_at_a_character() {
        let slot = ProgressSlot::new();
        assert_eq!(slot.get(), None);
        let report = |note: String| ProgressReport {
            done: 1,
            total: None,
            unit: ProgressUnit::Items,
            note,
        };
        slot.set(report("first".into()));
        assert_eq!(slot.get().unwrap().note, "first");
        // Byte MAX_NOTE falls inside a two-byte character: the cut goes back one.
        slot.set(report(format!("a{}", "é".repeat(MAX_NOTE))));
        let kept = slot.get().unwrap().note;
        assert_eq!(kept.len(), MAX_NOTE - 1);
        assert!(kept.starts_with('a') && kept[1..].chars().all(|c| c == 'é'));
    }
}
