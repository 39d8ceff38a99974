//! Pod volumes on the board: emptyDir (disk, or tmpfs for medium Memory),
//! hostPath with its type checks, and configMap, secret, downwardAPI and
//! projected volumes written out as files. Each volume is a directory under
//! DATA_DIR/pods/<uid>/volumes/<name> (hostPath: the host path itself) that
//! the runtime bind-mounts into the containers.

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::model::validate::parse_quantity;

/// A file of a projected volume: path inside the volume, contents, mode.
#[derive(Debug, PartialEq)]
pub struct ProjectedFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Where to find the objects volumes project.
pub struct Sources<'a> {
    pub config_map: &'a dyn Fn(&str) -> Option<Value>,
    pub secret: &'a dyn Fn(&str) -> Option<Value>,
}

pub fn pod_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("pods").join(uid)
}

/// Prepares every volume of `pod`; returns volume name -> host path.
pub fn prepare(
    data_dir: &Path,
    pod: &Value,
    src: &Sources,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let base = pod_dir(data_dir, uid).join("volumes");
    let mut out = BTreeMap::new();
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = v["name"].as_str().unwrap_or_default();
        let dir = base.join(name);
        let path = if let Some(h) = v.get("hostPath") {
            host_path(h)?
        } else if let Some(e) = v.get("emptyDir") {
            empty_dir(&dir, e)?;
            dir
        } else if let Some(files) = projection(pod, v, src)? {
            write_files(&dir, &files)?;
            dir
        } else {
            return Err(format!(
                "volume {name:?}: this volume type is not supported on bramble (use emptyDir, hostPath, configMap, secret, downwardAPI or projected)"
            ));
        };
        out.insert(name.to_string(), path);
    }
    Ok(out)
}

/// Unmounts tmpfs volumes and removes the pod's volume directories.
pub fn cleanup(data_dir: &Path, uid: &str) -> Result<(), String> {
    let dir = pod_dir(data_dir, uid);
    let vols = dir.join("volumes");
    if let Ok(entries) = fs::read_dir(&vols) {
        for e in entries.flatten() {
            // Not mounted is fine: disk-backed emptyDirs are plain directories.
            let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn empty_dir(dir: &Path, spec: &Value) -> Result<(), String> {
    let fresh = !dir.exists();
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if spec["medium"] == "Memory" && fresh {
        let size = spec["sizeLimit"]
            .as_str()
            .and_then(parse_quantity)
            .map(|b| format!("size={}", b as u64));
        let opts = size.unwrap_or_default();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .map_err(|e| format!("mounting a tmpfs on {}: {e}", dir.display()))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// hostPath with Kubernetes' type checks.
fn host_path(spec: &Value) -> Result<PathBuf, String> {
    let path = PathBuf::from(spec["path"].as_str().unwrap_or_default());
    let ty = spec["type"].as_str().unwrap_or("");
    let meta = fs::metadata(&path);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {what}",
            path.display()
        ))
    };
    match ty {
        "" => {}
        "DirectoryOrCreate" if meta.is_err() => {
            fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
        }
        "FileOrCreate" if meta.is_err() => {
            fs::File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .map_err(|e| e.to_string())?;
        }
        "Directory" | "DirectoryOrCreate" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => {
            return fail("directory");
        }
        "File" | "FileOrCreate" if !meta.as_ref().is_ok_and(|m| m.is_file()) => {
            return fail("file");
        }
        "Socket" if !meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) => {
            return fail("socket");
        }
        "CharDevice" if !meta.as_ref().is_ok_and(|m| m.file_type().is_char_device()) => {
            return fail("character device");
        }
        "BlockDevice" if !meta.as_ref().is_ok_and(|m| m.file_type().is_block_device()) => {
            return fail("block device");
        }
        "Directory" | "DirectoryOrCreate" | "File" | "FileOrCreate" | "Socket" | "CharDevice"
        | "BlockDevice" => {}
        other => return Err(format!("hostPath type {other:?} is not supported")),
    }
    Ok(path)
}

/// The files of a configMap, secret, downwardAPI or projected volume; None
/// for other volume types.
pub fn projection(
    pod: &Value,
    vol: &Value,
    src: &Sources,
) -> Result<Option<Vec<ProjectedFile>>, String> {
    let default_mode = |spec: &Value| spec["defaultMode"].as_u64().unwrap_or(0o644) as u32;
    let files = if let Some(s) = vol.get("configMap") {
        key_files(
            s,
            (src.config_map)(s["name"].as_str().unwrap_or_default()),
            "configmap",
            default_mode(s),
            false,
        )?
    } else if let Some(s) = vol.get("secret") {
        let name = s["secretName"].as_str().unwrap_or_default();
        key_files(s, (src.secret)(name), "secret", default_mode(s), true)?
    } else if let Some(s) = vol.get("downwardAPI") {
        downward_files(pod, s, default_mode(s))?
    } else if let Some(s) = vol.get("projected") {
        let mode = default_mode(s);
        let mut all = Vec::new();
        for source in s["sources"].as_array().into_iter().flatten() {
            if let Some(c) = source.get("configMap") {
                all.extend(key_files(
                    c,
                    (src.config_map)(c["name"].as_str().unwrap_or_default()),
                    "configmap",
                    mode,
                    false,
                )?);
            } else if let Some(c) = source.get("secret") {
                all.extend(key_files(
                    c,
                    (src.secret)(c["name"].as_str().unwrap_or_default()),
                    "secret",
                    mode,
                    true,
                )?);
            } else if let Some(d) = source.get("downwardAPI") {
                all.extend(downward_files(pod, d, mode)?);
            }
        }
        all
    } else {
        return Ok(None);
    };
    Ok(Some(files))
}

/// A configMap's or secret's keys as files, honouring `items` and `optional`.
fn key_files(
    spec: &Value,
    obj: Option<Value>,
    what: &str,
    mode: u32,
    base64: bool,
) -> Result<Vec<ProjectedFile>, String> {
    let name = spec["name"]
        .as_str()
        .or(spec["secretName"].as_str())
        .unwrap_or_default();
    let Some(obj) = obj else {
        if spec["optional"].as_bool() == Some(true) {
            return Ok(Vec::new());
        }
        return Err(format!("{what} \"{name}\" not found"));
    };
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let s = v.as_str().unwrap_or_default();
        let bytes = if base64 {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("{what} {name} key {k}: {e}"))?
        } else {
            s.as_bytes().to_vec()
        };
        data.insert(k.clone(), bytes);
    }
    for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| format!("{what} {name} key {k}: {e}"))?;
        data.insert(k.clone(), bytes);
    }
    match spec["items"].as_array() {
        None => Ok(data
            .into_iter()
            .map(|(path, data)| ProjectedFile { path, data, mode })
            .collect()),
        Some(items) => items
            .iter()
            .map(|it| {
                let key = it["key"].as_str().unwrap_or_default();
                let data = data
                    .get(key)
                    .cloned()
                    .ok_or_else(|| format!("couldn't find key {key} in {what} {name}"))?;
                Ok(ProjectedFile {
                    path: it["path"].as_str().unwrap_or(key).to_string(),
                    data,
                    mode: it["mode"].as_u64().map(|m| m as u32).unwrap_or(mode),
                })
            })
            .collect(),
    }
}

fn downward_files(pod: &Value, spec: &Value, mode: u32) -> Result<Vec<ProjectedFile>, String> {
    spec["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|it| {
            let path = it["fieldRef"]["fieldPath"].as_str().unwrap_or_default();
            let data = match path {
                "metadata.labels" | "metadata.annotations" => {
                    let key = path.trim_start_matches("metadata.");
                    pod["metadata"][key]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| format!("{k}=\"{}\"\n", v.as_str().unwrap_or_default()))
                        .collect::<String>()
                }
                "metadata.name" | "metadata.namespace" | "metadata.uid" => pod["metadata"]
                    [path.trim_start_matches("metadata.")]
                .as_str()
                .unwrap_or_default()
                .to_string(),
                other => {
                    return Err(format!(
                        "downwardAPI volume: field {other:?} is not supported"
                    ));
                }
            };
            Ok(ProjectedFile {
                path: it["path"].as_str().unwrap_or_default().to_string(),
                data: data.into_bytes(),
                mode: it["mode"].as_u64().map(|m| m as u32).unwrap_or(mode),
            })
        })
        .collect()
}

/// Writes the files into a fresh directory and swaps it in, so containers
/// never see a half-written volume.
fn write_files(dir: &Path, files: &[ProjectedFile]) -> Result<(), String> {
    let tmp = dir.with_extension("new");
    let _ = fs::remove_dir_all(&tmp);
    for f in files {
        let rel = Path::new(&f.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "projected path {:?} must be relative and stay inside the volume",
                f.path
            ));
        }
        let p = tmp.join(rel);
        fs::create_dir_all(p.parent().unwrap_or(&tmp))
            .map_err(|e| format!("{}: {e}", p.display()))?;
        fs::write(&p, &f.data).map_err(|e| format!("{}: {e}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(f.mode))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir).map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sources<'a>(
        cm: &'a dyn Fn(&str) -> Option<Value>,
        sec: &'a dyn Fn(&str) -> Option<Value>,
    ) -> Sources<'a> {
        Sources {
            config_map: cm,
            secret: sec,
        }
    }

    #[test]
    fn config_maps_project_all_keys_or_items_with_modes() {
        let cm = |n: &str| (n == "cfg").then(|| json!({"data": {"a": "1", "b": "2"}}));
        let none = |_: &str| None;
        let pod = json!({});
        let all = projection(
            &pod,
            &json!({"name": "v", "configMap": {"name": "cfg"}}),
            &sources(&cm, &none),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            all,
            [
                ProjectedFile {
                    path: "a".into(),
                    data: b"1".to_vec(),
                    mode: 0o644
                },
                ProjectedFile {
                    path: "b".into(),
                    data: b"2".to_vec(),
                    mode: 0o644
                },
            ]
        );
        let items = json!({"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [{"key": "b", "path": "sub/b.txt"}]}});
        let some = projection(&pod, &items, &sources(&cm, &none))
            .unwrap()
            .unwrap();
        assert_eq!(
            some,
            [ProjectedFile {
                path: "sub/b.txt".into(),
                data: b"2".to_vec(),
                mode: 0o600
            }]
        );
        let missing_key = json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}});
        assert_eq!(
            projection(&pod, &missing_key, &sources(&cm, &none)).unwrap_err(),
            "couldn't find key zz in configmap cfg"
        );
        let missing = json!({"name": "v", "configMap": {"name": "gone"}});
        assert_eq!(
            projection(&pod, &missing, &sources(&cm, &none)).unwrap_err(),
            "configmap \"gone\" not found"
        );
        let optional = json!({"name": "v", "configMap": {"name": "gone", "optional": true}});
        assert_eq!(
            projection(&pod, &optional, &sources(&cm, &none))
                .unwrap()
                .unwrap(),
            []
        );
    }

    #[test]
    fn secrets_are_decoded_and_downward_api_writes_labels() {
        let none = |_: &str| None;
        let sec = |_: &str| Some(json!({"data": {"pw": "aHVudGVyMg=="}}));
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "a"}}});
        let s = projection(
            &pod,
            &json!({"name": "v", "secret": {"secretName": "s"}}),
            &sources(&none, &sec),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s[0].data, b"hunter2");
        let d = json!({"name": "v", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}, {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}});
        let files = projection(&pod, &d, &sources(&none, &none))
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(files[0].data.clone()).unwrap(),
            "app=\"web\"\ntier=\"a\"\n"
        );
        assert_eq!(files[1].data, b"p");
        assert!(
            projection(
                &pod,
                &json!({"name": "v", "nfs": {}}),
                &sources(&none, &none)
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = std::env::temp_dir().join(format!("bramble-hostpath-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = dir.join("made");
        let spec = json!({"path": p, "type": "DirectoryOrCreate"});
        assert_eq!(host_path(&spec).unwrap(), p);
        assert!(p.is_dir());
        let err = host_path(&json!({"path": p, "type": "File"})).unwrap_err();
        assert_eq!(
            err,
            format!("hostPath type check failed: {} is not a file", p.display())
        );
        assert!(host_path(&json!({"path": dir.join("nope"), "type": "Directory"})).is_err());
        assert!(host_path(&json!({"path": dir.join("nope"), "type": "Weird"})).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
