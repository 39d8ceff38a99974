//! Errors of the helper's operations, with the context an operator can act on. They cross the
//! socket as a [`RemoteError`] (a kind plus this text).

use std::io;
use std::path::PathBuf;

use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::OciSpecError;

use super::cgroups::CgroupError;
use super::protocol::{ErrorKind, RemoteError};
use super::sandbox::SandboxError;

#[derive(Debug)]
pub enum RuntimeError {
    NotFound {
        what: &'static str,
        id: String,
    },
    AlreadyExists {
        id: String,
    },
    InvalidState {
        id: String,
        op: &'static str,
        status: &'static str,
    },
    InvalidArgument {
        field: &'static str,
        reason: String,
    },
    Sandbox {
        pod_uid: String,
        source: SandboxError,
    },
    Spec {
        id: String,
        source: OciSpecError,
    },
    /// Boxed: libcontainer's error is large and would bloat every `Result`.
    Libcontainer {
        op: &'static str,
        id: String,
        source: Box<LibcontainerError>,
    },
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    Cgroups(CgroupError),
    /// Another helper holds the lock on this root.
    AlreadyRunning {
        lock: PathBuf,
    },
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound { what, id } => write!(f, "{what} {id:?} not found"),
            Self::AlreadyExists { id } => {
                write!(f, "container {id:?} already exists; delete it first")
            }
            Self::InvalidState { id, op, status } => {
                write!(f, "cannot {op} container {id:?}: it is {status}")
            }
            Self::InvalidArgument { field, reason } => write!(f, "invalid {field}: {reason}"),
            Self::Sandbox { pod_uid, source } => write!(f, "pod {pod_uid:?} sandbox: {source}"),
            Self::Spec { id, source } => write!(f, "cannot build the OCI spec of {id:?}: {source}"),
            Self::Libcontainer { op, id, source } => {
                write!(f, "libcontainer could not {op} container {id:?}: {source}")
            }
            Self::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            Self::Cgroups(e) => write!(f, "{e}"),
            Self::AlreadyRunning { lock } => write!(
                f,
                "another runtime helper holds {}; connect to its socket instead",
                lock.display()
            ),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl RuntimeError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }

    pub fn libcontainer(op: &'static str, id: &str) -> impl FnOnce(LibcontainerError) -> Self {
        let id = id.to_owned();
        move |source| Self::Libcontainer {
            op,
            id,
            source: Box::new(source),
        }
    }

    pub fn to_remote(&self) -> RemoteError {
        let kind = match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::AlreadyExists { .. } | Self::AlreadyRunning { .. } => ErrorKind::AlreadyExists,
            Self::InvalidState { .. } => ErrorKind::InvalidState,
            Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        };
        RemoteError {
            kind,
            message: self.to_string(),
        }
    }
}
