//! The kubelet's side of the pod network: a pod's address through CNI once
//! its sandbox exists, its /etc/hosts and /etc/resolv.conf to match, the
//! address released at teardown, and at start the release of addresses
//! whose pods are gone (a crash between teardown steps).

use serde_json::Value;
use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::res;
use crate::net::{self, cni};
use crate::store::Store;

/// Where the CNI plugins are (Debian's containernetworking-plugins).
pub const CNI_DIR: &str = "/usr/lib/cni";

pub struct PodNetwork {
    bridge: String,
    data_dir: PathBuf,
    /// Made once this node has a pod CIDR and the bridge is up.
    net: RefCell<Option<Arc<cni::Network>>>,
}

impl PodNetwork {
    pub fn new(bridge: String, data_dir: &Path) -> PodNetwork {
        PodNetwork {
            bridge,
            data_dir: data_dir.to_owned(),
            net: RefCell::new(None),
        }
    }

    pub fn sandbox_dir(data_dir: &Path, uid: &str) -> PathBuf {
        data_dir.join("runtime/sandboxes").join(uid)
    }

    /// The node's network, once the node has a pod CIDR; brings the bridge up.
    pub async fn network(
        &self,
        store: &Store,
        node_name: &str,
    ) -> Result<Option<Arc<cni::Network>>, String> {
        if let Some(n) = self.net.borrow().clone() {
            return Ok(Some(n));
        }
        let Some(cidr) = store
            .get(res("Node"), "", node_name)
            .and_then(|n| net::pod_cidr_of(&n.value()))
        else {
            return Ok(None);
        };
        let bridge = self.bridge.clone();
        smol::unblock(move || cni::ensure_bridge(&bridge, &cidr)).await?;
        let n = Arc::new(cni::Network {
            plugins: Box::new(cni::Exec {
                dir: CNI_DIR.into(),
            }),
            bridge: self.bridge.clone(),
            pod_cidr: cidr,
            ipam_dir: self.data_dir.join("net/ipam"),
        });
        *self.net.borrow_mut() = Some(n.clone());
        Ok(Some(n))
    }

    /// Gives the pod its address and writes its hosts and resolv.conf.
    pub async fn add(
        &self,
        store: &Store,
        node_name: &str,
        pod: &Value,
        uid: &str,
    ) -> Result<Option<Ipv4Addr>, String> {
        let Some(n) = self.network(store, node_name).await? else {
            return Ok(None);
        };
        let dir = Self::sandbox_dir(&self.data_dir, uid);
        let (n2, uid2, netns) = (n.clone(), uid.to_string(), dir.join("net"));
        let ip = smol::unblock(move || n2.add(&uid2, &netns))
            .await
            .map_err(|e| e.to_string())?;
        let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap_or_default();
        // The sandbox named the pod 127.0.1.1 until it had an address. Written
        // in place: the files are bind-mounted by inode.
        std::fs::write(
            dir.join("hosts"),
            hosts.replace("127.0.1.1\t", &format!("{ip}\t")),
        )
        .map_err(|e| format!("writing the pod's hosts file: {e}"))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = net::dns::resolv_conf(pod, n.pod_cidr.host(1), &host_resolv);
        std::fs::write(dir.join("resolv.conf"), resolv)
            .map_err(|e| format!("writing the pod's resolv.conf: {e}"))?;
        Ok(Some(ip))
    }

    /// Releases the pod's address and veth (before its netns pin goes).
    pub async fn del(&self, store: &Store, node_name: &str, uid: &str) -> Result<(), String> {
        let Some(n) = self.network(store, node_name).await? else {
            return Ok(());
        };
        let netns = Self::sandbox_dir(&self.data_dir, uid).join("net");
        let uid = uid.to_string();
        smol::unblock(move || n.del(&uid, &netns))
            .await
            .map_err(|e| e.to_string())
    }

    /// Releases every address held for a pod not in `keep`.
    pub async fn release_stale(
        &self,
        store: &Store,
        node_name: &str,
        keep: &[String],
    ) -> Result<(), String> {
        let Some(n) = self.network(store, node_name).await? else {
            return Ok(());
        };
        let stale: Vec<String> = n
            .allocated()
            .into_iter()
            .filter(|id| !keep.contains(id))
            .collect();
        for uid in stale {
            log::info!("releasing the address of pod {uid}, which is gone");
            self.del(store, node_name, &uid).await?;
        }
        Ok(())
    }
}
