//! The plan file (docs/DESIGN.md §8): parsed strictly, every error located by line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;

use super::graph::{Graph, Links, TaskName};
use super::http_allow::HttpAllow;
use super::ids::TaskType;
use super::policy::{Backoff, LimitOverrides, PlanDefaults, RetryPolicy};
use super::units::{parse_duration, parse_size};

/// A position in a plan file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// Where each line of a source starts: locations of many offsets without rescanning the
/// source for each (a plan of 10 000 tasks has 10 000 of them).
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    source: &'a str,
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// The index of `source`: one scan.
    pub fn new(source: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { source, starts }
    }

    /// The location of byte offset `offset` (clamped to the source).
    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.source.len());
        // The last line starting at or before `offset`.
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self.starts[line - 1];
        let column = self.source[line_start..offset].chars().count() + 1;
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A plan file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{location}: {message}", file.display())]
pub struct SpecError {
    /// The plan file.
    pub file: PathBuf,
    /// Where in it.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

/// How a directory is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirMode {
    /// Read only.
    Ro,
    /// Read and write.
    Rw,
}

impl DirMode {
    /// `ro` or `rw`.
    pub fn as_str(self) -> &'static str {
        match self {
            DirMode::Ro => "ro",
            DirMode::Rw => "rw",
        }
    }
}

/// A host directory the plan lets tasks see at a guest path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Absolute host path.
    pub host: PathBuf,
    /// Absolute guest path, e.g. `/home`.
    pub guest: String,
    /// The most a task may do there.
    pub mode: DirMode,
}

/// Everything the plan lets its tasks reach (deny by default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Directories.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Hosts plugins that declare `network` may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpAllow>,
}

/// One task as the plan file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task type, resolved to a plugin at run time.
    pub task_type: TaskType,
    /// Its name, the target of other tasks' `dependsOn`.
    pub name: Option<TaskName>,
    /// The names of the tasks it waits for, if it says (`dependsOn = []`: none, and the
    /// plan is a graph).
    pub depends_on: Option<Vec<TaskName>>,
    /// Params (a JSON object).
    pub params: Value,
    /// Retry policy after defaults.
    pub policy: RetryPolicy,
    /// Per-attempt limits set by the plan (task, then defaults); unset ones come from
    /// the plugin.
    pub limits: LimitOverrides,
}

/// A parsed plan file.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSpec {
    /// Optional label.
    pub name: Option<String>,
    /// The plan's defaults (what tasks inherit).
    pub defaults: PlanDefaults,
    /// Plan-wide grants.
    pub grants: Grants,
    /// Tasks in order.
    pub tasks: Vec<TaskSpec>,
    /// Where each task's `type` is written, for later errors about it.
    pub task_locations: Vec<Location>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPlan {
    name: Option<String>,
    defaults: Option<RawPolicy>,
    grants: Option<RawGrants>,
    tasks: Option<Vec<RawTask>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    max_retries: Option<u32>,
    backoff: Option<RawBackoff>,
    timeout: Option<Spanned<String>>,
    memory_limit: Option<Spanned<String>>,
    max_output: Option<Spanned<String>>,
    max_parallel: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBackoff {
    initial: Option<Spanned<String>>,
    factor: Option<Spanned<f64>>,
    max: Option<Spanned<String>>,
    jitter: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGrants {
    dirs: Option<Vec<RawDirGrant>>,
    http: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDirGrant {
    host: Spanned<String>,
    guest: Spanned<String>,
    mode: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTask {
    #[serde(rename = "type")]
    task_type: Spanned<String>,
    params: Option<Spanned<toml::Table>>,
    max_retries: Option<u32>,
    backoff: Option<RawBackoff>,
    timeout: Option<Spanned<String>>,
    memory_limit: Option<Spanned<String>>,
    max_output: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    depends_on: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Reads plan files, turning byte spans into located errors.
struct Reader<'a> {
    lines: LineIndex<'a>,
    file: &'a Path,
}

impl Reader<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> SpecError {
        SpecError {
            file: self.file.to_owned(),
            location: self.lines.location(span.start),
            message: message.into(),
        }
    }

    /// Refuses a key that has no meaning where it is written (never ignored).
    fn refuse<T>(&self, value: &Option<Spanned<T>>, why: &str) -> Result<(), SpecError> {
        match value {
            Some(value) => Err(self.error(value.span(), why)),
            None => Ok(()),
        }
    }

    fn policy(
        &self,
        base: RetryPolicy,
        max_retries: Option<u32>,
        backoff: Option<RawBackoff>,
    ) -> Result<RetryPolicy, SpecError> {
        let mut policy = base;
        if let Some(max_retries) = max_retries {
            policy.max_retries = max_retries;
        }
        if let Some(raw) = backoff {
            policy.backoff = self.backoff(policy.backoff, raw)?;
        }
        Ok(policy)
    }

    fn backoff(&self, base: Backoff, raw: RawBackoff) -> Result<Backoff, SpecError> {
        let duration = |field: Option<Spanned<String>>, fallback| match field {
            Some(text) => {
                parse_duration(text.get_ref()).map_err(|e| self.error(text.span(), e.to_string()))
            }
            None => Ok(fallback),
        };
        let backoff = Backoff {
            initial: duration(raw.initial, base.initial)?,
            max: duration(raw.max, base.max)?,
            factor: match raw.factor {
                Some(factor) if !(factor.get_ref().is_finite() && *factor.get_ref() >= 1.0) => {
                    return Err(self.error(factor.span(), "backoff `factor` must be a number ≥ 1"));
                }
                Some(factor) => factor.into_inner(),
                None => base.factor,
            },
            jitter: raw.jitter.unwrap_or(base.jitter),
        };
        Ok(backoff)
    }

    fn limits(
        &self,
        timeout: Option<Spanned<String>>,
        memory_limit: Option<Spanned<String>>,
        max_output: Option<Spanned<String>>,
    ) -> Result<LimitOverrides, SpecError> {
        let timeout = timeout
            .map(|t| match parse_duration(t.get_ref()) {
                Ok(d) if d.is_zero() => {
                    Err(self.error(t.span(), "`timeout` must be more than zero"))
                }
                Ok(d) if d > LimitOverrides::MAX_TIMEOUT => Err(self.error(
                    t.span(),
                    format!(
                        "`timeout` must be at most {}",
                        crate::units::format_duration(LimitOverrides::MAX_TIMEOUT)
                    ),
                )),
                Ok(d) => Ok(d),
                Err(e) => Err(self.error(t.span(), e.to_string())),
            })
            .transpose()?;
        let memory_limit = memory_limit
            .map(|m| match parse_size(m.get_ref()) {
                Ok(bytes) if bytes < (1 << 20) => {
                    Err(self.error(m.span(), "`memoryLimit` must be at least 1MiB"))
                }
                Ok(bytes) => Ok(bytes),
                Err(e) => Err(self.error(m.span(), e.to_string())),
            })
            .transpose()?;
        let max_output = max_output
            .map(|m| match parse_size(m.get_ref()) {
                Ok(0) => Err(self.error(m.span(), "`maxOutput` must be more than zero")),
                Ok(bytes) => Ok(bytes),
                Err(e) => Err(self.error(m.span(), e.to_string())),
            })
            .transpose()?;
        Ok(LimitOverrides {
            timeout,
            memory_limit,
            max_output,
        })
    }

    fn dir_grant(&self, raw: RawDirGrant, plan_dir: &Path) -> Result<DirGrant, SpecError> {
        let mode = match raw.mode.get_ref().as_str() {
            "ro" => DirMode::Ro,
            "rw" => DirMode::Rw,
            other => {
                return Err(self.error(
                    raw.mode.span(),
                    format!("mode `{other}` is not `ro` or `rw`"),
                ));
            }
        };
        let guest = raw.guest.get_ref();
        if !is_clean_absolute(Path::new(guest)) {
            return Err(self.error(
                raw.guest.span(),
                format!("guest path `{guest}` must be absolute, without `.` or `..`"),
            ));
        }
        let host = Path::new(raw.host.get_ref());
        if raw.host.get_ref().is_empty() {
            return Err(self.error(raw.host.span(), "host path is empty"));
        }
        Ok(DirGrant {
            host: normalize(&plan_dir.join(host)),
            guest: without_trailing_slash(guest),
            mode,
        })
    }

    fn defaults(&self, raw: Option<RawPolicy>) -> Result<PlanDefaults, SpecError> {
        let defaults = PlanDefaults::default();
        let Some(raw) = raw else {
            return Ok(defaults);
        };
        let max_parallel = raw
            .max_parallel
            .map(|m| match m.get_ref() {
                1..=MAX_PARALLEL => Ok(*m.get_ref() as u32),
                _ => Err(self.error(
                    m.span(),
                    format!("`maxParallel` must be from 1 to {MAX_PARALLEL}"),
                )),
            })
            .transpose()?;
        let retry = self.policy(defaults.retry(), raw.max_retries, raw.backoff)?;
        Ok(PlanDefaults {
            max_retries: retry.max_retries,
            backoff: retry.backoff,
            limits: self.limits(raw.timeout, raw.memory_limit, raw.max_output)?,
            max_parallel,
        })
    }

    /// Grants with host paths relative to the file's directory made absolute.
    fn grants(&self, raw: Option<RawGrants>) -> Result<Grants, SpecError> {
        let mut grants = Grants::default();
        let Some(raw) = raw else {
            return Ok(grants);
        };
        let base = self.file.parent().unwrap_or(Path::new("."));
        for entry in raw.http.unwrap_or_default() {
            let allow = HttpAllow::parse(entry.get_ref())
                .map_err(|e| self.error(entry.span(), e.to_string()))?;
            grants.http.push(allow);
        }
        for raw_dir in raw.dirs.unwrap_or_default() {
            let span = raw_dir.guest.span();
            let grant = self.dir_grant(raw_dir, base)?;
            if grants.dirs.iter().any(|g| g.guest == grant.guest) {
                return Err(self.error(
                    span,
                    format!("guest path `{}` is granted twice", grant.guest),
                ));
            }
            grants.dirs.push(grant);
        }
        Ok(grants)
    }

    fn task(&self, raw: RawTask, defaults: &PlanDefaults) -> Result<ParsedTask, SpecError> {
        let name_span = raw.name_span();
        let name = raw
            .name
            .map(|n| {
                TaskName::new(n.get_ref().as_str()).map_err(|e| self.error(n.span(), e.to_string()))
            })
            .transpose()?;
        let (depends_on, depends_on_span) = match raw.depends_on {
            Some(list) => {
                let span = list.span();
                let names = list
                    .into_inner()
                    .into_iter()
                    .map(|n| {
                        TaskName::new(n.get_ref().as_str())
                            .map_err(|e| self.error(n.span(), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (Some(names), Some(span))
            }
            None => (None, None),
        };
        let limits = self
            .limits(raw.timeout, raw.memory_limit, raw.max_output)?
            .or(defaults.limits);
        let type_span = raw.task_type.span();
        let task_type = TaskType::new(raw.task_type.into_inner())
            .map_err(|e| self.error(type_span.clone(), e.to_string()))?;
        let params = match raw.params {
            Some(table) => {
                let span = table.span();
                toml_to_json(toml::Value::Table(table.into_inner()))
                    .map_err(|message| self.error(span, message))?
            }
            None => Value::Object(Default::default()),
        };
        let policy = self.policy(defaults.retry(), raw.max_retries, raw.backoff)?;
        let location = self.lines.location(type_span.start);
        // Graph errors point at `dependsOn`, else at the name, else at the type.
        let graph_span = depends_on_span.or(name_span).unwrap_or(type_span);
        Ok(ParsedTask {
            spec: TaskSpec {
                task_type,
                name,
                depends_on,
                params,
                policy,
                limits,
            },
            location,
            graph_span,
        })
    }

    /// Checks the tasks' names and `dependsOn` as a whole, reporting at the task at fault.
    fn graph(&self, tasks: &[ParsedTask]) -> Result<(), SpecError> {
        Graph::build(tasks.iter().map(|t| t.spec.links()))
            .map(drop)
            .map_err(|e| self.error(tasks[e.task_index()].graph_span.clone(), e.to_string()))
    }
}

/// The most `maxParallel` may be: far beyond any machine's useful parallelism.
pub const MAX_PARALLEL: i64 = 4096;

/// A task as read, with where to point at it.
struct ParsedTask {
    spec: TaskSpec,
    location: Location,
    graph_span: Range<usize>,
}

impl RawTask {
    fn name_span(&self) -> Option<Range<usize>> {
        self.name.as_ref().map(Spanned::span)
    }
}

impl TaskSpec {
    /// Its name and `dependsOn`, for the plan's graph.
    pub fn links(&self) -> Links<'_> {
        Links {
            name: self.name.as_ref(),
            depends_on: self.depends_on.as_deref(),
        }
    }
}

impl PlanSpec {
    /// Parses plan file text. `file` names it in errors; relative grant paths are taken
    /// relative to its directory. Pure: the file system is not touched.
    pub fn parse(source: &str, file: &Path) -> Result<Self, SpecError> {
        let reader = Reader {
            lines: LineIndex::new(source),
            file,
        };
        let raw: RawPlan = toml::from_str(source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            reader.error(span, e.message().trim_end().to_owned())
        })?;

        let defaults = reader.defaults(raw.defaults)?;
        let grants = reader.grants(raw.grants)?;
        let raw_tasks = raw.tasks.unwrap_or_default();
        if raw_tasks.is_empty() {
            return Err(reader.error(source.len()..source.len(), "the plan has no [[tasks]]"));
        }
        let parsed = raw_tasks
            .into_iter()
            .map(|raw_task| reader.task(raw_task, &defaults))
            .collect::<Result<Vec<_>, _>>()?;
        reader.graph(&parsed)?;
        let (tasks, task_locations) = parsed.into_iter().map(|t| (t.spec, t.location)).unzip();
        Ok(PlanSpec {
            name: raw.name,
            defaults,
            grants,
            tasks,
            task_locations,
        })
    }
}

/// What the server lets requests have (`planrt serve --grants FILE`): the `[defaults]` and
/// `[grants]` tables of a plan file — what every task submitted on its own runs with, and
/// the most a plan sent over HTTP may grant — and `[secrets] env`, the environment
/// variables a request may name as `$env` secrets (none unless listed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSettings {
    /// Retry policy and limits.
    pub defaults: PlanDefaults,
    /// What the tasks may reach.
    pub grants: Grants,
    /// Environment variables requests may name as secrets.
    pub secrets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTaskSettings {
    defaults: Option<RawPolicy>,
    grants: Option<RawGrants>,
    secrets: Option<RawSecrets>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    env: Option<Vec<Spanned<String>>>,
}

/// Whether `name` is an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`).
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl TaskSettings {
    /// Parses a settings file: `file` names it in errors; relative grant paths are taken
    /// relative to its directory.
    pub fn parse(source: &str, file: &Path) -> Result<Self, SpecError> {
        let reader = Reader {
            lines: LineIndex::new(source),
            file,
        };
        let raw: RawTaskSettings = toml::from_str(source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            reader.error(span, e.message().trim_end().to_owned())
        })?;
        let mut secrets = Vec::new();
        for name in raw.secrets.and_then(|s| s.env).unwrap_or_default() {
            if !is_env_name(name.get_ref()) {
                return Err(reader.error(
                    name.span(),
                    format!("`{}` is not an environment variable name", name.get_ref()),
                ));
            }
            secrets.push(name.into_inner());
        }
        if let Some(defaults) = &raw.defaults {
            reader.refuse(
                &defaults.max_parallel,
                "`maxParallel` applies to a plan's graph, not to tasks submitted on their own",
            )?;
        }
        Ok(Self {
            defaults: reader.defaults(raw.defaults)?,
            grants: reader.grants(raw.grants)?,
            secrets,
        })
    }
}

/// A plan sent as JSON (the HTTP API) that cannot be used. JSON has no line numbers worth
/// giving: the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan: {0}")]
pub struct JsonPlanError(pub String);

impl PlanSpec {
    /// Parses a plan sent as JSON: the plan file's schema (same keys, same rules, unknown
    /// keys refused), with absolute host paths in its grants (there is no file for a
    /// relative one to be relative to).
    pub fn from_json(document: &Value) -> Result<Self, JsonPlanError> {
        if !document.is_object() {
            return Err(JsonPlanError("a plan is a JSON object".into()));
        }
        let dirs = document
            .pointer("/grants/dirs")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (index, dir) in dirs.iter().enumerate() {
            if let Some(host) = dir.get("host").and_then(Value::as_str)
                && !Path::new(host).is_absolute()
            {
                return Err(JsonPlanError(format!(
                    "`grants.dirs[{index}].host` is `{host}`: a plan sent over HTTP grants absolute paths only"
                )));
            }
        }
        let table = json_to_toml(document, "plan").map_err(JsonPlanError)?;
        let source = toml::to_string(&table).map_err(|e| JsonPlanError(e.to_string()))?;
        Self::parse(&source, Path::new("/request.json")).map_err(|e| JsonPlanError(e.message))
    }
}

/// Converts JSON to TOML (the plan file's types); `path` names the value in errors.
fn json_to_toml(value: &Value, path: &str) -> Result<toml::Value, String> {
    Ok(match value {
        Value::Null => return Err(format!("`{path}` is null: a plan has no null values")),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err(format!("`{path}` is {n}: too large for a plan's integers")),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| json_to_toml(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(key, item)| {
                    let inner = if path == "plan" {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    json_to_toml(item, &inner).map(|v| (key.clone(), v))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Converts TOML params to JSON. Datetimes become RFC 3339 strings.
fn toml_to_json(value: toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("params may not hold `{f}`: JSON has no such number"))?,
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(toml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(k, v)| toml_to_json(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// `/home/` → `/home`; `/` stays `/`.
fn without_trailing_slash(path: &str) -> String {
    match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

/// Whether `path` is absolute with no `.` or `..` components.
fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Removes `.` and resolves `..` lexically (the directory need not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(source: &str) -> Result<PlanSpec, SpecError> {
        PlanSpec::parse(source, Path::new("/plans/node.toml"))
    }

    fn error_at(source: &str) -> (usize, usize, String) {
        let e = parse(source).unwrap_err();
        assert_eq!(e.file, Path::new("/plans/node.toml"));
        (e.location.line, e.location.column, e.message)
    }

    const FULL: &str = r#"
name = "bootstrap-node"
[defaults]
maxRetries = 1
backoff = { initial = "150ms", factor = 3, max = "2s", jitter = false }
[grants]
dirs = [{ host = "./node-home", guest = "/home", mode = "rw" }, { host = "/etc/x/../ro", guest = "/ro/", mode = "ro" }]

[[tasks]]
type = "config-patch"
maxRetries = 2
[tasks.params.files."config.toml"]
p2p = { max_num_inbound_peers = 40 }

[[tasks]]
type = "echo"
backoff = { initial = "1s" }
"#;

    #[test]
    fn full_plan_parses_with_defaults_and_overrides() {
        let spec = parse(FULL).unwrap();
        assert_eq!(spec.name.as_deref(), Some("bootstrap-node"));
        assert_eq!(spec.defaults.max_retries, 1);
        assert_eq!(spec.defaults.backoff.initial, Duration::from_millis(150));
        assert_eq!(spec.defaults.backoff.factor, 3.0);
        assert_eq!(spec.tasks.len(), 2);
        assert_eq!(spec.tasks[0].task_type.as_str(), "config-patch");
        assert_eq!(spec.tasks[0].policy.max_retries, 2);
        assert_eq!(spec.tasks[0].policy.backoff, spec.defaults.backoff);
        assert_eq!(
            spec.tasks[0].params,
            serde_json::json!({"files": {"config.toml": {"p2p": {"max_num_inbound_peers": 40}}}})
        );
        assert_eq!(spec.tasks[1].policy.max_retries, 1);
        assert_eq!(spec.tasks[1].policy.backoff.initial, Duration::from_secs(1));
        assert_eq!(spec.tasks[1].policy.backoff.max, Duration::from_secs(2));
        assert_eq!(spec.tasks[1].params, serde_json::json!({}));
        assert_eq!(
            spec.task_locations[0],
            Location {
                line: 10,
                column: 8
            }
        );
        assert_eq!(spec.grants.dirs[0].host, Path::new("/plans/node-home"));
        assert_eq!(spec.grants.dirs[0].guest, "/home");
        assert_eq!(spec.grants.dirs[1].host, Path::new("/etc/ro"));
        assert_eq!(spec.grants.dirs[1].guest, "/ro");
        assert_eq!(spec.grants.dirs[1].mode, DirMode::Ro);
    }

    #[test]
    fn unknown_keys_are_located() {
        let (line, column, message) = error_at("[[tasks]]\ntype = \"echo\"\nretries = 3\n");
        assert_eq!((line, column), (3, 1));
        assert!(message.contains("unknown field `retries`"), "{message}");
        let (line, _, message) = error_at("colour = 1\n[[tasks]]\ntype = \"echo\"\n");
        assert_eq!(line, 1);
        assert!(message.contains("unknown field `colour`"), "{message}");
    }

    #[test]
    fn names_and_depends_on_make_a_graph() {
        let spec = parse(
            "[defaults]\nmaxParallel = 3\n\
             [[tasks]]\ntype = \"a\"\nname = \"restore\"\n\
             [[tasks]]\ntype = \"b\"\nname = \"patch\"\ndependsOn = [\"restore\"]\n\
             [[tasks]]\ntype = \"c\"\ndependsOn = [\"restore\", \"patch\"]\n",
        )
        .unwrap();
        assert_eq!(spec.defaults.max_parallel, Some(3));
        assert_eq!(spec.tasks[0].name.as_ref().unwrap().as_str(), "restore");
        assert_eq!(spec.tasks[0].depends_on, None);
        let names: Vec<&str> = spec.tasks[2]
            .depends_on
            .iter()
            .flatten()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(names, ["restore", "patch"]);
        assert_eq!(spec.tasks[2].name, None);
    }

    #[test]
    fn bad_graphs_are_refused_where_they_are_written() {
        let (line, column, message) = error_at(
            "[[tasks]]\ntype = \"e\"\nname = \"a\"\n[[tasks]]\ntype = \"e\"\ndependsOn = [\"zz\"]\n",
        );
        assert_eq!((line, column), (6, 13));
        assert!(message.contains("task 1 depends on `zz`"), "{message}");
        let (line, _, message) = error_at(
            "[[tasks]]\ntype = \"e\"\nname = \"a\"\n[[tasks]]\ntype = \"e\"\nname = \"a\"\n",
        );
        assert_eq!(line, 6);
        assert!(
            message.contains("tasks 0 and 1 are both named `a`"),
            "{message}"
        );
        let (line, _, message) = error_at(
            "[[tasks]]\ntype = \"e\"\nname = \"a\"\ndependsOn = [\"b\"]\n\
             [[tasks]]\ntype = \"e\"\nname = \"b\"\ndependsOn = [\"a\"]\n",
        );
        assert_eq!(line, 4);
        assert!(
            message.contains("cycle: `a` (task 0) → `b` (task 1) → `a` (task 0)"),
            "{message}"
        );
        let (line, column, message) = error_at("[[tasks]]\ntype = \"e\"\nname = \"Bad\"\n");
        assert_eq!((line, column), (3, 8));
        assert!(message.contains("task name `Bad` must match"), "{message}");
        let (line, _, message) = error_at("[[tasks]]\ntype = \"e\"\ndependsOn = [0]\n");
        assert_eq!(line, 3);
        assert!(message.contains("invalid type"), "{message}");
        for bad in ["0", "5000", "-1"] {
            let (line, _, message) = error_at(&format!(
                "[defaults]\nmaxParallel = {bad}\n[[tasks]]\ntype = \"e\"\n"
            ));
            assert_eq!(line, 2);
            assert!(
                message.contains("`maxParallel` must be from 1 to 4096"),
                "{message}"
            );
        }
    }

    #[test]
    fn limits_come_from_the_task_then_the_defaults() {
        let spec = parse(
            "[defaults]\ntimeout = \"2m\"\nmemoryLimit = \"256MiB\"\nmaxOutput = \"64KiB\"\n\
             [[tasks]]\ntype = \"a\"\ntimeout = \"150ms\"\n[[tasks]]\ntype = \"b\"\nmemoryLimit = \"1GB\"\nmaxOutput = \"2MB\"\n",
        )
        .unwrap();
        assert_eq!(spec.defaults.limits.timeout, Some(Duration::from_secs(120)));
        assert_eq!(
            spec.tasks[0].limits,
            LimitOverrides {
                timeout: Some(Duration::from_millis(150)),
                memory_limit: Some(256 << 20),
                max_output: Some(64 << 10),
            }
        );
        assert_eq!(
            spec.tasks[1].limits,
            LimitOverrides {
                timeout: Some(Duration::from_secs(120)),
                memory_limit: Some(1_000_000_000),
                max_output: Some(2_000_000),
            }
        );
        assert_eq!(
            parse("[[tasks]]\ntype = \"a\"\n").unwrap().tasks[0].limits,
            LimitOverrides::default()
        );
        let (line, _, m) = error_at("[[tasks]]\ntype = \"a\"\nmemoryLimit = \"12 parsecs\"\n");
        assert_eq!(line, 3);
        assert!(m.contains("not a size"), "{m}");
        let (_, _, m) = error_at("[defaults]\ntimeout = \"0s\"\n[[tasks]]\ntype = \"a\"\n");
        assert!(m.contains("more than zero"), "{m}");
        let (_, _, m) = error_at("[[tasks]]\ntype = \"a\"\nmemoryLimit = \"10KiB\"\n");
        assert!(m.contains("at least 1MiB"), "{m}");
        let (line, _, m) = error_at("[[tasks]]\ntype = \"a\"\nmaxOutput = \"0B\"\n");
        assert_eq!(line, 3);
        assert!(m.contains("`maxOutput` must be more than zero"), "{m}");
    }

    #[test]
    fn http_grants_are_parsed_and_located() {
        let spec = parse(
            "[grants]\nhttp = [\"127.0.0.1:8080\", \"*.example.com\"]\n[[tasks]]\ntype = \"e\"\n",
        )
        .unwrap();
        let http: Vec<String> = spec.grants.http.iter().map(|h| h.to_string()).collect();
        assert_eq!(http, ["127.0.0.1:8080", "*.example.com"]);
        let (line, column, m) =
            error_at("[grants]\nhttp = [\"ok.com\", \"http://x.com\"]\n[[tasks]]\ntype = \"e\"\n");
        assert_eq!((line, column), (2, 19));
        assert!(m.contains("not an HTTP grant"), "{m}");
    }

    #[test]
    fn wrong_types_and_bad_toml_are_located() {
        let (line, column, message) =
            error_at("[[tasks]]\ntype = \"echo\"\nmaxRetries = \"two\"\n");
        assert_eq!((line, column), (3, 14));
        assert!(message.contains("invalid type"), "{message}");
        let (line, _, _) = error_at("[[tasks]]\ntype = \"echo\"\nmaxRetries = -1\n");
        assert_eq!(line, 3);
        let (line, _, _) = error_at("[[tasks]\ntype = \"echo\"\n");
        assert_eq!(line, 1);
        let (line, column, message) = error_at("[[tasks]]\ntype = \"Echo\"\n");
        assert_eq!((line, column), (2, 8));
        assert!(message.contains("[a-z][a-z0-9-]*"), "{message}");
        let (line, _, message) =
            error_at("[[tasks]]\ntype = \"e\"\nbackoff = { initial = \"soon\" }\n");
        assert_eq!(line, 3);
        assert!(message.contains("not a duration"), "{message}");
        let (_, _, message) = error_at("[[tasks]]\ntype = \"e\"\nbackoff = { factor = 0.5 }\n");
        assert!(message.contains("≥ 1"), "{message}");
        let (_, _, message) = error_at("[[tasks]]\ntype = \"e\"\nparams = 3\n");
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn grants_are_checked() {
        let grant = |g: &str| format!("[grants]\ndirs = [{g}]\n[[tasks]]\ntype = \"e\"\n");
        let (_, _, m) = error_at(&grant(r#"{ host = "a", guest = "home", mode = "rw" }"#));
        assert!(m.contains("must be absolute"), "{m}");
        let (_, _, m) = error_at(&grant(
            r#"{ host = "a", guest = "/home/../etc", mode = "rw" }"#,
        ));
        assert!(m.contains("must be absolute"), "{m}");
        let (_, _, m) = error_at(&grant(r#"{ host = "a", guest = "/home", mode = "rwx" }"#));
        assert!(m.contains("`rwx`"), "{m}");
        let (_, _, m) = error_at(&grant(
            r#"{ host = "a", guest = "/h", mode = "ro" }, { host = "b", guest = "/h/", mode = "ro" }"#,
        ));
        assert!(m.contains("granted twice"), "{m}");
        let (_, _, m) = error_at(&grant(r#"{ host = "a", guest = "/h" }"#));
        assert!(m.contains("missing field `mode`"), "{m}");
    }

    #[test]
    fn a_plan_needs_tasks() {
        let (_, _, m) = error_at("name = \"empty\"\n");
        assert!(m.contains("no [[tasks]]"), "{m}");
    }

    #[test]
    fn toml_values_become_json() {
        let spec = parse("[[tasks]]\ntype = \"e\"\n[tasks.params]\nwhen = 1979-05-27T07:32:00Z\nlist = [1, 2.5, true]\n").unwrap();
        assert_eq!(
            spec.tasks[0].params,
            serde_json::json!({"when": "1979-05-27T07:32:00Z", "list": [1, 2.5, true]})
        );
        let (_, _, m) = error_at("[[tasks]]\ntype = \"e\"\n[tasks.params]\nx = nan\n");
        assert!(m.contains("JSON has no such number"), "{m}");
    }

    #[test]
    fn the_line_index_places_every_offset_as_a_scan_from_the_start_would() {
        let source = "a = 1\n\n[[tasks]]\ntype = \"é\"\r\nx\n";
        let index = LineIndex::new(source);
        for offset in 0..=source.len() + 2 {
            if !source.is_char_boundary(offset.min(source.len())) {
                continue;
            }
            let clamped = offset.min(source.len());
            let before = &source[..clamped];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = source[line_start..clamped].chars().count() + 1;
            assert_eq!(
                index.location(offset),
                Location { line, column },
                "offset {offset}"
            );
        }
    }

    #[test]
    fn locations_count_characters() {
        assert_eq!(
            LineIndex::new("ab\ncé\nx").location(6),
            Location { line: 2, column: 3 }
        );
        assert_eq!(
            LineIndex::new("abc").location(0),
            Location { line: 1, column: 1 }
        );
    }

    #[test]
    fn a_json_plan_follows_the_plan_files_schema() {
        let document = serde_json::json!({
            "name": "over-http",
            "defaults": {"maxRetries": 2, "timeout": "30s"},
            "grants": {"dirs": [{"host": "/srv/node", "guest": "/home", "mode": "rw"}],
                       "http": ["127.0.0.1:8080"]},
            "tasks": [
                {"type": "config-patch", "params": {"files": {"config.toml": {"a": 1, "b": 1.5}}}},
                {"type": "test-echo", "maxRetries": 0}
            ]
        });
        let spec = PlanSpec::from_json(&document).unwrap();
        assert_eq!(spec.name.as_deref(), Some("over-http"));
        assert_eq!(spec.tasks.len(), 2);
        assert_eq!(spec.tasks[0].policy.max_retries, 2);
        assert_eq!(spec.tasks[1].policy.max_retries, 0);
        assert_eq!(
            spec.tasks[0].params,
            serde_json::json!({"files": {"config.toml": {"a": 1, "b": 1.5}}})
        );
        assert_eq!(spec.grants.dirs[0].host, Path::new("/srv/node"));
        assert_eq!(
            spec.tasks[0].limits.timeout,
            Some(std::time::Duration::from_secs(30))
        );
    }

    #[test]
    fn a_json_plan_is_refused_naming_the_key() {
        let refused = |document: serde_json::Value| PlanSpec::from_json(&document).unwrap_err().0;
        assert!(refused(serde_json::json!([])).contains("JSON object"));
        assert!(
            refused(serde_json::json!({"tasks": [{"type": "a", "bogus": 1}]}))
                .contains("unknown field `bogus`")
        );
        assert!(refused(serde_json::json!({"tasks": []})).contains("no [[tasks]]"));
        assert!(
            refused(serde_json::json!({"tasks": [{"type": "a", "params": {"x": null}}]}))
                .contains("`tasks[0].params.x` is null")
        );
        let relative = refused(serde_json::json!({
            "grants": {"dirs": [{"host": "node", "guest": "/home", "mode": "rw"}]},
            "tasks": [{"type": "a"}]
        }));
        assert!(relative.contains("`grants.dirs[0].host`"), "{relative}");
        assert!(
            refused(serde_json::json!({"tasks": [{"type": "a", "timeout": "0s"}]}))
                .contains("`timeout` must be more than zero")
        );
        // A deadline is the clock plus the timeout: one that far off is refused, not a
        // panic when the attempt starts.
        let far = refused(serde_json::json!({"tasks": [{"type": "a", "timeout": "500000y"}]}));
        assert!(far.contains("`timeout` must be at most 30days"), "{far}");
        assert!(
            PlanSpec::parse(
                "[[tasks]]\ntype = \"a\"\ntimeout = \"30d\"\n",
                Path::new("/p")
            )
            .is_ok()
        );
    }

    #[test]
    fn task_settings_take_defaults_and_grants_and_nothing_else() {
        let file = Path::new("/etc/planrt/grants.toml");
        let settings = TaskSettings::parse(
            "[defaults]\nmaxRetries = 3\n[grants]\ndirs = [{ host = \"node\", guest = \"/home\", mode = \"ro\" }]\n",
            file,
        )
        .unwrap();
        assert_eq!(settings.defaults.max_retries, 3);
        assert_eq!(settings.grants.dirs[0].host, Path::new("/etc/planrt/node"));
        let tasks = TaskSettings::parse("[[tasks]]\ntype = \"a\"\n", file).unwrap_err();
        assert!(tasks.message.contains("unknown field `tasks`"), "{tasks}");
        assert_eq!(
            TaskSettings::parse("", file).unwrap(),
            TaskSettings::default()
        );
    }
}
