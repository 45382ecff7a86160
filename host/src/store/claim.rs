//! One process at a time per plan: an exclusive `flock` on `<state>/claims/<plan>.lock`.
//! The kernel drops the lock when the process dies, even by `kill -9`, so a crash never
//! leaves a stale claim behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use std::os::unix::fs::OpenOptionsExt;

use rustix::fs::{FlockOperation, flock};

use crate::plan::PlanId;
use crate::state_dir::{self, StateDir};

/// A plan this process may run; released on drop or when the process dies.
#[derive(Debug)]
pub struct PlanClaim {
    _file: File,
    path: PathBuf,
}

/// Why a plan cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another live process holds it.
    #[error("plan {plan} is being run by {}", holder_name(holder.as_deref()))]
    Held {
        /// The plan.
        plan: PlanId,
        /// The holder's pid, as it wrote it.
        holder: Option<String>,
    },
    /// The claims directory cannot be used.
    #[error("cannot claim plan {plan}: {error}")]
    Dir {
        /// The plan.
        plan: PlanId,
        /// Why (not a `source`: the message already says it).
        error: crate::state_dir::StateDirError,
    },
    /// The claim file could not be used.
    #[error("cannot claim plan {plan} ({}): {error}", path.display())]
    Io {
        /// The plan.
        plan: PlanId,
        /// The claim file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// Who holds a claim, for messages: this process, or another one (by pid).
fn holder_name(holder: Option<&str>) -> String {
    match holder {
        Some(pid) if pid == std::process::id().to_string() => "this planrt process".into(),
        Some(pid) => format!("another planrt process (pid {pid})"),
        None => "another planrt process".into(),
    }
}

impl PlanClaim {
    /// Claims `plan` for this process, without waiting.
    pub fn acquire(state_dir: &StateDir, plan: PlanId) -> Result<Self, ClaimError> {
        let dir = state_dir
            .subdir("claims")
            .map_err(|error| ClaimError::Dir { plan, error })?;
        let path = dir.join(format!("{plan}.lock"));
        let io = |error| ClaimError::Io {
            plan,
            path: path.clone(),
            error,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(state_dir::FILE_MODE)
            .open(&path)
            .map_err(io)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = Some(holder.trim().to_owned()).filter(|h| !h.is_empty());
            return Err(ClaimError::Held { plan, holder });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file, path })
    }

    /// The claim file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_excludes_others_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open_or_create(dir.path()).unwrap();
        let plan = PlanId::new_random();
        let claim = PlanClaim::acquire(&state, plan).unwrap();
        match PlanClaim::acquire(&state, plan) {
            Err(ClaimError::Held { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id().to_string()))
            }
            other => panic!("expected Held, got {other:?}"),
        }
        // Another plan in the same state dir is independent.
        let other = PlanClaim::acquire(&state, PlanId::new_random()).unwrap();
        drop(claim);
        PlanClaim::acquire(&state, plan).unwrap();
        drop(other);
    }
}
