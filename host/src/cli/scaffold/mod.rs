//! `planrt new TYPE --lang L [DIR]`: a plugin project that builds and runs as written —
//! the WIT it targets (a copy of the frozen `wit/v0.3.0`, dependencies included), a
//! minimal task type, a `build.sh`, a README saying how to build and try it, and a plan
//! that runs it. The templates are files beside this module, compiled into the binary.

use std::path::{Path, PathBuf};

use crate::plan::TaskType;

/// A language `planrt new` writes a project in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the typed SDK.
    Rust,
    /// C: wit-bindgen c, clang with wasi-libc, wasm-tools and the preview1 adapter.
    C,
    /// JavaScript: componentize-js through jco.
    Js,
    /// Python: componentize-py.
    Python,
}

/// Why a project was not written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The directory has files in it already.
    #[error("{} is not empty: `planrt new` writes only into a new or empty directory", .0.display())]
    NotEmpty(PathBuf),
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One file of a template: where it goes, its text (placeholders still in), and whether
/// it is a script.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

const fn file(path: &'static str, text: &'static str) -> TemplateFile {
    TemplateFile {
        path,
        text,
        executable: false,
    }
}

const fn script(path: &'static str, text: &'static str) -> TemplateFile {
    TemplateFile {
        path,
        text,
        executable: true,
    }
}

/// The WIT every project targets: the latest frozen version, with its dependencies.
const WIT: &[TemplateFile] = &[
    file(
        "wit/v0.3.0/task.wit",
        include_str!("../../../../wit/v0.3.0/task.wit"),
    ),
    file(
        "wit/v0.3.0/deps/cli.wit",
        include_str!("../../../../wit/v0.3.0/deps/cli.wit"),
    ),
    file(
        "wit/v0.3.0/deps/clocks.wit",
        include_str!("../../../../wit/v0.3.0/deps/clocks.wit"),
    ),
    file(
        "wit/v0.3.0/deps/filesystem.wit",
        include_str!("../../../../wit/v0.3.0/deps/filesystem.wit"),
    ),
    file(
        "wit/v0.3.0/deps/http.wit",
        include_str!("../../../../wit/v0.3.0/deps/http.wit"),
    ),
    file(
        "wit/v0.3.0/deps/io.wit",
        include_str!("../../../../wit/v0.3.0/deps/io.wit"),
    ),
    file(
        "wit/v0.3.0/deps/random.wit",
        include_str!("../../../../wit/v0.3.0/deps/random.wit"),
    ),
    file(
        "wit/v0.3.0/deps/sockets.wit",
        include_str!("../../../../wit/v0.3.0/deps/sockets.wit"),
    ),
];

/// The Rust project: the typed SDK's sources (its bindings pointed at the project's
/// `wit/`), seeded with the lock file planrt's own plugins are built with.
const RUST: &[TemplateFile] = &[
    file("Cargo.toml", include_str!("rust/Cargo.toml.tmpl")),
    file("Cargo.lock", include_str!("../../../../plugins/Cargo.lock")),
    file("src/lib.rs", include_str!("rust/lib.rs.tmpl")),
    file("sdk/Cargo.toml", include_str!("rust/sdk-Cargo.toml.tmpl")),
    file(
        "sdk/src/lib.rs",
        include_str!("../../../../plugins/sdk/src/lib.rs"),
    ),
    file(
        "sdk/src/typed.rs",
        include_str!("../../../../plugins/sdk/src/typed.rs"),
    ),
    file(
        "sdk/src/codec.rs",
        include_str!("../../../../plugins/sdk/src/codec.rs"),
    ),
    script("build.sh", include_str!("rust/build.sh.tmpl")),
    file("plan.toml", include_str!("rust/plan.toml.tmpl")),
    file("README.md", include_str!("rust/README.md.tmpl")),
    file(".gitignore", include_str!("rust/gitignore.tmpl")),
];

/// The C project: bindings generated at build time into `build/`.
const C: &[TemplateFile] = &[
    file("plugin.c", include_str!("c/plugin.c.tmpl")),
    script("build.sh", include_str!("c/build.sh.tmpl")),
    file("plan.toml", include_str!("c/plan.toml.tmpl")),
    file("README.md", include_str!("c/README.md.tmpl")),
    file(".gitignore", include_str!("c/gitignore.tmpl")),
];

/// The JavaScript project.
const JS: &[TemplateFile] = &[
    file("plugin.js", include_str!("js/plugin.js.tmpl")),
    file("package.json", include_str!("js/package.json.tmpl")),
    script("build.sh", include_str!("js/build.sh.tmpl")),
    file("plan.toml", include_str!("js/plan.toml.tmpl")),
    file("README.md", include_str!("js/README.md.tmpl")),
    file(".gitignore", include_str!("js/gitignore.tmpl")),
];

/// The Python project.
const PYTHON: &[TemplateFile] = &[
    file("src/app.py", include_str!("python/app.py.tmpl")),
    script("build.sh", include_str!("python/build.sh.tmpl")),
    file("plan.toml", include_str!("python/plan.toml.tmpl")),
    file("README.md", include_str!("python/README.md.tmpl")),
    file(".gitignore", include_str!("python/gitignore.tmpl")),
];

impl Lang {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Lang::Rust => RUST,
            Lang::C => C,
            Lang::Js => JS,
            Lang::Python => PYTHON,
        }
    }
}

/// `text` with the template's placeholders filled in for `task_type`.
fn render(path: &str, text: &str, task_type: &TaskType) -> String {
    let text = text
        .replace("__TASK_TYPE__", task_type.as_str())
        .replace("__CRATE_NAME__", &task_type.as_str().replace('-', "_"));
    match path {
        // The SDK's bindings: the project's own copy of the WIT.
        "sdk/src/lib.rs" => text.replace("\"../../wit/v0.3.0\"", "\"../wit/v0.3.0\""),
        _ => text,
    }
}

/// Writes a `lang` project for `task_type` into `dir` (created; it must be new or
/// empty). Returns the files written, relative to `dir`.
pub fn scaffold(
    task_type: &TaskType,
    lang: Lang,
    dir: &Path,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ScaffoldError::Write { path, source }
    };
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_owned()));
    }
    let mut written = Vec::new();
    for template in WIT.iter().chain(lang.files()) {
        let path = dir.join(template.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_error(parent))?;
        }
        std::fs::write(&path, render(template.path, template.text, task_type))
            .map_err(write_error(&path))?;
        if template.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(write_error(&path))?;
        }
        written.push(PathBuf::from(template.path));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_project_names_its_type_everywhere_and_points_the_sdk_at_its_wit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("demo");
        let task_type = TaskType::new("my-task").unwrap();
        let files = scaffold(&task_type, Lang::Rust, &out).unwrap();
        assert!(files.contains(&PathBuf::from("wit/v0.3.0/deps/http.wit")));
        let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
        assert!(read("Cargo.toml").contains("name = \"my-task\""));
        assert!(read("src/lib.rs").contains("\"my-task\""));
        assert!(read("build.sh").contains("release/my_task.wasm"));
        assert!(read("sdk/src/lib.rs").contains("path: \"../wit/v0.3.0\""));
        assert!(read("wit/v0.3.0/task.wit").contains("package planrt:task@0.3.0;"));
        // Every module the SDK declares comes with it.
        for module in read("sdk/src/lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        {
            let path = format!("sdk/src/{module}.rs");
            assert!(files.contains(&PathBuf::from(&path)), "no {path}");
        }
        for (path, text) in files.iter().map(|p| (p, read(p.to_str().unwrap()))) {
            assert!(
                !text.contains("__TASK_TYPE__"),
                "{} keeps a placeholder",
                path.display()
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("build.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }

    #[test]
    fn every_language_writes_the_wit_a_build_script_a_readme_and_a_plan() {
        let task_type = TaskType::new("demo").unwrap();
        for lang in [Lang::Rust, Lang::C, Lang::Js, Lang::Python] {
            let dir = tempfile::tempdir().unwrap();
            let files = scaffold(&task_type, lang, dir.path()).unwrap();
            for expected in ["wit/v0.3.0/task.wit", "build.sh", "README.md", "plan.toml"] {
                assert!(
                    files.contains(&PathBuf::from(expected)),
                    "{lang:?}: {expected}"
                );
            }
            let build = std::fs::read_to_string(dir.path().join("build.sh")).unwrap();
            assert!(build.contains("plugins/demo.wasm"), "{lang:?}: {build}");
            let plan = std::fs::read_to_string(dir.path().join("plan.toml")).unwrap();
            assert!(plan.contains("type = \"demo\""), "{lang:?}: {plan}");
        }
    }

    #[test]
    fn a_directory_with_files_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let task_type = TaskType::new("my-task").unwrap();
        let error = scaffold(&task_type, Lang::Rust, dir.path()).unwrap_err();
        assert!(matches!(error, ScaffoldError::NotEmpty(_)), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
