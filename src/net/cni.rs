//! Pod addresses through the standard CNI plugins (Debian's
//! containernetworking-plugins in /usr/lib/cni), invoked per the CNI spec:
//! `bridge` puts the pod's `eth0` on the board's bridge with the bridge as
//! default gateway, `host-local` hands out the addresses of the node's pod
//! CIDR and keeps them as files under `DATA_DIR/net/ipam` (one file per
//! address holding the container id: what crash recovery reads).
//!
//! Masquerading is not the bridge plugin's (it would add iptables chains per
//! pod): the proxy's nftables table does it. The plugins are processes, so
//! callers run these functions off the executor.

use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::Cidr;

/// The CNI network name; also host-local's directory under the data dir.
pub const NETWORK: &str = "bramble";
const VERSION: &str = "1.0.0";

#[derive(Debug)]
pub enum CniError {
    /// The plugin could not be started.
    Exec {
        plugin: PathBuf,
        source: std::io::Error,
    },
    /// The plugin answered with a CNI error (or with nothing readable).
    Plugin {
        command: &'static str,
        code: i64,
        msg: String,
    },
    /// ADD succeeded without an IPv4 address in its result.
    NoAddress(String),
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exec { plugin, source } => write!(
                f,
                "cannot run the CNI plugin {}: {source} (install containernetworking-plugins)",
                plugin.display()
            ),
            Self::Plugin { command, code, msg } => {
                write!(f, "CNI {command} failed (code {code}): {msg}")
            }
            Self::NoAddress(out) => write!(f, "CNI ADD gave the pod no IPv4 address: {out}"),
        }
    }
}

impl std::error::Error for CniError {}

/// Runs one plugin: the OS side, behind a trait so the sequencing is tested
/// without a kernel.
pub trait Plugins {
    /// Runs `plugin` with the CNI environment `env` and `config` on stdin;
    /// its stdout, and whether it exited 0.
    fn run(
        &self,
        plugin: &str,
        env: &[(&str, &str)],
        config: &[u8],
    ) -> Result<(Vec<u8>, bool), CniError>;
}

/// The plugins as processes from a directory (CNI_PATH).
pub struct Exec {
    pub dir: PathBuf,
}

impl Plugins for Exec {
    fn run(
        &self,
        plugin: &str,
        env: &[(&str, &str)],
        config: &[u8],
    ) -> Result<(Vec<u8>, bool), CniError> {
        use std::io::Write;
        let path = self.dir.join(plugin);
        let err = |source| CniError::Exec {
            plugin: path.clone(),
            source,
        };
        let mut child = std::process::Command::new(&path)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_PATH", &self.dir)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(err)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(config).map_err(err)?;
        }
        let out = child.wait_with_output().map_err(err)?;
        Ok((out.stdout, out.status.success()))
    }
}

/// One node's pod network.
pub struct Network {
    pub plugins: Box<dyn Plugins + Send + Sync>,
    pub bridge: String,
    pub pod_cidr: Cidr,
    /// host-local's data directory.
    pub ipam_dir: PathBuf,
}

impl Network {
    /// The bridge plugin's network configuration.
    pub fn config(&self) -> Value {
        json!({
            "cniVersion": VERSION,
            "name": NETWORK,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.pod_cidr.to_string(), "gateway": self.pod_cidr.host(1).to_string()}]],
                "dataDir": self.ipam_dir,
            },
        })
    }

    fn call(&self, command: &'static str, id: &str, netns: &Path) -> Result<Vec<u8>, CniError> {
        let netns = netns.to_string_lossy();
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
        ];
        let config = self.config().to_string();
        let (out, ok) = self.plugins.run("bridge", &env, config.as_bytes())?;
        match ok {
            true => Ok(out),
            false => Err(plugin_error(command, &out)),
        }
    }

    /// Gives the pod in `netns` its eth0 and address. A half-made earlier
    /// attempt (a crash between ADD and recording the address) is deleted
    /// and the ADD made again.
    pub fn add(&self, pod_uid: &str, netns: &Path) -> Result<Ipv4Addr, CniError> {
        let out = match self.call("ADD", pod_uid, netns) {
            Ok(out) => out,
            Err(CniError::Plugin { .. }) => {
                self.del(pod_uid, netns)?;
                self.call("ADD", pod_uid, netns)?
            }
            Err(e) => return Err(e),
        };
        let ip = pod_address(&out)
            .ok_or_else(|| CniError::NoAddress(String::from_utf8_lossy(&out).into_owned()))?;
        Ok(ip)
    }

    /// Releases the pod's address and removes its veth; idempotent. A
    /// missing netns (pin already gone) releases the address only.
    pub fn del(&self, pod_uid: &str, netns: &Path) -> Result<(), CniError> {
        let netns = if netns.exists() { netns } else { Path::new("") };
        self.call("DEL", pod_uid, netns).map(drop)
    }

    /// The pod uids host-local holds addresses for.
    pub fn allocated(&self) -> Vec<String> {
        let dir = self.ipam_dir.join(NETWORK);
        let mut ids: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<Ipv4Addr>().is_ok())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| allocation_owner(&text))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Creates the bridge with the gateway address and brings it up, so that
/// the DNS server can bind to it before the first pod; idempotent. (The
/// bridge plugin would make it at the first ADD otherwise.)
pub fn ensure_bridge(name: &str, pod_cidr: &Cidr) -> Result<(), String> {
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))
    };
    if !link_exists(name) {
        let out = ip(&["link", "add", name, "type", "bridge"])?;
        // Another task may have made it meanwhile.
        if !out.status.success() && !link_exists(name) {
            return Err(format!(
                "cannot create the pod bridge {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let gw = format!("{}/{}", pod_cidr.host(1), pod_cidr.prefix);
    for args in [
        vec!["addr", "replace", &gw, "dev", name],
        vec!["link", "set", name, "up"],
    ] {
        let out = ip(&args)?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    // NodePorts on 127.0.0.1 are DNATed to pods behind the bridge.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"),
        "1",
    );
    Ok(())
}

/// Whether this network namespace has the interface. (Not /sys/class/net:
/// that shows the namespace sysfs was mounted in, which a daemon started
/// with `ip netns exec`-style tools does not share.)
fn link_exists(name: &str) -> bool {
    std::process::Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the bridge (`bramble network cleanup`); a missing one is fine.
pub fn remove_bridge(name: &str) -> Result<(), String> {
    if !link_exists(name) {
        return Ok(());
    }
    let out = std::process::Command::new("ip")
        .args(["link", "del", name])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "ip link del {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// The first IPv4 address of an ADD result (CNI 1.0: `ips[].address`).
pub fn pod_address(result: &[u8]) -> Option<Ipv4Addr> {
    let v: Value = serde_json::from_slice(result).ok()?;
    v["ips"].as_array()?.iter().find_map(|ip| {
        let a = ip["address"].as_str()?;
        a.split('/').next()?.parse().ok()
    })
}

/// A plugin's failure from its CNI error JSON on stdout.
fn plugin_error(command: &'static str, out: &[u8]) -> CniError {
    let v: Value = serde_json::from_slice(out).unwrap_or(Value::Null);
    let mut msg = v["msg"].as_str().unwrap_or("no error message").to_string();
    if let Some(d) = v["details"].as_str().filter(|d| !d.is_empty()) {
        msg = format!("{msg}: {d}");
    }
    CniError::Plugin {
        command,
        code: v["code"].as_i64().unwrap_or(0),
        msg,
    }
}

/// The container id in one of host-local's address files
/// (`<id>\r\n<ifname>`, or the bare id of older versions).
pub fn allocation_owner(text: &str) -> Option<String> {
    let id = text.lines().next()?.trim();
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers from a script of (exit ok, stdout) and records the commands.
    struct Script {
        answers: Mutex<Vec<(bool, &'static str)>>,
        calls: std::sync::Arc<Mutex<Vec<String>>>,
    }

    impl Plugins for Script {
        fn run(
            &self,
            plugin: &str,
            env: &[(&str, &str)],
            config: &[u8],
        ) -> Result<(Vec<u8>, bool), CniError> {
            let get = |k| {
                env.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| *v)
                    .unwrap_or("")
            };
            let config: Value = serde_json::from_slice(config).unwrap();
            self.calls.lock().unwrap().push(format!(
                "{plugin} {} {} {} {} {}",
                get("CNI_COMMAND"),
                get("CNI_CONTAINERID"),
                get("CNI_NETNS"),
                get("CNI_IFNAME"),
                config["ipam"]["ranges"][0][0]["gateway"]
            ));
            let (ok, out) = self.answers.lock().unwrap().remove(0);
            Ok((out.as_bytes().to_vec(), ok))
        }
    }

    type Calls = std::sync::Arc<Mutex<Vec<String>>>;

    fn network(answers: Vec<(bool, &'static str)>) -> (Network, Calls) {
        let calls = Calls::default();
        let n = Network {
            plugins: Box::new(Script {
                answers: Mutex::new(answers),
                calls: calls.clone(),
            }),
            bridge: "brt0".into(),
            pod_cidr: "10.42.3.0/24".parse().unwrap(),
            ipam_dir: "/nonexistent/ipam".into(),
        };
        (n, calls)
    }

    const RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"brt0"}],
        "ips":[{"interface":2,"address":"10.42.3.7/24","gateway":"10.42.3.1"}]}"#;

    #[test]
    fn add_runs_bridge_with_the_pods_netns_and_reads_the_address() {
        let (n, calls) = network(vec![(true, RESULT)]);
        let ip = n.add("uid1", Path::new("/run/ns/uid1")).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 42, 3, 7));
        assert_eq!(
            *calls.lock().unwrap(),
            ["bridge ADD uid1 /run/ns/uid1 eth0 \"10.42.3.1\""]
        );
    }

    #[test]
    fn a_failed_add_is_undone_and_tried_again_once() {
        let busy = r#"{"cniVersion":"1.0.0","code":11,"msg":"container veth name provided (eth0) already exists"}"#;
        let (n, calls) = network(vec![(false, busy), (true, "{}"), (true, RESULT)]);
        n.add("uid1", Path::new("/")).unwrap();
        assert!(calls.lock().unwrap()[1].starts_with("bridge DEL uid1 / eth0"));
        let (n, _) = network(vec![(false, busy), (true, "{}"), (false, busy)]);
        let e = n.add("uid1", Path::new("/")).unwrap_err().to_string();
        assert_eq!(
            e,
            "CNI ADD failed (code 11): container veth name provided (eth0) already exists"
        );
    }

    #[test]
    fn del_without_a_netns_only_releases_the_address() {
        let (n, calls) = network(vec![(true, "")]);
        n.del("gone", Path::new("/nonexistent/netns")).unwrap();
        assert_eq!(
            *calls.lock().unwrap(),
            ["bridge DEL gone  eth0 \"10.42.3.1\""]
        );
    }

    #[test]
    fn results_and_allocation_files_parse_defensively() {
        assert_eq!(pod_address(b"not json"), None);
        assert_eq!(pod_address(br#"{"ips":[{"address":"fd00::5/64"}]}"#), None);
        assert_eq!(allocation_owner("abc-123\r\neth0"), Some("abc-123".into()));
        assert_eq!(allocation_owner("abc"), Some("abc".into()));
        assert_eq!(allocation_owner(""), None);
        let e = plugin_error("DEL", b"");
        assert_eq!(e.to_string(), "CNI DEL failed (code 0): no error message");
    }
}
