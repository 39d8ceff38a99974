//! The messages of the cluster link, and the frames that carry them.
//!
//! One enum for both directions. It evolves by appending variants only:
//! postcard names a variant by its index, so an old peer keeps decoding
//! every variant it knows, and `Hello` (index 0, version first) stays
//! readable by every version, so a mismatch is refused with a clear message
//! instead of garbage.

use serde::{Deserialize, Serialize};

use crate::runtime::frame::{self, FrameError};

/// Bumped when a change is not an appended variant, or when a peer must
/// understand a new variant to work at all (2: `ClusterNetwork`).
pub const VERSION: u32 = 2;

/// The largest frame either side accepts: a Secret of 1 MiB, base64 in JSON,
/// fits; anything bigger is a broken or hostile peer, refused before any
/// memory is allocated for it.
pub const MAX_FRAME: usize = 2 << 20;

/// The kinds of object a server sends to an agent for its node: the pods
/// bound to it and what their volumes and env read.
pub const NODE_KINDS: [&str; 3] = ["Pod", "ConfigMap", "Secret"];

/// The kinds every agent gets whole, for the pod network: Services and
/// their EndpointSlices (rules, DNS, service variables) and the Nodes' pod
/// CIDRs and addresses (routes), as [`network_view`] trims them.
pub const CLUSTER_KINDS: [&str; 3] = ["Service", "EndpointSlice", "Node"];

/// What an agent keeps of a Node: what routes to its pods need (name,
/// labels, pod CIDRs, addresses), so that heartbeats and conditions, which
/// change often, travel to no other board.
pub fn network_view(node: &serde_json::Value) -> serde_json::Value {
    let pick = |v: &serde_json::Value, keys: &[&str]| {
        let kept = keys
            .iter()
            .filter_map(|k| Some((k.to_string(), v.get(*k).filter(|x| !x.is_null())?.clone())));
        serde_json::Value::Object(kept.collect())
    };
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": pick(&node["metadata"], &["name", "uid", "labels"]),
        "spec": pick(&node["spec"], &["podCIDR", "podCIDRs"]),
        "status": pick(&node["status"], &["addresses"]),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Agent → server, first frame of every connection.
    Hello { version: u32, node: String },
    /// Server → agent: the Hello is accepted; the server's full set follows.
    Welcome { version: u32 },
    /// Either side, last frame: why the connection ends.
    Refused { reason: String },
    /// Agent → server, on a connection without a client certificate: the
    /// token's secret and the public key (raw ECDSA P-256 point) to certify.
    Join { secret: String, public_key: Vec<u8> },
    /// Server → agent: the node's client certificate (PEM), CN = node name.
    Joined { certificate: String },
    /// Server → agent: an object to hold (kind from `MIRRORED_KINDS`, JSON).
    Upsert { kind: String, json: String },
    /// Server → agent: an object no longer for this node.
    Remove {
        kind: String,
        namespace: String,
        name: String,
    },
    /// Server → agent: every object of the full set has been sent; anything
    /// else the agent holds is no longer its own.
    SyncEnd,
    /// Agent → server: a pod's status as the agent's kubelet wrote it (JSON).
    PodStatus {
        namespace: String,
        name: String,
        uid: String,
        status: String,
    },
    /// Agent → server: the kubelet finished a pod's graceful deletion.
    PodGone {
        namespace: String,
        name: String,
        uid: String,
    },
    /// Agent → server: the agent's Node object (JSON): labels, capacity,
    /// addresses, conditions.
    NodeStatus { json: String },
    /// Agent → server: alive (kept in memory by the server, never on disk).
    Heartbeat,
    /// Server → agent: `kubectl logs` of a pod on the board; `query` is the
    /// request's (tailLines, follow, timestamps...).
    LogRequest {
        id: u64,
        namespace: String,
        name: String,
        container: String,
        previous: bool,
        query: Vec<(String, String)>,
    },
    /// Agent → server: bytes of stream `id`; the first, empty, says it began.
    StreamData { id: u64, data: Vec<u8> },
    /// Agent → server: stream `id` ended; `error` is for the user (a 400).
    StreamEnd { id: u64, error: Option<String> },
    /// Server → agent: the client of stream `id` went away.
    StreamCancel { id: u64 },
    /// Server → agent: `kubectl exec` (no stdin, no TTY) in a pod on the
    /// board; answered like a log (`StreamData` empty, or `StreamEnd`).
    ExecRequest {
        id: u64,
        namespace: String,
        name: String,
        container: String,
        command: Vec<String>,
    },
    /// Agent → server: output of exec `id`.
    ExecOutput {
        id: u64,
        stderr: bool,
        data: Vec<u8>,
    },
    /// Agent → server: exec `id` ended with an exit code, or by a signal.
    ExecExit {
        id: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Server → agent, right after Welcome: the cluster CIDR (every node's
    /// pod CIDR is a part of it), for the agent's routes and masquerading.
    ClusterNetwork { cluster_cidr: String },
}

impl Message {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Welcome { .. } => "Welcome",
            Message::Refused { .. } => "Refused",
            Message::Join { .. } => "Join",
            Message::Joined { .. } => "Joined",
            Message::Upsert { .. } => "Upsert",
            Message::Remove { .. } => "Remove",
            Message::SyncEnd => "SyncEnd",
            Message::PodStatus { .. } => "PodStatus",
            Message::PodGone { .. } => "PodGone",
            Message::NodeStatus { .. } => "NodeStatus",
            Message::Heartbeat => "Heartbeat",
            Message::LogRequest { .. } => "LogRequest",
            Message::StreamData { .. } => "StreamData",
            Message::StreamEnd { .. } => "StreamEnd",
            Message::StreamCancel { .. } => "StreamCancel",
            Message::ExecRequest { .. } => "ExecRequest",
            Message::ExecOutput { .. } => "ExecOutput",
            Message::ExecExit { .. } => "ExecExit",
            Message::ClusterNetwork { .. } => "ClusterNetwork",
        }
    }
}

/// The server's answer to a Hello's version: None to go on, or the reason
/// to refuse (sent to the agent and logged).
pub fn check_version(theirs: u32) -> Option<String> {
    (theirs != VERSION).then(|| {
        format!(
            "cluster protocol version {theirs} is not supported: this side speaks version {VERSION}; run the same bramble release on the server and its agents"
        )
    })
}

pub fn encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    frame::encode_limited(msg, MAX_FRAME)
}

/// Removes and decodes the first complete frame of `buf`: `Ok(None)` while
/// it is partial; an oversized length is an error before the body arrives.
pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Message>, FrameError> {
    frame::parse_limited(buf, MAX_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Message {
        Message::PodStatus {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            status: r#"{"phase":"Running"}"#.into(),
        }
    }

    #[test]
    fn frames_round_trip_and_partial_frames_wait() {
        let bytes = encode(&status()).unwrap();
        let mut buf = Vec::new();
        for b in &bytes[..bytes.len() - 1] {
            buf.push(*b);
            assert_eq!(decode(&mut buf).unwrap(), None, "a partial frame waits");
        }
        buf.push(*bytes.last().unwrap());
        buf.extend(encode(&Message::Heartbeat).unwrap());
        assert_eq!(decode(&mut buf).unwrap(), Some(status()));
        assert_eq!(decode(&mut buf).unwrap(), Some(Message::Heartbeat));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let mut buf = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes().to_vec();
        assert!(matches!(
            decode(&mut buf),
            Err(FrameError::TooLarge { len, max: MAX_FRAME }) if len == MAX_FRAME + 1
        ));
        let big = Message::NodeStatus {
            json: "x".repeat(MAX_FRAME),
        };
        assert!(matches!(encode(&big), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn malformed_and_unknown_frames_are_errors() {
        // Variant index 200 does not exist.
        let mut buf = vec![0, 0, 0, 1, 200];
        assert!(matches!(decode(&mut buf), Err(FrameError::Decode(_))));
        // A Hello whose string length runs past the frame.
        let mut buf = vec![0, 0, 0, 3, 0, 1, 50];
        assert!(matches!(decode(&mut buf), Err(FrameError::Decode(_))));
    }

    #[test]
    fn hello_layout_is_stable_so_any_version_can_read_it() {
        let bytes = encode(&Message::Hello {
            version: 7,
            node: "pi".into(),
        })
        .unwrap();
        // length, variant 0, varint version, string.
        assert_eq!(bytes, [0, 0, 0, 5, 0, 7, 2, b'p', b'i']);
    }

    #[test]
    fn agents_get_of_a_node_only_what_routes_need() {
        let node = serde_json::json!({
            "metadata": {"name": "pi-2", "uid": "u", "resourceVersion": "9"},
            "spec": {"podCIDR": "10.42.2.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.7"}],
                       "conditions": [{"type": "Ready", "lastHeartbeatTime": "t"}]},
        });
        assert_eq!(
            network_view(&node),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "pi-2", "uid": "u"},
                "spec": {"podCIDR": "10.42.2.0/24"},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.7"}]},
            })
        );
    }

    #[test]
    fn unknown_version_is_refused_with_both_versions_named() {
        assert_eq!(check_version(VERSION), None);
        let why = check_version(VERSION + 1).unwrap();
        assert!(why.contains(&format!("version {}", VERSION + 1)), "{why}");
        assert!(why.contains(&format!("speaks version {VERSION}")), "{why}");
    }
}
