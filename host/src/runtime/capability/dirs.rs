//! Directories: a plugin sees exactly the directories it declares (`needs.dirs`) that the
//! plan grants (`[grants] dirs`), each preopened at its guest path in its declared mode.
//! Each attempt resolves the directory it opens again (symlinks followed) and refuses one
//! that leads out of its grant or into a guarded directory (planrt's own state), whenever
//! the link was planted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime_wasi::FsPerms;

use super::{AttemptSetup, Capability, Refusal, Sandbox, TaskRequest};
use crate::plan::{DirGrant, DirMode, Grants};
use crate::runtime::error::AttemptError;
use crate::runtime::info::DirNeed;

/// A directory mounted into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The granted host directory it lies in.
    pub root: PathBuf,
    /// Host directory.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// Whether the guest may write.
    pub writable: bool,
}

/// The preopens of a task (its sandbox part).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preopens(pub Vec<Preopen>);

/// A directory no task may reach: planrt's state (any access) or plugins (writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guarded {
    /// The directory.
    pub path: PathBuf,
    /// Only writable preopens are refused there.
    pub writes_only: bool,
}

/// The directories capability.
#[derive(Debug, Clone, Default)]
pub struct Dirs {
    guarded: Arc<[Guarded]>,
}

impl Dirs {
    /// Directories guarding `guarded` from every preopen.
    pub fn guarding(guarded: Vec<Guarded>) -> Self {
        Self {
            guarded: guarded.into(),
        }
    }
}

/// The host directory `preopen` opens now, resolved: inside its grant and outside every
/// guarded directory, or why not.
fn resolve(preopen: &Preopen, guarded: &[Guarded]) -> Result<PathBuf, String> {
    let resolved =
        |path: &Path| std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()));
    let root = resolved(&preopen.root)?;
    let host = resolved(&preopen.host)?;
    if !host.starts_with(&root) {
        return Err(format!(
            "{} leads to {}, outside its grant {} (a symbolic link)",
            preopen.host.display(),
            host.display(),
            root.display()
        ));
    }
    for guard in guarded {
        if guard.writes_only && !preopen.writable {
            continue;
        }
        let Ok(path) = std::fs::canonicalize(&guard.path) else {
            continue;
        };
        if host.starts_with(&path) || path.starts_with(&host) {
            return Err(format!(
                "{} reaches planrt's own directory {}",
                preopen.host.display(),
                path.display()
            ));
        }
    }
    Ok(host)
}

impl Capability for Dirs {
    fn check_grants(&self, grants: &Grants) -> Result<(), Refusal> {
        // Every granted directory, used or not: a missing one is a mistake in the plan.
        // (What a task needs below it may appear later: a restore makes `data/`.)
        match grants.dirs.iter().find(|grant| !grant.host.is_dir()) {
            Some(grant) => Err(Refusal::Unusable(format!(
                "grant of {} at `{}`: the host directory does not exist or is not a directory",
                grant.host.display(),
                grant.guest
            ))),
            None => Ok(()),
        }
    }

    fn configure(&self, task: &TaskRequest<'_>, sandbox: &mut Sandbox) -> Result<(), Refusal> {
        let preopens = task
            .info
            .dirs
            .iter()
            .map(|need| {
                grant_for(need, &task.grants.dirs)
                    .map(|(_, preopen)| preopen)
                    .ok_or_else(|| Refusal::NotGranted(describe_need(need)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        sandbox.insert(Preopens(preopens));
        Ok(())
    }

    fn prepare(&self, sandbox: &Sandbox, setup: &mut AttemptSetup<'_>) -> Result<(), AttemptError> {
        for preopen in sandbox.get::<Preopens>().map_or(&[][..], |p| &p.0) {
            let perms = if preopen.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            // The resolved path is the one checked and the one opened.
            let host = resolve(preopen, &self.guarded).map_err(AttemptError::Sandbox)?;
            setup
                .wasi
                .preopened_dir(&host, &preopen.guest, perms)
                .map_err(|e| AttemptError::Sandbox(format!("{}: {e}", preopen.host.display())))?;
        }
        Ok(())
    }
}

fn describe_need(need: &DirNeed) -> String {
    format!(
        "directory `{}` ({})",
        need.guest_path,
        if need.writable { "rw" } else { "ro" }
    )
}

/// The grant that covers `need`'s guest path (the same path or a parent) in a sufficient
/// mode, and the preopen it gives: the guest sees the need's path, nothing more.
fn grant_for<'g>(need: &DirNeed, grants: &'g [DirGrant]) -> Option<(&'g DirGrant, Preopen)> {
    let need_path = Path::new(&need.guest_path);
    grants
        .iter()
        .filter(|g| g.mode == DirMode::Rw || !need.writable)
        .find_map(|g| {
            let rest = need_path.strip_prefix(&g.guest).ok()?;
            Some((
                g,
                Preopen {
                    root: g.host.clone(),
                    host: g.host.join(rest),
                    guest: need.guest_path.clone(),
                    writable: need.writable,
                },
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(host: &str, guest: &str, mode: DirMode) -> DirGrant {
        DirGrant {
            host: host.into(),
            guest: guest.into(),
            mode,
        }
    }

    fn need(path: &str, writable: bool) -> DirNeed {
        DirNeed {
            guest_path: path.into(),
            writable,
        }
    }

    fn preopen(need: &DirNeed, grants: &[DirGrant]) -> Option<Preopen> {
        grant_for(need, grants).map(|(_, p)| p)
    }

    #[test]
    fn a_need_is_granted_by_the_same_path_or_a_parent() {
        let grants = [
            grant("/srv/node", "/home", DirMode::Rw),
            grant("/etc/ro", "/ro", DirMode::Ro),
        ];
        assert_eq!(
            preopen(&need("/home", true), &grants),
            Some(Preopen {
                root: "/srv/node".into(),
                host: "/srv/node".into(),
                guest: "/home".into(),
                writable: true
            })
        );
        assert_eq!(
            preopen(&need("/home/config", false), &grants),
            Some(Preopen {
                root: "/srv/node".into(),
                host: "/srv/node/config".into(),
                guest: "/home/config".into(),
                writable: false
            })
        );
        assert_eq!(
            preopen(&need("/ro", false), &grants).map(|p| p.writable),
            Some(false)
        );
    }

    #[test]
    fn a_need_beyond_the_grant_is_missing() {
        let grants = [
            grant("/srv/node", "/home", DirMode::Rw),
            grant("/etc/ro", "/ro", DirMode::Ro),
        ];
        assert_eq!(
            preopen(&need("/ro", true), &grants),
            None,
            "rw need, ro grant"
        );
        assert_eq!(
            preopen(&need("/homes", false), &grants),
            None,
            "a prefix is not a parent"
        );
        assert_eq!(preopen(&need("/data", false), &grants), None);
        assert_eq!(
            preopen(&need("/", false), &grants),
            None,
            "a parent of a grant is not granted"
        );
    }

    #[test]
    fn a_preopen_is_refused_if_a_link_leads_out_of_its_grant_or_into_a_guarded_dir() {
        let root = tempfile::tempdir().unwrap();
        let grant = root.path().join("node");
        let outside = root.path().join("outside");
        let state = root.path().join("state");
        for dir in [&grant.join("config"), &outside, &state] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::os::unix::fs::symlink(&outside, grant.join("escape")).unwrap();
        let preopen = |host: PathBuf, writable| Preopen {
            root: grant.clone(),
            host,
            guest: "/home".into(),
            writable,
        };
        let guarded = [Guarded {
            path: state.clone(),
            writes_only: false,
        }];
        assert_eq!(
            resolve(&preopen(grant.join("config"), true), &guarded),
            Ok(std::fs::canonicalize(grant.join("config")).unwrap())
        );
        let escape = resolve(&preopen(grant.join("escape"), false), &guarded).unwrap_err();
        assert!(escape.contains("outside its grant"), "{escape}");
        // A grant of a parent of the state dir, with a link into it.
        std::os::unix::fs::symlink(&state, grant.join("state")).unwrap();
        let wide = Preopen {
            root: root.path().to_owned(),
            host: grant.join("state"),
            guest: "/x".into(),
            writable: false,
        };
        let own = resolve(&wide, &guarded).unwrap_err();
        assert!(own.contains("planrt's own directory"), "{own}");
        let plugins_only_for_writes = [Guarded {
            path: state,
            writes_only: true,
        }];
        assert!(resolve(&wide, &plugins_only_for_writes).is_ok());
    }
}
