//! Board configuration: `board-configs/NAME.toml` (`--board NAME`), a
//! `--config FILE` over it key by key, and command-line flags over both.
//!
//! The files are read by a small parser of the TOML subset they use —
//! `[table]` headers, `key = value` with strings, integers, booleans and
//! one-line arrays of those, `#` comments — because the `toml` crate could
//! not be fetched when this was written (offline build). It is strict: any
//! other syntax is an error naming the file and line, never a guess. The
//! parsed tables become a `serde_json::Value` checked against `BoardConfig`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::image::Platform;

/// Directories searched for `NAME.toml`, colon-separated, before the
/// installed ones (tests point it at the source tree's board-configs).
pub const SEARCH_ENV: &str = "BRAMBLE_BOARD_CONFIGS";
/// Where `make install` puts board-configs/ with the default PREFIX.
pub const INSTALLED_DIR: &str = "/usr/local/share/bramble/board-configs";

#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    NoBoard {
        name: String,
        searched: Vec<PathBuf>,
    },
    Syntax {
        origin: String,
        line: usize,
        detail: String,
    },
    UnknownTable {
        origin: String,
        line: usize,
        table: String,
    },
    UnknownKey {
        origin: String,
        line: usize,
        table: String,
        key: String,
    },
    Invalid {
        origin: String,
        line: Option<usize>,
        table: String,
        key: String,
        detail: String,
    },
    /// Keys that are valid alone but not together (after merging layers).
    Inconsistent(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            ConfigError::NoBoard { name, searched } => {
                let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
                write!(
                    f,
                    "no board config {name:?}: {name}.toml is not in {} (set {SEARCH_ENV} to a directory holding it)",
                    dirs.join(", ")
                )
            }
            ConfigError::Syntax {
                origin,
                line,
                detail,
            } => write!(f, "{origin}:{line}: {detail}"),
            ConfigError::UnknownTable {
                origin,
                line,
                table,
            } => {
                write!(f, "{origin}:{line}: unknown table [{table}]")
            }
            ConfigError::UnknownKey {
                origin,
                line,
                table,
                key,
            } if table.is_empty() => {
                write!(f, "{origin}:{line}: unknown key {key:?} outside any table")
            }
            ConfigError::UnknownKey {
                origin,
                line,
                table,
                key,
            } => {
                write!(f, "{origin}:{line}: unknown key {key:?} in [{table}]")
            }
            ConfigError::Invalid {
                origin,
                line,
                table,
                key,
                detail,
            } => match line {
                Some(line) => write!(f, "{origin}:{line}: {key} in [{table}]: {detail}"),
                None => write!(f, "{origin}: {key} in [{table}]: {detail}"),
            },
            ConfigError::Inconsistent(detail) => write!(f, "board configuration: {detail}"),
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// The file's shape. Every key is optional in a file, so that a --config file
// can set only what it changes; `Settings::resolve` fills in the defaults.

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardConfig {
    pub platform: PlatformTable,
    pub node: NodeTable,
    pub logs: LogsTable,
    pub sqlite: SqliteTable,
    pub node_failure: NodeFailureTable,
    pub image_gc: ImageGcTable,
    pub devices: DevicesTable,
    pub security: SecurityTable,
    pub limits: LimitsTable,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformTable {
    pub architecture: Option<String>,
    pub variant: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeTable {
    pub reserved_memory: Option<String>,
    pub max_pods: Option<u32>,
    pub labels: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTable {
    pub max_size: Option<String>,
    pub max_files: Option<u32>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteTable {
    pub wal_autocheckpoint: Option<u32>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeFailureTable {
    pub node_monitor_grace: Option<String>,
    pub pod_eviction_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageGcTable {
    pub high_percent: Option<u8>,
    pub low_percent: Option<u8>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesTable {
    pub allowed: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityTable {
    pub allow_privileged: Option<bool>,
    pub allow_host_network: Option<bool>,
    pub host_path_prefixes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsTable {
    pub objects_per_namespace: Option<u32>,
    pub max_image_size: Option<String>,
    pub max_watches: Option<u32>,
    pub max_connections: Option<u32>,
}

const MAX_PODS: std::ops::RangeInclusive<u32> = 1..=250;
const WAL_PAGES: std::ops::RangeInclusive<u32> = 1..=100_000;
const MIN_LOG_BYTES: u64 = 4096;
/// Small-cluster defaults: a lost board's pods move within a minute
/// (Kubernetes' 40 s and 300 s suit large clusters on reliable networks).
const DEFAULT_NODE_MONITOR_GRACE: Duration = Duration::from_secs(20);
const DEFAULT_POD_EVICTION_TIMEOUT: Duration = Duration::from_secs(30);
/// One and a half kubelet heartbeat periods (10 s).
const MIN_NODE_MONITOR_GRACE: Duration = Duration::from_secs(15);

/// A quantity ("128Mi") as whole bytes.
fn bytes(text: &str) -> Result<u64, String> {
    match crate::model::validate::parse_quantity(text) {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64 => Ok(n as u64),
        _ => Err(format!(
            "{text:?} is not a whole, non-negative quantity of bytes such as \"128Mi\""
        )),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(e) => Err(format!(
            "{text:?} is not a duration such as \"40s\" or \"5m\": {e}"
        )),
    }
}

/// `key=value`, both valid as Kubernetes label key and value.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("{text:?} is not a label key=value"));
    };
    let errors: Vec<String> = crate::model::selector::label_key_errors(key)
        .into_iter()
        .chain(crate::model::selector::label_value_errors(value))
        .collect();
    match errors.is_empty() {
        true => Ok((key.to_string(), value.to_string())),
        false => Err(format!("label {text:?}: {}", errors.join("; "))),
    }
}

fn in_range<T: PartialOrd + fmt::Display>(
    v: T,
    r: std::ops::RangeInclusive<T>,
) -> Result<(), String> {
    match r.contains(&v) {
        true => Ok(()),
        false => Err(format!(
            "must be between {} and {}, not {v}",
            r.start(),
            r.end()
        )),
    }
}

impl BoardConfig {
    /// Checks each value that is set, alone; `Settings::resolve` checks the
    /// keys that constrain each other.
    fn check(&self) -> Result<(), String> {
        if let Some(a) = &self.platform.architecture
            && !["arm64", "arm"].contains(&a.as_str())
        {
            return Err(format!("{a:?} is not \"arm64\" or \"arm\""));
        }
        if let Some(v) = &self.platform.variant
            && !["v8", "v7", "v6"].contains(&v.as_str())
        {
            return Err(format!("{v:?} is not \"v8\", \"v7\" or \"v6\""));
        }
        if let Some(q) = &self.node.reserved_memory {
            bytes(q)?;
        }
        if let Some(n) = self.node.max_pods {
            in_range(n, MAX_PODS)?;
        }
        for l in self.node.labels.iter().flatten() {
            parse_label(l)?;
        }
        if let Some(q) = &self.logs.max_size
            && bytes(q)? < MIN_LOG_BYTES
        {
            return Err(format!("{q:?} is below the 4Ki minimum"));
        }
        if let Some(n) = self.logs.max_files {
            in_range(n, 1..=20)?;
        }
        if let Some(n) = self.sqlite.wal_autocheckpoint {
            in_range(n, WAL_PAGES)?;
        }
        if let Some(d) = &self.node_failure.node_monitor_grace
            && duration(d)? < MIN_NODE_MONITOR_GRACE
        {
            return Err(format!(
                "{d:?} is shorter than 15s: a kubelet posts its status every 10s, so its node would flap"
            ));
        }
        if let Some(d) = &self.node_failure.pod_eviction_timeout {
            duration(d)?;
        }
        for p in [self.image_gc.high_percent, self.image_gc.low_percent]
            .into_iter()
            .flatten()
        {
            in_range(p, 1..=100)?;
        }
        for d in self.devices.allowed.iter().flatten() {
            let path = Path::new(d);
            let plain = path.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
            if !d.starts_with("/dev/") || !plain {
                return Err(format!("{d:?} is not a path under /dev/"));
            }
        }
        if let Some(n) = self.limits.objects_per_namespace {
            in_range(n, 100..=1_000_000)?;
        }
        if let Some(q) = &self.limits.max_image_size
            && bytes(q)? < 64 << 10
        {
            return Err(format!("{q:?} is below the 64Ki minimum"));
        }
        if let Some(n) = self.limits.max_watches {
            in_range(n, 1..=4096)?;
        }
        if let Some(n) = self.limits.max_connections {
            in_range(n, 4..=4096)?;
        }
        for p in self.security.host_path_prefixes.iter().flatten() {
            let plain = Path::new(p).components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
            if !p.starts_with('/') || !plain {
                return Err(format!("{p:?} is not an absolute path without \"..\""));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The resolved values the server applies.

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The platform images are chosen for when imported.
    pub platform: Platform,
    /// Memory kept from pods: node allocatable = capacity - this.
    pub reserved_memory: u64,
    /// Node capacity in pods; the scheduler binds no more.
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// SQLite `wal_autocheckpoint` of the store, in pages.
    pub wal_autocheckpoint: u32,
    /// Silence after which the node lifecycle controller counts a node as
    /// lost (Unknown, tainted unreachable).
    pub node_monitor_grace: Duration,
    /// tolerationSeconds of the not-ready/unreachable tolerations new pods
    /// get: how long their lost node keeps them before they are evicted.
    pub pod_eviction_timeout: Duration,
    pub image_gc_high_percent: u8,
    pub image_gc_low_percent: u8,
    /// Objects a namespace may hold, all kinds together.
    pub objects_per_namespace: u32,
    /// Images whose compressed layers add up to more are refused.
    pub max_image_bytes: u64,
    /// Watches and log follows open at once (each holds a thread).
    pub max_watches: u32,
    /// API connections open at once (each holds a thread).
    pub max_connections: u32,
    /// What pods may do on this board: privileged, host network, hostPath
    /// prefixes, host devices. Nothing of it by default.
    pub security: crate::security::Policy,
}

impl Settings {
    /// Keys not set take the values bramble had before board configs: the
    /// kubelet's pod and image GC defaults, SQLite's own checkpoint interval,
    /// the host's platform.
    pub fn resolve(c: &BoardConfig) -> Result<Settings, ConfigError> {
        Settings::build(c).map_err(ConfigError::Inconsistent)
    }

    fn build(c: &BoardConfig) -> Result<Settings, String> {
        let platform = match (&c.platform.architecture, &c.platform.variant) {
            (None, None) => Platform::host(),
            (Some(a), Some(v)) if (a == "arm64") == (v == "v8") => Platform::new("linux", a, v),
            (a, v) => {
                return Err(format!(
                    "architecture {a:?} with variant {v:?}: want arm64 with v8, or arm with v7 or v6"
                ));
            }
        };
        let (high, low) = (
            c.image_gc.high_percent.unwrap_or(85),
            c.image_gc.low_percent.unwrap_or(80),
        );
        if low >= high {
            return Err(format!(
                "image_gc low_percent ({low}) must be below high_percent ({high})"
            ));
        }
        let bytes_or = |q: &Option<String>, default| q.as_deref().map_or(Ok(default), bytes);
        let duration_or = |d: &Option<String>, default| d.as_deref().map_or(Ok(default), duration);
        Ok(Settings {
            platform,
            reserved_memory: bytes_or(&c.node.reserved_memory, 0)?,
            max_pods: c.node.max_pods.unwrap_or(110),
            labels: c
                .node
                .labels
                .iter()
                .flatten()
                .map(String::as_str)
                .map(parse_label)
                .collect::<Result<_, _>>()?,
            // What the kubelet used before board configs existed.
            log_max_bytes: bytes_or(&c.logs.max_size, 1 << 20)?,
            log_max_files: c.logs.max_files.unwrap_or(2),
            wal_autocheckpoint: c.sqlite.wal_autocheckpoint.unwrap_or(1000),
            node_monitor_grace: duration_or(
                &c.node_failure.node_monitor_grace,
                DEFAULT_NODE_MONITOR_GRACE,
            )?,
            pod_eviction_timeout: duration_or(
                &c.node_failure.pod_eviction_timeout,
                DEFAULT_POD_EVICTION_TIMEOUT,
            )?,
            image_gc_high_percent: high,
            image_gc_low_percent: low,
            objects_per_namespace: c.limits.objects_per_namespace.unwrap_or(10_000),
            max_image_bytes: bytes_or(&c.limits.max_image_size, 4 << 30)?,
            max_watches: c.limits.max_watches.unwrap_or(128),
            max_connections: c.limits.max_connections.unwrap_or(256),
            security: crate::security::Policy {
                allow_privileged: c.security.allow_privileged.unwrap_or(false),
                allow_host_network: c.security.allow_host_network.unwrap_or(false),
                host_path_prefixes: c
                    .security
                    .host_path_prefixes
                    .iter()
                    .flatten()
                    .map(PathBuf::from)
                    .collect(),
                allowed_devices: c
                    .devices
                    .allowed
                    .iter()
                    .flatten()
                    .map(PathBuf::from)
                    .collect(),
            },
        })
    }
}

// ---------------------------------------------------------------------------
// Layers: board file, --config file, flags.

/// Where `--board NAME` is looked for, first match wins: $BRAMBLE_BOARD_CONFIGS,
/// the install directory beside the binary, then the default install directory.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var(SEARCH_ENV)
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    // PREFIX/bin/bramble finds PREFIX/share/bramble/board-configs whatever
    // PREFIX `make install` was given.
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("share/bramble/board-configs")));
    dirs.extend(beside);
    dirs.push(INSTALLED_DIR.into());
    dirs.dedup();
    dirs
}

pub fn find_board(name: &str) -> Result<PathBuf, ConfigError> {
    let searched = search_dirs();
    // A name is a file stem, never a path.
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plain
        .then(|| {
            searched
                .iter()
                .map(|d| d.join(format!("{name}.toml")))
                .find(|p| p.is_file())
        })
        .flatten()
        .ok_or_else(|| ConfigError::NoBoard {
            name: name.into(),
            searched,
        })
}

/// Reads and checks one file; the result is one layer for `load`.
pub fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    layer(&path.display().to_string(), &text)
}

/// Parses and checks one file's text: every table and key known, every value
/// valid alone. Errors name `origin`, the line, the table and the key.
pub fn layer(origin: &str, text: &str) -> Result<Value, ConfigError> {
    let doc = parse(origin, text)?;
    let shape = serde_json::to_value(BoardConfig::default()).expect("BoardConfig serializes");
    for (table, keys) in doc.value.as_object().into_iter().flatten() {
        let line = |key: &str| {
            doc.lines
                .get(&(table.clone(), key.to_string()))
                .copied()
                .unwrap_or(0)
        };
        let Some(known) = shape.get(table) else {
            return Err(
                match doc.lines.contains_key(&(table.clone(), String::new())) {
                    true => ConfigError::UnknownTable {
                        origin: origin.into(),
                        line: line(""),
                        table: table.clone(),
                    },
                    // Keys before any [table] land in "" (not a table name).
                    false => {
                        let key = keys
                            .as_object()
                            .and_then(|k| k.keys().next())
                            .cloned()
                            .unwrap_or_default();
                        ConfigError::UnknownKey {
                            origin: origin.into(),
                            line: line(&key),
                            table: String::new(),
                            key,
                        }
                    }
                },
            );
        };
        for (key, value) in keys.as_object().into_iter().flatten() {
            if known.get(key).is_none() {
                return Err(ConfigError::UnknownKey {
                    origin: origin.into(),
                    line: line(key),
                    table: table.clone(),
                    key: key.clone(),
                });
            }
            // One key at a time, so that a type error names its key.
            let one = serde_json::json!({ table.as_str(): { key.as_str(): value } });
            serde_json::from_value::<BoardConfig>(one)
                .map_err(|e| e.to_string())
                .and_then(|c| c.check())
                .map_err(|detail| ConfigError::Invalid {
                    origin: origin.into(),
                    line: Some(line(key)),
                    table: table.clone(),
                    key: key.clone(),
                    detail,
                })?;
        }
    }
    Ok(doc.value)
}

/// One flag as a layer, checked like a file's key.
pub fn flag_layer(flag: &str, table: &str, key: &str, value: Value) -> Result<Value, ConfigError> {
    let v = serde_json::json!({ table: { key: value } });
    serde_json::from_value::<BoardConfig>(v.clone())
        .map_err(|e| e.to_string())
        .and_then(|c| c.check())
        .map_err(|detail| ConfigError::Invalid {
            origin: flag.into(),
            line: None,
            table: table.into(),
            key: key.into(),
            detail,
        })?;
    Ok(v)
}

/// Later layers override earlier ones key by key (a list is one key: it is
/// replaced, not appended to).
pub fn load(layers: &[Value]) -> Result<Settings, ConfigError> {
    let mut merged = Map::new();
    for l in layers {
        for (table, keys) in l.as_object().into_iter().flatten() {
            let into = merged
                .entry(table.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let (Some(into), Some(keys)) = (into.as_object_mut(), keys.as_object()) {
                into.extend(keys.clone());
            }
        }
    }
    let config: BoardConfig = serde_json::from_value(Value::Object(merged))
        .map_err(|e| ConfigError::Inconsistent(format!("{e} (each layer was checked alone)")))?;
    Settings::resolve(&config)
}

// ---------------------------------------------------------------------------
// The TOML subset.

struct Document {
    /// `{table: {key: value}}`.
    value: Value,
    /// Line of each (table, key); a table's own header is (table, "").
    lines: HashMap<(String, String), usize>,
}

fn bare(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse(origin: &str, text: &str) -> Result<Document, ConfigError> {
    let mut doc = Document {
        value: Value::Object(Map::new()),
        lines: HashMap::new(),
    };
    let mut table = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let err = |detail: String| ConfigError::Syntax {
            origin: origin.into(),
            line,
            detail,
        };
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(header) = l.strip_prefix('[') {
            if header.starts_with('[') {
                return Err(err("arrays of tables are not supported".into()));
            }
            let (name, rest) = header
                .split_once(']')
                .ok_or_else(|| err("a table header needs its closing ]".into()))?;
            let name = name.trim();
            if !bare(name) {
                return Err(err(format!(
                    "{name:?} is not a plain table name (letters, digits, _ and -)"
                )));
            }
            end_of_line(rest).map_err(err)?;
            if doc
                .lines
                .insert((name.to_string(), String::new()), line)
                .is_some()
            {
                return Err(err(format!("table [{name}] is defined twice")));
            }
            table = name.to_string();
            doc.value[&table] = Value::Object(Map::new());
            continue;
        }
        let (key, rest) = l
            .split_once('=')
            .ok_or_else(|| err("expected `key = value` or `[table]`".into()))?;
        let key = key.trim();
        if !bare(key) {
            return Err(err(format!(
                "{key:?} is not a plain key (letters, digits, _ and -)"
            )));
        }
        let (value, rest) = value(rest).map_err(err)?;
        end_of_line(rest).map_err(err)?;
        if doc
            .lines
            .insert((table.clone(), key.to_string()), line)
            .is_some()
        {
            return Err(err(format!("key {key:?} is set twice")));
        }
        doc.value[&table][key] = value;
    }
    Ok(doc)
}

/// After a value or header only a comment may follow.
fn end_of_line(rest: &str) -> Result<(), String> {
    let rest = rest.trim_start();
    match rest.is_empty() || rest.starts_with('#') {
        true => Ok(()),
        false => Err(format!("unexpected {rest:?} after the value")),
    }
}

/// One value at the start of `s`, and what follows it.
fn value(s: &str) -> Result<(Value, &str), String> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('"') {
        return string(rest);
    }
    if let Some(mut rest) = s.strip_prefix('[') {
        let mut items = Vec::new();
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix(']') {
                return Ok((Value::Array(items), after));
            }
            if rest.is_empty() {
                return Err("an array must close with ] on the same line".into());
            }
            let (item, after) = value(rest)?;
            if item.is_array() {
                return Err("nested arrays are not supported".into());
            }
            items.push(item);
            rest = after.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after,
                None if rest.starts_with(']') => {}
                None if rest.is_empty() => {
                    return Err("an array must close with ] on the same line".into());
                }
                None => return Err("expected , or ] in the array".into()),
            }
        }
    }
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '+' || c == '_'))
        .unwrap_or(s.len());
    let (word, rest) = s.split_at(end);
    match word {
        "true" => Ok((Value::Bool(true), rest)),
        "false" => Ok((Value::Bool(false), rest)),
        "" => Err("expected a value".into()),
        w => match w.replace('_', "").parse::<i64>() {
            Ok(n) if !w.starts_with('_') && !w.ends_with('_') && !w.contains("__") => {
                Ok((n.into(), rest))
            }
            _ => Err(format!(
                "{w:?} is not a string, integer, boolean or array (quote strings)"
            )),
        },
    }
}

/// A basic string after its opening quote.
fn string(s: &str) -> Result<(Value, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Value::String(out), &s[i + 1..])),
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                other => {
                    return Err(format!(
                        "unsupported escape \\{}",
                        other.map(String::from).unwrap_or_default()
                    ));
                }
            },
            c if c.is_control() => {
                return Err("control characters must be escaped in strings".into());
            }
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FULL: &str = r#"
# a comment
[platform]
architecture = "arm"   # trailing comment
variant = "v6"

[node]
reserved_memory = "128Mi"
max_pods = 1_0
labels = ["bramble.io/board=raspberry-pi-zero-2w", "a=b",]

[logs]
max_size = "1Mi"
max_files = 2

[sqlite]
wal_autocheckpoint = 4000

[node_failure]
node_monitor_grace = "1m"
pod_eviction_timeout = "10m"

[image_gc]
high_percent = 90
low_percent = 70

[devices]
allowed = ["/dev/gpiomem"]

[security]
allow_privileged = true
allow_host_network = false
host_path_prefixes = ["/srv/bramble"]

[limits]
objects_per_namespace = 2000
max_image_size = "512Mi"
max_watches = 64
max_connections = 96
"#;

    #[test]
    fn parses_the_subset_into_tables() {
        let v = layer("x.toml", FULL).unwrap();
        assert_eq!(v["platform"]["architecture"], "arm");
        assert_eq!(v["node"]["max_pods"], 10);
        assert_eq!(
            v["node"]["labels"],
            json!(["bramble.io/board=raspberry-pi-zero-2w", "a=b"])
        );
        let s = load(&[v]).unwrap();
        assert_eq!(s.platform, Platform::new("linux", "arm", "v6"));
        assert_eq!(s.reserved_memory, 128 << 20);
        assert_eq!(s.max_pods, 10);
        assert_eq!(s.labels["bramble.io/board"], "raspberry-pi-zero-2w");
        assert_eq!((s.log_max_bytes, s.log_max_files), (1 << 20, 2));
        assert_eq!(s.wal_autocheckpoint, 4000);
        assert_eq!(s.node_monitor_grace, Duration::from_secs(60));
        assert_eq!(s.pod_eviction_timeout, Duration::from_secs(600));
        assert_eq!((s.image_gc_high_percent, s.image_gc_low_percent), (90, 70));
        assert_eq!(
            (
                s.objects_per_namespace,
                s.max_image_bytes,
                s.max_watches,
                s.max_connections
            ),
            (2000, 512 << 20, 64, 96)
        );
        assert_eq!(
            s.security,
            crate::security::Policy {
                allow_privileged: true,
                allow_host_network: false,
                host_path_prefixes: vec![PathBuf::from("/srv/bramble")],
                allowed_devices: vec![PathBuf::from("/dev/gpiomem")],
            }
        );
    }

    #[test]
    fn strings_booleans_and_escapes() {
        let d = parse(
            "t",
            "[a]\ns = \"x \\\"q\\\" # not a comment\"\nb = true\nn = -3\n",
        )
        .unwrap();
        assert_eq!(
            d.value,
            json!({"a": {"s": "x \"q\" # not a comment", "b": true, "n": -3}})
        );
        assert_eq!(d.lines[&("a".into(), "n".into())], 4);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, want) in [
            ("[a]\nx = 1\nx = 2\n", "t:3: key \"x\" is set twice"),
            ("[a]\n[a]\n", "t:2: table [a] is defined twice"),
            ("[a]\nx = bare\n", "t:2: \"bare\" is not a string"),
            ("[a]\nx = \"open\n", "t:2: unterminated string"),
            ("[a]\nx = [\"a\"\n", "t:2: an array must close"),
            ("[a]\nx = 1 2\n", "t:2: unexpected \"2\""),
            ("[a.b]\n", "t:1: \"a.b\" is not a plain table name"),
            ("[[a]]\n", "t:1: arrays of tables"),
            ("[a]\njust words\n", "t:2: expected `key = value`"),
            ("[a]\nx = [[1]]\n", "t:2: nested arrays"),
        ] {
            let e = parse("t", text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} parsed"))
                .to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_tables_and_keys_are_named() {
        let e = layer("board-configs/x.toml", "[node]\nmax_podz = 3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "board-configs/x.toml:2: unknown key \"max_podz\" in [node]"
        );
        let e = layer("x.toml", "\n[nodes]\nmax_pods = 3\n").unwrap_err();
        assert_eq!(e.to_string(), "x.toml:2: unknown table [nodes]");
        let e = layer("x.toml", "max_pods = 3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.toml:1: unknown key \"max_pods\" outside any table"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, want) in [
            (
                "[node]\nmax_pods = \"3\"",
                "x.toml:2: max_pods in [node]: invalid type: string \"3\"",
            ),
            (
                "[node]\nmax_pods = 0",
                "x.toml:2: max_pods in [node]: must be between 1 and 250, not 0",
            ),
            (
                "[node]\nreserved_memory = \"lots\"",
                "x.toml:2: reserved_memory in [node]: \"lots\" is not",
            ),
            (
                "[node]\nlabels = [\"nolabel\"]",
                "x.toml:2: labels in [node]: \"nolabel\" is not a label",
            ),
            (
                "[node]\nlabels = [\"a=b c\"]",
                "x.toml:2: labels in [node]: label \"a=b c\"",
            ),
            (
                "[platform]\narchitecture = \"amd64\"",
                "x.toml:2: architecture in [platform]",
            ),
            (
                "[logs]\nmax_size = \"1Ki\"",
                "x.toml:2: max_size in [logs]: \"1Ki\" is below",
            ),
            (
                "[sqlite]\nwal_autocheckpoint = 0",
                "x.toml:2: wal_autocheckpoint in [sqlite]",
            ),
            (
                "[node_failure]\npod_eviction_timeout = \"soon\"",
                "x.toml:2: pod_eviction_timeout in [node_failure]",
            ),
            (
                "[node_failure]\nnode_monitor_grace = \"10s\"",
                "x.toml:2: node_monitor_grace in [node_failure]: \"10s\" is shorter than 15s",
            ),
            (
                "[image_gc]\nhigh_percent = 101",
                "x.toml:2: high_percent in [image_gc]",
            ),
            (
                "[devices]\nallowed = [\"/etc/passwd\"]",
                "x.toml:2: allowed in [devices]",
            ),
            (
                "[devices]\nallowed = [\"/dev/../etc\"]",
                "x.toml:2: allowed in [devices]",
            ),
            (
                "[limits]\nmax_image_size = \"1Ki\"",
                "x.toml:2: max_image_size in [limits]",
            ),
            (
                "[limits]\nmax_watches = 0",
                "x.toml:2: max_watches in [limits]: must be between 1 and 4096, not 0",
            ),
            (
                "[limits]\nmax_connections = 2",
                "x.toml:2: max_connections in [limits]: must be between 4 and 4096, not 2",
            ),
            (
                "[security]\nhost_path_prefixes = [\"/srv/../etc\"]",
                "x.toml:2: host_path_prefixes in [security]",
            ),
        ] {
            let e = layer("x.toml", text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn later_layers_override_key_by_key() {
        let board = layer("b", FULL).unwrap();
        let file = layer("c", "[node]\nmax_pods = 20\nlabels = [\"x=y\"]\n").unwrap();
        let flag =
            flag_layer("--reserved-memory", "node", "reserved_memory", json!("1Gi")).unwrap();
        let s = load(&[board, file, flag]).unwrap();
        assert_eq!(s.max_pods, 20);
        assert_eq!(s.reserved_memory, 1 << 30);
        assert_eq!(
            s.labels,
            BTreeMap::from([("x".to_string(), "y".to_string())])
        );
        assert_eq!(
            s.wal_autocheckpoint, 4000,
            "untouched keys keep the board's value"
        );
        let e = flag_layer("--max-pods", "node", "max_pods", json!(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--max-pods: max_pods in [node]: must be between 1 and 250, not 0"
        );
    }

    #[test]
    fn keys_that_constrain_each_other() {
        let gc = layer("x", "[image_gc]\nhigh_percent = 50\nlow_percent = 60\n").unwrap();
        assert!(
            load(&[gc])
                .unwrap_err()
                .to_string()
                .contains("low_percent (60) must be below high_percent (50)")
        );
        let arch = layer(
            "x",
            "[platform]\narchitecture = \"arm64\"\nvariant = \"v7\"\n",
        )
        .unwrap();
        assert!(
            load(&[arch])
                .unwrap_err()
                .to_string()
                .contains("want arm64 with v8")
        );
        let half = layer("x", "[platform]\narchitecture = \"arm\"\n").unwrap();
        assert!(load(&[half]).is_err(), "an architecture needs its variant");
    }

    #[test]
    fn no_layers_give_the_defaults() {
        let s = load(&[]).unwrap();
        assert_eq!(
            (s.max_pods, s.reserved_memory, s.wal_autocheckpoint),
            (110, 0, 1000)
        );
        assert_eq!(
            (s.node_monitor_grace, s.pod_eviction_timeout),
            (Duration::from_secs(20), Duration::from_secs(30))
        );
        assert_eq!((s.max_watches, s.max_connections), (128, 256));
        assert_eq!(s.platform, Platform::host());
        assert!(s.labels.is_empty());
    }

    #[test]
    fn board_names_are_file_stems() {
        assert!(matches!(
            find_board("../etc/passwd"),
            Err(ConfigError::NoBoard { .. })
        ));
        assert!(matches!(find_board(""), Err(ConfigError::NoBoard { .. })));
    }
}
