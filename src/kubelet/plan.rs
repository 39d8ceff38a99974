//! What to run for one container: argv, environment, user, resources and mounts, decided from
//! the pod spec and the image config the way the kubelet (`makeEnvironmentVariables`,
//! `generateContainerConfig`) and containerd's CRI plugin (argv, env and user merging) decide.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::image::ImageConfig;
use crate::model::json::{at, entries, flag, list, text};
use serde_json::Value;

/// What planning looks up. Config maps and secrets are by name in the pod's namespace.
pub struct Sources<'a> {
    pub config_map: &'a dyn Fn(&str) -> Option<Value>,
    pub secret: &'a dyn Fn(&str) -> Option<Value>,
    /// The image's /etc/passwd, to resolve user names.
    pub passwd: &'a dyn Fn() -> Option<String>,
    /// The image's /etc/group, to resolve group names and the user's groups.
    pub group: &'a dyn Fn() -> Option<String>,
    pub node_name: &'a str,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// The node's `status.allocatable`: what a `resourceFieldRef` to an unset limit reports.
    pub node_allocatable: &'a Value,
    /// Kubernetes service variables, injected before the container's own.
    pub service_env: &'a [(String, String)],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub args: Vec<String>,
    /// `KEY=value` entries, each name once.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// The primary group first, as containerd sets it, then the user's groups in the image's
    /// /etc/group, then the pod's fsGroup and supplementalGroups.
    pub additional_gids: Vec<u32>,
    pub cpu_request_millis: Option<u64>,
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub mounts: Vec<MountPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MountPlan {
    pub volume: String,
    pub container_path: String,
    pub read_only: bool,
    /// Relative to the volume; empty for the whole volume.
    pub sub_path: String,
}

/// Why a container cannot start; the wording is the kubelet's or containerd's where they have one.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    ConfigMapNotFound {
        name: String,
    },
    SecretNotFound {
        name: String,
    },
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    SecretData {
        name: String,
        key: String,
    },
    UnsupportedFieldPath(String),
    UnsupportedResource(String),
    InvalidQuantity(String),
    UnknownUser(String),
    UnknownGroup(String),
    /// `pod` is Kubernetes' `name_namespace(uid)`.
    RunAsUserIsRoot {
        pod: String,
        container: String,
    },
    ImageRunsAsRoot {
        pod: String,
        container: String,
    },
    NonNumericImageUser {
        user: String,
        pod: String,
        container: String,
    },
    MissingSubPathValues(Vec<String>),
    AbsoluteSubPath(String),
    SubPathBacksteps(String),
    NoCommand,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConfigMapNotFound { name } => write!(f, "configmap \"{name}\" not found"),
            Self::SecretNotFound { name } => write!(f, "secret \"{name}\" not found"),
            Self::ConfigMapKeyNotFound {
                namespace,
                name,
                key,
            } => {
                write!(f, "couldn't find key {key} in ConfigMap {namespace}/{name}")
            }
            Self::SecretKeyNotFound {
                namespace,
                name,
                key,
            } => {
                write!(f, "couldn't find key {key} in Secret {namespace}/{name}")
            }
            Self::SecretData { name, key } => {
                write!(f, "secret \"{name}\" has invalid base64 data in key {key}")
            }
            Self::UnsupportedFieldPath(path) => write!(f, "unsupported fieldPath: {path}"),
            Self::UnsupportedResource(r) => write!(f, "unsupported container resource : {r}"),
            Self::InvalidQuantity(q) => write!(f, "invalid quantity \"{q}\""),
            Self::UnknownUser(name) => {
                write!(
                    f,
                    "unable to find user {name}: no matching entries in passwd file"
                )
            }
            Self::UnknownGroup(name) => {
                write!(
                    f,
                    "unable to find group {name}: no matching entries in group file"
                )
            }
            Self::RunAsUserIsRoot { pod, container } => write!(
                f,
                "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})"
            ),
            Self::ImageRunsAsRoot { pod, container } => write!(
                f,
                "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
            ),
            Self::NonNumericImageUser {
                user,
                pod,
                container,
            } => write!(
                f,
                "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
            ),
            Self::MissingSubPathValues(names) => {
                write!(f, "missing value for {}", names.join(", "))
            }
            Self::AbsoluteSubPath(p) => {
                write!(f, "error SubPath `{p}` must not be an absolute path")
            }
            Self::SubPathBacksteps(p) => {
                write!(
                    f,
                    "unable to provision SubPath `{p}`: must not contain '..'"
                )
            }
            Self::NoCommand => f.write_str("no command specified"),
        }
    }
}

impl std::error::Error for PlanError {}

/// containerd's base environment, which the image and the container then override.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Decides how to run `container` (an element of the pod's containers or initContainers).
pub fn plan_container(
    pod: &Value,
    container: &Value,
    image: &ImageConfig,
    src: &Sources,
) -> Result<Plan, PlanError> {
    // The kubelet's order of checks: environment, mounts, non-root policy, then the runtime's.
    let env = container_env(pod, container, src)?;
    let mounts = mounts(container, &env)?;
    check_non_root(pod, container, image)?;
    let args = command_line(container, image, &env)?;
    let (uid, gid, additional_gids) = user(pod, container, image, src)?;

    let mut merged = Env::default();
    let image_env = image.env.iter().filter_map(|e| e.split_once('='));
    for (name, value) in DEFAULT_PATH.split_once('=').into_iter().chain(image_env) {
        merged.set(name, value.to_string());
    }
    for (name, value) in env.vars {
        merged.set(&name, value);
    }

    let cwd = [text(container, "workingDir"), &image.working_dir]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or("/");
    let resources = at(container, "resources");
    Ok(Plan {
        args,
        env: merged
            .vars
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        cwd: cwd.to_string(),
        uid,
        gid,
        additional_gids,
        cpu_request_millis: resource(resources, "requests", "cpu", 3)?,
        cpu_limit_millis: resource(resources, "limits", "cpu", 3)?,
        memory_limit_bytes: resource(resources, "limits", "memory", 0)?,
        mounts,
    })
}

// ---------------------------------------------------------------------------
// Command line

/// containerd's rule: `command` replaces the Entrypoint and drops Cmd; `args` replaces Cmd.
fn command_line(
    container: &Value,
    image: &ImageConfig,
    env: &Env,
) -> Result<Vec<String>, PlanError> {
    let expanded = |key| -> Vec<String> {
        list(container, key)
            .iter()
            .filter_map(Value::as_str)
            .map(|s| expand(s, |name| env.get(name)))
            .collect()
    };
    let mut command = expanded("command");
    let mut args = expanded("args");
    if command.is_empty() {
        if args.is_empty() {
            args.clone_from(&image.cmd);
        }
        // `ENTRYPOINT [""]` is how a Dockerfile clears an inherited entrypoint.
        if image.entrypoint != [""] {
            command.clone_from(&image.entrypoint);
        }
    }
    command.append(&mut args);
    if command.is_empty() {
        return Err(PlanError::NoCommand);
    }
    Ok(command)
}

/// Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, and a reference `lookup` does not
/// know stays as written.
fn expand<'a>(input: &str, mut lookup: impl FnMut(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        rest = match after.chars().next() {
            None => {
                out.push('$');
                after
            }
            Some('$') => {
                out.push('$');
                &after[1..]
            }
            Some('(') => match after.find(')') {
                Some(end) => {
                    let name = &after[1..end];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => out.push_str(&format!("$({name})")),
                    }
                    &after[end + 1..]
                }
                // An unclosed `$(` is kept and the scan goes on after it.
                None => {
                    out.push_str("$(");
                    &after[1..]
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                &after[c.len_utf8()..]
            }
        };
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// Environment

/// Variables in the order first set; setting one again replaces its value in place, which is
/// how containerd lays the container's environment over the image's.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        match self.index.get(name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.to_string(), self.vars.len());
                self.vars.push((name.to_string(), value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }
}

/// The environment the kubelet computes (without the image's): service variables, then
/// envFrom, then env. `$(VAR)` in an env value sees everything set before it.
fn container_env(pod: &Value, container: &Value, src: &Sources) -> Result<Env, PlanError> {
    let mut env = Env::default();
    for (name, value) in src.service_env {
        env.set(name, value.clone());
    }
    for from in list(container, "envFrom") {
        let (kind, source) = match (from.get("configMapRef"), from.get("secretRef")) {
            (Some(r), _) => (Kind::ConfigMap, r),
            (None, Some(r)) => (Kind::Secret, r),
            (None, None) => continue,
        };
        let name = text(source, "name");
        let Some(data) = kind.data(name, src)? else {
            if flag(source, "optional") {
                continue;
            }
            return Err(kind.not_found(name));
        };
        let prefix = text(from, "prefix");
        // The kubelet skips keys that are not variable names (and records an event).
        for (key, value) in data {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                env.set(&key, value);
            }
        }
    }
    for var in list(container, "env") {
        let value = match (text(var, "value"), var.get("valueFrom")) {
            ("", Some(from)) => match value_from(from, pod, container, src)? {
                Some(value) => value,
                None => continue,
            },
            (value, _) => expand(value, |name| env.get(name)),
        };
        env.set(text(var, "name"), value);
    }
    Ok(env)
}

/// The value of an env entry's `valueFrom`; `None` when an optional source is missing.
fn value_from(
    from: &Value,
    pod: &Value,
    container: &Value,
    src: &Sources,
) -> Result<Option<String>, PlanError> {
    if let Some(field) = from.get("fieldRef") {
        return field_ref(text(field, "fieldPath"), pod, src).map(Some);
    }
    if let Some(r) = from.get("resourceFieldRef") {
        return resource_field_ref(r, container, src).map(Some);
    }
    let (kind, r) = match (from.get("configMapKeyRef"), from.get("secretKeyRef")) {
        (Some(r), _) => (Kind::ConfigMap, r),
        (None, Some(r)) => (Kind::Secret, r),
        (None, None) => return Ok(Some(String::new())),
    };
    let (name, key, optional) = (text(r, "name"), text(r, "key"), flag(r, "optional"));
    match kind.data(name, src)? {
        Some(mut data) => match data.remove(key) {
            Some(value) => Ok(Some(value)),
            None if optional => Ok(None),
            None => Err(kind.key_not_found(namespace(pod), name, key)),
        },
        None if optional => Ok(None),
        None => Err(kind.not_found(name)),
    }
}

fn field_ref(path: &str, pod: &Value, src: &Sources) -> Result<String, PlanError> {
    let meta = at(pod, "metadata");
    let value = match path {
        "metadata.name" => text(meta, "name"),
        "metadata.namespace" => namespace(pod),
        "metadata.uid" => text(meta, "uid"),
        "spec.nodeName" => src.node_name,
        "spec.serviceAccountName" => text(at(pod, "spec"), "serviceAccountName"),
        // A board has one address family, so the IP lists hold one address.
        "status.podIP" | "status.podIPs" => src.pod_ip,
        "status.hostIP" | "status.hostIPs" => src.host_ip,
        _ => match path.strip_suffix("']").and_then(|p| p.split_once("['")) {
            Some(("metadata.labels", key)) => text(at(meta, "labels"), key),
            Some(("metadata.annotations", key)) => text(at(meta, "annotations"), key),
            _ => return Err(PlanError::UnsupportedFieldPath(path.to_string())),
        },
    };
    Ok(value.to_string())
}

/// `limits.cpu`, `requests.memory`... divided by the divisor and rounded up, as the kubelet
/// does; an unset limit reports the node's allocatable, an unset request 0.
fn resource_field_ref(r: &Value, container: &Value, src: &Sources) -> Result<String, PlanError> {
    let resource = text(r, "resource");
    let (kind, name) = resource
        .split_once('.')
        .filter(|(kind, _)| matches!(*kind, "limits" | "requests"))
        .ok_or_else(|| PlanError::UnsupportedResource(resource.to_string()))?;
    let set = at(at(at(container, "resources"), kind), name);
    let value = if set.is_null() && kind == "limits" {
        at(src.node_allocatable, name)
    } else {
        set
    };
    // CPU counts in millicores like Quantity.MilliValue, the rest in units like Quantity.Value.
    let exp10 = if name == "cpu" { 3 } else { 0 };
    let amount = |q: &Value, default: &str| -> Result<f64, PlanError> {
        let q = quantity_text(q).unwrap_or_else(|| default.to_string());
        crate::model::quantity::scaled(&q, exp10)
            .map(f64::ceil)
            .ok_or(PlanError::InvalidQuantity(q))
    };
    let value = amount(value, "0")?;
    let divisor = match amount(at(r, "divisor"), "1")? {
        0.0 => 10f64.powi(exp10),
        d => d,
    };
    // Rounded up to a whole number, as the kubelet's int64(math.Ceil(..)).
    Ok(((value / divisor).ceil() as i64).to_string())
}

/// Kubernetes' IsEnvVarName: `[-._a-zA-Z][-._a-zA-Z0-9]*`, but not `.` nor starting with `..`.
fn is_env_var_name(name: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
    name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name.bytes().all(allowed)
        && name != "."
        && !name.starts_with("..")
}

#[derive(Clone, Copy)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    /// The object's string data by key, or `None` when it does not exist.
    fn data(
        self,
        name: &str,
        src: &Sources,
    ) -> Result<Option<BTreeMap<String, String>>, PlanError> {
        let strings = |object: &Value, key| -> BTreeMap<String, String> {
            entries(object, key)
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        };
        match self {
            Self::ConfigMap => Ok((src.config_map)(name).map(|cm| strings(&cm, "data"))),
            Self::Secret => {
                let Some(secret) = (src.secret)(name) else {
                    return Ok(None);
                };
                let mut data = BTreeMap::new();
                for (key, value) in entries(&secret, "data") {
                    let bytes = value
                        .as_str()
                        .and_then(|v| {
                            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v)
                                .ok()
                        })
                        .ok_or_else(|| PlanError::SecretData {
                            name: name.to_string(),
                            key: key.clone(),
                        })?;
                    // Go converts the bytes unchecked; a Rust string must be UTF-8.
                    data.insert(key.clone(), String::from_utf8_lossy(&bytes).into_owned());
                }
                // The API server folds write-only stringData into data; honour it if it is kept.
                data.extend(strings(&secret, "stringData"));
                Ok(Some(data))
            }
        }
    }

    fn not_found(self, name: &str) -> PlanError {
        let name = name.to_string();
        match self {
            Self::ConfigMap => PlanError::ConfigMapNotFound { name },
            Self::Secret => PlanError::SecretNotFound { name },
        }
    }

    fn key_not_found(self, namespace: &str, name: &str, key: &str) -> PlanError {
        let (namespace, name, key) = (namespace.to_string(), name.to_string(), key.to_string());
        match self {
            Self::ConfigMap => PlanError::ConfigMapKeyNotFound {
                namespace,
                name,
                key,
            },
            Self::Secret => PlanError::SecretKeyNotFound {
                namespace,
                name,
                key,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// User

/// A security context field, the container's overriding the pod's.
fn security<'a>(pod: &'a Value, container: &'a Value, key: &str) -> Option<&'a Value> {
    at(container, "securityContext")
        .get(key)
        .or_else(|| at(at(pod, "spec"), "securityContext").get(key))
}

fn security_id(pod: &Value, container: &Value, key: &str) -> Option<u32> {
    security(pod, container, key).and_then(id)
}

/// `user[:group]` as an image config writes it.
fn split_user(user: &str) -> (&str, Option<&str>) {
    match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    }
}

/// The kubelet's verifyRunAsNonRoot, which trusts only numeric users.
fn check_non_root(pod: &Value, container: &Value, image: &ImageConfig) -> Result<(), PlanError> {
    if security(pod, container, "runAsNonRoot") != Some(&Value::Bool(true)) {
        return Ok(());
    }
    let meta = at(pod, "metadata");
    let pod_desc = format!(
        "{}_{}({})",
        text(meta, "name"),
        namespace(pod),
        text(meta, "uid")
    );
    let name = text(container, "name").to_string();
    if let Some(uid) = security(pod, container, "runAsUser").and_then(Value::as_i64) {
        return match uid {
            0 => Err(PlanError::RunAsUserIsRoot {
                pod: pod_desc,
                container: name,
            }),
            _ => Ok(()),
        };
    }
    let (user, _) = split_user(&image.user);
    match user.parse::<i64>() {
        Ok(0) => Err(PlanError::ImageRunsAsRoot {
            pod: pod_desc,
            container: name,
        }),
        Ok(_) => Ok(()),
        // An image without a user runs as root.
        Err(_) if user.is_empty() => Err(PlanError::ImageRunsAsRoot {
            pod: pod_desc,
            container: name,
        }),
        Err(_) => Err(PlanError::NonNumericImageUser {
            user: user.to_string(),
            pod: pod_desc,
            container: name,
        }),
    }
}

struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(file: &str) -> Vec<Account> {
    let entry = |line: &str| {
        let mut fields = line.split(':');
        let name = fields.next()?.to_string();
        fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        Some(Account {
            name,
            uid,
            gid: fields.next()?.parse().ok()?,
        })
    };
    file.lines().filter_map(entry).collect()
}

fn parse_group(file: &str) -> Vec<Group> {
    let entry = |line: &str| {
        let mut fields = line.split(':');
        let name = fields.next()?.to_string();
        fields.next()?;
        let gid = fields.next()?.parse().ok()?;
        let members = fields.next().unwrap_or_default().split(',');
        let members = members
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
        Some(Group { name, gid, members })
    };
    file.lines().filter_map(entry).collect()
}

/// containerd's user resolution. The uid is runAsUser, else the image's user (a uid, a name in
/// the image's /etc/passwd, or root when unset). The gid is runAsGroup, else the image's group
/// when the image's user applies, else the user's primary group, else 0.
fn user(
    pod: &Value,
    container: &Value,
    image: &ImageConfig,
    src: &Sources,
) -> Result<(u32, u32, Vec<u32>), PlanError> {
    let passwd = (src.passwd)().map(|f| parse_passwd(&f)).unwrap_or_default();
    let groups = (src.group)().map(|f| parse_group(&f)).unwrap_or_default();
    let by_uid = |uid: u32| passwd.iter().find(|a| a.uid == uid);
    let (image_user, image_group) = split_user(&image.user);
    let run_as_user = security_id(pod, container, "runAsUser");

    let (uid, account) = match (run_as_user, image_user.parse::<u32>()) {
        (Some(uid), _) | (None, Ok(uid)) => (uid, by_uid(uid)),
        (None, Err(_)) if image_user.is_empty() => (0, by_uid(0)),
        (None, Err(_)) => {
            let account = passwd.iter().find(|a| a.name == image_user);
            let account = account.ok_or_else(|| PlanError::UnknownUser(image_user.to_string()))?;
            (account.uid, Some(account))
        }
    };
    let image_group = image_group.filter(|g| run_as_user.is_none() && !g.is_empty());
    let gid = match (security_id(pod, container, "runAsGroup"), image_group) {
        (Some(gid), _) => gid,
        (None, Some(group)) => match group.parse() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .ok_or_else(|| PlanError::UnknownGroup(group.to_string()))?,
        },
        (None, None) => account.map_or(0, |a| a.gid),
    };

    let mut gids = vec![gid];
    if let Some(account) = account {
        let member = groups.iter().filter(|g| g.members.contains(&account.name));
        gids.extend(member.map(|g| g.gid));
    }
    let pod_context = at(at(pod, "spec"), "securityContext");
    gids.extend(pod_context.get("fsGroup").and_then(id));
    gids.extend(
        list(pod_context, "supplementalGroups")
            .iter()
            .filter_map(id),
    );
    let mut seen = BTreeSet::new();
    gids.retain(|g| seen.insert(*g));
    Ok((uid, gid, gids))
}

// ---------------------------------------------------------------------------
// Mounts and resources

fn mounts(container: &Value, env: &Env) -> Result<Vec<MountPlan>, PlanError> {
    let mount = |m: &Value| {
        let sub_path = match text(m, "subPathExpr") {
            "" => text(m, "subPath").to_string(),
            expr => expand_sub_path(expr, env)?,
        };
        // The kubelet re-checks what expansion produced; the API server saw only the template.
        if sub_path.starts_with('/') {
            return Err(PlanError::AbsoluteSubPath(sub_path));
        }
        if sub_path.split('/').any(|part| part == "..") {
            return Err(PlanError::SubPathBacksteps(sub_path));
        }
        Ok(MountPlan {
            volume: text(m, "name").to_string(),
            container_path: text(m, "mountPath").to_string(),
            read_only: flag(m, "readOnly"),
            sub_path,
        })
    };
    list(container, "volumeMounts").iter().map(mount).collect()
}

/// subPathExpr expansion, where a missing or empty variable is an error rather than kept.
fn expand_sub_path(expr: &str, env: &Env) -> Result<String, PlanError> {
    let mut missing = BTreeSet::new();
    let path = expand(expr, |name| match env.get(name) {
        Some(value) if !value.is_empty() => Some(value),
        _ => {
            missing.insert(name.to_string());
            Some("")
        }
    });
    match missing.is_empty() {
        true => Ok(path),
        false => Err(PlanError::MissingSubPathValues(
            missing.into_iter().collect(),
        )),
    }
}

/// A container resource scaled by 10^`exp10` (3 for millicores) and rounded up, as
/// Quantity.MilliValue and Quantity.Value round.
fn resource(
    resources: &Value,
    kind: &str,
    name: &str,
    exp10: i32,
) -> Result<Option<u64>, PlanError> {
    let Some(q) = quantity_text(at(at(resources, kind), name)) else {
        return Ok(None);
    };
    let value = crate::model::quantity::scaled(&q, exp10).ok_or(PlanError::InvalidQuantity(q))?;
    // Validation rejects negative quantities; the cast would saturate them to 0 anyway.
    Ok(Some(value.ceil() as u64))
}

/// Quantities are strings in the API, but a hand-written object may hold a bare number.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn namespace(pod: &Value) -> &str {
    text(at(pod, "metadata"), "namespace")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          app:x:1000:1000::/home/app:/bin/sh\n\
                          nobody:x:65534:65534:nobody:/:/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\nusers:x:100:other,app\napp:x:1000:\n";

    fn pod(spec: Value) -> Value {
        json!({
            "metadata": {
                "name": "web", "namespace": "default", "uid": "u-1",
                "labels": {"app": "web"}, "annotations": {"team": "edge"},
            },
            "spec": spec,
        })
    }

    fn nginx() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/docker-entrypoint.sh".into()],
            cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            env: vec!["PATH=/usr/bin:/bin".into(), "NGINX_VERSION=1.27".into()],
            working_dir: String::new(),
            user: String::new(),
            ..Default::default()
        }
    }

    fn plan_in(pod: &Value, container: Value, image: &ImageConfig) -> Result<Plan, PlanError> {
        let config_map = |name: &str| {
            (name == "cfg").then(|| json!({"data": {"A": "1", "B": "2", "1bad": "x"}}))
        };
        let secret = |name: &str| {
            (name == "sec").then(|| json!({"data": {"pw": "aHVudGVyMg==", "name": "w6k="}}))
        };
        let passwd = || Some(PASSWD.to_string());
        let group = || Some(GROUP.to_string());
        let allocatable = json!({"cpu": "4", "memory": "8Gi"});
        let service_env = [(
            "KUBERNETES_SERVICE_HOST".to_string(),
            "10.43.0.1".to_string(),
        )];
        let src = Sources {
            config_map: &config_map,
            secret: &secret,
            passwd: &passwd,
            group: &group,
            node_name: "board-1",
            pod_ip: "10.42.0.5",
            host_ip: "192.168.1.10",
            node_allocatable: &allocatable,
            service_env: &service_env,
        };
        plan_container(pod, &container, image, &src)
    }

    fn plan(container: Value) -> Result<Plan, PlanError> {
        plan_in(&pod(json!({})), container, &nginx())
    }

    fn env_of(container: Value) -> Vec<String> {
        plan(container).expect("plan").env
    }

    /// The value of one variable in a planned environment.
    fn var(container: Value, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        env_of(container)
            .iter()
            .find_map(|e| e.strip_prefix(&prefix).map(String::from))
    }

    fn args(container: Value) -> Vec<String> {
        plan(container).expect("plan").args
    }

    fn err(container: Value) -> String {
        plan(container).expect_err("should fail").to_string()
    }

    #[test]
    fn neither_command_nor_args_runs_entrypoint_then_cmd() {
        let expected = ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"];
        assert_eq!(args(json!({"name": "c"})), expected);
    }

    #[test]
    fn command_without_args_ignores_image_cmd() {
        assert_eq!(args(json!({"command": ["sleep", "1"]})), ["sleep", "1"]);
    }

    #[test]
    fn args_without_command_keep_the_entrypoint() {
        assert_eq!(
            args(json!({"args": ["-v"]})),
            ["/docker-entrypoint.sh", "-v"]
        );
    }

    #[test]
    fn command_and_args_replace_both() {
        let c = json!({"command": ["sh", "-c"], "args": ["echo hi"]});
        assert_eq!(args(c), ["sh", "-c", "echo hi"]);
    }

    #[test]
    fn an_empty_entrypoint_string_clears_it() {
        let image = ImageConfig {
            entrypoint: vec![String::new()],
            cmd: vec!["sh".into()],
            ..nginx()
        };
        let plan = plan_in(&pod(json!({})), json!({}), &image).expect("plan");
        assert_eq!(plan.args, ["sh"]);
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let image = ImageConfig {
            entrypoint: vec![],
            cmd: vec![],
            ..nginx()
        };
        let error = plan_in(&pod(json!({})), json!({}), &image).expect_err("no command");
        assert_eq!(error, PlanError::NoCommand);
        assert_eq!(error.to_string(), "no command specified");
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let lookup = |name: &str| (name == "A").then_some("x");
        let cases = [
            ("$(A)", "x"),
            ("pre-$(A)-post", "pre-x-post"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$x"),
            ("$$", "$"),
            ("$(B)", "$(B)"),
            ("$()", "$()"),
            ("$(A", "$(A"),
            ("$($(A)", "$($(A)"),
            ("$(A$(A)", "$(A$(A)"),
            ("a$", "a$"),
            ("$A", "$A"),
            ("$é$(A)", "$éx"),
            ("no refs", "no refs"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, lookup), expected, "{input}");
        }
    }

    #[test]
    fn command_and_args_expand_the_container_env_but_not_the_image_env() {
        let c = json!({
            "command": ["echo", "$(GREETING)"],
            "args": ["$(NGINX_VERSION)", "$$(GREETING)", "$(KUBERNETES_SERVICE_HOST)"],
            "env": [{"name": "GREETING", "value": "hi"}],
        });
        assert_eq!(
            args(c),
            ["echo", "hi", "$(NGINX_VERSION)", "$(GREETING)", "10.43.0.1"]
        );
    }

    #[test]
    fn env_layers_image_service_env_from_and_env_keeping_first_positions() {
        let c = json!({
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "env": [
                {"name": "NGINX_VERSION", "value": "mine"},
                {"name": "B", "value": "two"},
                {"name": "KUBERNETES_SERVICE_HOST", "value": "override"},
                {"name": "LAST", "value": "$(B)"},
                {"name": "B", "value": "again"},
            ],
        });
        assert_eq!(
            env_of(c),
            [
                "PATH=/usr/bin:/bin",
                "NGINX_VERSION=mine",
                "KUBERNETES_SERVICE_HOST=override",
                "A=1",
                "B=again",
                "LAST=two",
            ]
        );
    }

    #[test]
    fn path_defaults_when_the_image_has_none() {
        let image = ImageConfig {
            env: vec!["X=1".into()],
            ..nginx()
        };
        let plan = plan_in(&pod(json!({})), json!({}), &image).expect("plan");
        assert_eq!(
            plan.env,
            [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "X=1",
                "KUBERNETES_SERVICE_HOST=10.43.0.1",
            ]
        );
    }

    #[test]
    fn env_values_see_only_variables_set_before_them() {
        let c = json!({"env": [
            {"name": "EARLY", "value": "$(LATE)"},
            {"name": "LATE", "value": "1"},
            {"name": "AFTER", "value": "$(LATE)/$(EARLY)"},
            {"name": "EMPTY", "value": ""},
            {"name": "ESCAPED", "value": "$$(LATE)"},
        ]});
        let env = env_of(c);
        assert!(env.contains(&"EARLY=$(LATE)".to_string()));
        assert!(env.contains(&"AFTER=1/$(LATE)".to_string()));
        assert!(env.contains(&"EMPTY=".to_string()));
        assert!(env.contains(&"ESCAPED=$(LATE)".to_string()));
    }

    #[test]
    fn env_from_takes_a_prefix_and_skips_invalid_names() {
        // As in Kubernetes, the prefix can make a key valid.
        let c = json!({"envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "cfg"}}]});
        assert_eq!(&env_of(c)[3..], ["CFG_1bad=x", "CFG_A=1", "CFG_B=2"]);
        let c = json!({"envFrom": [{"configMapRef": {"name": "cfg"}}]});
        assert_eq!(&env_of(c)[3..], ["A=1", "B=2"]);
    }

    #[test]
    fn env_from_a_missing_source_fails_unless_optional() {
        let c = json!({"envFrom": [{"configMapRef": {"name": "nope"}}]});
        assert_eq!(err(c), r#"configmap "nope" not found"#);
        let c = json!({"envFrom": [{"secretRef": {"name": "nope"}}]});
        assert_eq!(err(c), r#"secret "nope" not found"#);
        let c = json!({"envFrom": [{"secretRef": {"name": "nope", "optional": true}}]});
        assert_eq!(env_of(c).len(), 3);
    }

    #[test]
    fn secrets_are_base64_decoded() {
        let c = json!({"envFrom": [{"secretRef": {"name": "sec"}}]});
        assert_eq!(&env_of(c)[3..], ["name=é", "pw=hunter2"]);
        let c = json!({"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}}]});
        assert_eq!(var(c, "PW").as_deref(), Some("hunter2"));
    }

    #[test]
    fn key_refs_fail_on_missing_keys_unless_optional() {
        let key_ref = |kind: &str, name: &str, key: &str, optional: bool| json!({"env": [{"name": "V", "valueFrom": {kind: {"name": name, "key": key, "optional": optional}}}]});
        assert_eq!(
            var(key_ref("configMapKeyRef", "cfg", "A", false), "V").as_deref(),
            Some("1")
        );
        assert_eq!(
            err(key_ref("configMapKeyRef", "cfg", "k", false)),
            "couldn't find key k in ConfigMap default/cfg"
        );
        assert_eq!(
            err(key_ref("secretKeyRef", "sec", "k", false)),
            "couldn't find key k in Secret default/sec"
        );
        assert_eq!(
            err(key_ref("configMapKeyRef", "x", "k", false)),
            r#"configmap "x" not found"#
        );
        assert_eq!(
            err(key_ref("secretKeyRef", "s", "k", false)),
            r#"secret "s" not found"#
        );
        assert_eq!(var(key_ref("configMapKeyRef", "cfg", "k", true), "V"), None);
        assert_eq!(var(key_ref("secretKeyRef", "s", "k", true), "V"), None);
    }

    #[test]
    fn field_refs_read_the_pod_and_the_node() {
        let spec = json!({"serviceAccountName": "robot"});
        let field = |path: &str| {
            let c = json!({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]});
            let plan = plan_in(&pod(spec.clone()), c, &nginx());
            plan.map(|p| p.env.last().cloned().unwrap_or_default())
        };
        let cases = [
            ("metadata.name", "web"),
            ("metadata.namespace", "default"),
            ("metadata.uid", "u-1"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['missing']", ""),
            ("metadata.annotations['team']", "edge"),
            ("spec.nodeName", "board-1"),
            ("spec.serviceAccountName", "robot"),
            ("status.podIP", "10.42.0.5"),
            ("status.podIPs", "10.42.0.5"),
            ("status.hostIP", "192.168.1.10"),
            ("status.hostIPs", "192.168.1.10"),
        ];
        for (path, expected) in cases {
            assert_eq!(field(path), Ok(format!("V={expected}")), "{path}");
        }
        assert_eq!(
            field("spec.hostname").map_err(|e| e.to_string()),
            Err("unsupported fieldPath: spec.hostname".to_string())
        );
    }

    #[test]
    fn resource_field_refs_divide_and_round_up() {
        let resources =
            json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}});
        let field = |resource: &str, divisor: Value| {
            let from = json!({"resourceFieldRef": {"resource": resource, "divisor": divisor}});
            let c = json!({"resources": resources, "env": [{"name": "V", "valueFrom": from}]});
            var(c, "V").unwrap_or_default()
        };
        assert_eq!(field("limits.cpu", json!("1m")), "500");
        assert_eq!(field("limits.cpu", Value::Null), "1");
        assert_eq!(field("limits.cpu", json!("0")), "1");
        assert_eq!(field("requests.cpu", json!("1m")), "250");
        assert_eq!(field("limits.memory", json!("1Mi")), "64");
        assert_eq!(field("limits.memory", Value::Null), "67108864");
        assert_eq!(field("limits.memory", json!("1G")), "1");
        // Unset limits report the node's allocatable, unset requests zero.
        let c = |resource: &str| {
            let from = json!({"resourceFieldRef": {"resource": resource}});
            var(json!({"env": [{"name": "V", "valueFrom": from}]}), "V").unwrap_or_default()
        };
        assert_eq!(c("limits.cpu"), "4");
        assert_eq!(c("limits.memory"), "8589934592");
        assert_eq!(c("requests.memory"), "0");
        let from = json!({"resourceFieldRef": {"resource": "cpu"}});
        assert_eq!(
            err(json!({"env": [{"name": "V", "valueFrom": from}]})),
            "unsupported container resource : cpu"
        );
    }

    #[test]
    fn working_dir_is_the_containers_then_the_images_then_root() {
        assert_eq!(plan(json!({})).expect("plan").cwd, "/");
        let image = ImageConfig {
            working_dir: "/srv".into(),
            ..nginx()
        };
        let cwd = |c| plan_in(&pod(json!({})), c, &image).expect("plan").cwd;
        assert_eq!(cwd(json!({})), "/srv");
        assert_eq!(cwd(json!({"workingDir": "/app"})), "/app");
    }

    fn user_of(
        spec: Value,
        container: Value,
        image_user: &str,
    ) -> Result<(u32, u32, Vec<u32>), PlanError> {
        let image = ImageConfig {
            user: image_user.into(),
            ..nginx()
        };
        plan_in(&pod(spec), container, &image).map(|p| (p.uid, p.gid, p.additional_gids))
    }

    #[test]
    fn image_users_resolve_through_passwd_and_group() {
        let user = |image_user| user_of(json!({}), json!({}), image_user);
        assert_eq!(user(""), Ok((0, 0, vec![0])));
        assert_eq!(user("1000"), Ok((1000, 1000, vec![1000, 50, 100])));
        assert_eq!(user("1000:2000"), Ok((1000, 2000, vec![2000, 50, 100])));
        assert_eq!(user("4242"), Ok((4242, 0, vec![0])));
        assert_eq!(user("nobody"), Ok((65534, 65534, vec![65534])));
        assert_eq!(user("app:staff"), Ok((1000, 50, vec![50, 100])));
        assert_eq!(user("app:7"), Ok((1000, 7, vec![7, 50, 100])));
        assert_eq!(
            user("ghost").map_err(|e| e.to_string()),
            Err("unable to find user ghost: no matching entries in passwd file".into())
        );
        assert_eq!(
            user("app:ghosts").map_err(|e| e.to_string()),
            Err("unable to find group ghosts: no matching entries in group file".into())
        );
    }

    #[test]
    fn security_contexts_override_the_image_user() {
        let pod_sc = json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 3000}});
        assert_eq!(
            user_of(pod_sc.clone(), json!({}), "nobody"),
            Ok((1000, 3000, vec![3000, 50, 100]))
        );
        let c = json!({"securityContext": {"runAsUser": 2000}});
        assert_eq!(user_of(pod_sc, c, ""), Ok((2000, 3000, vec![3000])));
        // runAsUser alone takes the primary group from passwd, not the image's group.
        let c = json!({"securityContext": {"runAsUser": 65534}});
        assert_eq!(
            user_of(json!({}), c, "1000:2000"),
            Ok((65534, 65534, vec![65534]))
        );
        // runAsGroup alone keeps the image's user.
        let c = json!({"securityContext": {"runAsGroup": 5}});
        assert_eq!(
            user_of(json!({}), c, "app"),
            Ok((1000, 5, vec![5, 50, 100]))
        );
    }

    #[test]
    fn fs_group_and_supplemental_groups_are_added() {
        let spec =
            json!({"securityContext": {"fsGroup": 2000, "supplementalGroups": [4000, 50, 2000]}});
        assert_eq!(
            user_of(spec, json!({}), "app"),
            Ok((1000, 1000, vec![1000, 50, 100, 2000, 4000]))
        );
    }

    #[test]
    fn run_as_non_root_rejects_root_and_unverifiable_users() {
        let spec = json!({"securityContext": {"runAsNonRoot": true}});
        let check = |security: Value, image_user: &str| {
            let c = json!({"name": "app", "securityContext": security});
            let user = user_of(spec.clone(), c, image_user);
            user.map(|(uid, ..)| uid).map_err(|e| e.to_string())
        };
        let root = r#"container has runAsNonRoot and image will run as root (pod: "web_default(u-1)", container: app)"#;
        assert_eq!(check(json!({}), ""), Err(root.to_string()));
        assert_eq!(check(json!({}), "0:0"), Err(root.to_string()));
        assert_eq!(check(json!({}), "1000"), Ok(1000));
        assert_eq!(
            check(json!({}), "nobody"),
            Err(r#"container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: "web_default(u-1)", container: app)"#.into())
        );
        assert_eq!(
            check(json!({"runAsUser": 0}), "1000"),
            Err(r#"container's runAsUser breaks non-root policy (pod: "web_default(u-1)", container: app)"#.into())
        );
        assert_eq!(check(json!({"runAsUser": 7}), ""), Ok(7));
        assert_eq!(check(json!({"runAsNonRoot": false}), ""), Ok(0));
    }

    #[test]
    fn resources_become_millicores_and_bytes() {
        let resources = |r: Value| {
            let p = plan(json!({"resources": r})).expect("plan");
            (
                p.cpu_request_millis,
                p.cpu_limit_millis,
                p.memory_limit_bytes,
            )
        };
        let r = json!({"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1.5", "memory": "128Mi"}});
        assert_eq!(resources(r), (Some(250), Some(1500), Some(134_217_728)));
        let r = json!({"requests": {"cpu": 2}, "limits": {"cpu": "0.1m", "memory": "1G"}});
        assert_eq!(resources(r), (Some(2000), Some(1), Some(1_000_000_000)));
        assert_eq!(resources(json!({})), (None, None, None));
        let error = plan(json!({"resources": {"limits": {"memory": "lots"}}})).expect_err("bad");
        assert_eq!(error, PlanError::InvalidQuantity("lots".into()));
    }

    #[test]
    fn quantities_parse_every_suffix() {
        let cases = [
            ("1", 0, 1.0),
            ("100m", 3, 100.0),
            ("0.1", 3, 100.0),
            ("1k", 0, 1e3),
            ("1M", 0, 1e6),
            ("2G", 0, 2e9),
            ("1T", 0, 1e12),
            ("1P", 0, 1e15),
            ("1E", 0, 1e18),
            ("1Ki", 0, 1024.0),
            ("1.5Mi", 0, 1_572_864.0),
            ("1Gi", 0, 1_073_741_824.0),
            ("1Ti", 0, 1_099_511_627_776.0),
            ("1Pi", 0, 1_125_899_906_842_624.0),
            ("1Ei", 0, 1_152_921_504_606_846_976.0),
            ("5e3", 0, 5000.0),
            ("5E-3", 3, 5.0),
            ("+.5", 0, 0.5),
            ("-1", 0, -1.0),
            ("100u", 6, 100.0),
            ("3n", 9, 3.0),
        ];
        for (q, exp10, expected) in cases {
            assert_eq!(
                crate::model::quantity::scaled(q, exp10),
                Some(expected),
                "{q}"
            );
        }
        for bad in ["", "m", "1.2.3", "1X", "1KiB", "e3", "1e"] {
            assert_eq!(crate::model::quantity::scaled(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn env_var_names_follow_kubernetes() {
        for good in ["A", "my.env-name", "_x", "-x", ".x", "MyEnvName1"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["", "1x", "a b", "a=b", ".", "..", "..x", "é"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    #[test]
    fn mounts_carry_read_only_and_sub_paths() {
        let pod_name = json!({"fieldRef": {"fieldPath": "metadata.name"}});
        let c = json!({
            "env": [{"name": "DIR", "value": "logs"}, {"name": "POD", "valueFrom": pod_name}],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "conf", "mountPath": "/etc/app", "readOnly": true, "subPath": "app"},
                {"name": "logs", "mountPath": "/var/log", "subPathExpr": "$(DIR)/$(POD)$$"},
            ],
        });
        let mount = |volume: &str, path: &str, read_only, sub_path: &str| MountPlan {
            volume: volume.into(),
            container_path: path.into(),
            read_only,
            sub_path: sub_path.into(),
        };
        assert_eq!(
            plan(c).expect("plan").mounts,
            [
                mount("data", "/data", false, ""),
                mount("conf", "/etc/app", true, "app"),
                mount("logs", "/var/log", false, "logs/web$"),
            ]
        );
    }

    #[test]
    fn sub_path_exprs_need_values_and_stay_inside_the_volume() {
        let c = |expr: &str| {
            json!({
                "env": [{"name": "EMPTY", "value": ""}, {"name": "UP", "value": ".."}, {"name": "ABS", "value": "/etc"}],
                "volumeMounts": [{"name": "v", "mountPath": "/v", "subPathExpr": expr}],
            })
        };
        assert_eq!(
            err(c("$(NOPE)/$(EMPTY)/$(NOPE)")),
            "missing value for EMPTY, NOPE"
        );
        assert_eq!(
            err(c("a/$(UP)/b")),
            "unable to provision SubPath `a/../b`: must not contain '..'"
        );
        assert_eq!(
            err(c("$(ABS)")),
            "error SubPath `/etc` must not be an absolute path"
        );
    }
}
