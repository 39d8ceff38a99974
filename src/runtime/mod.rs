//! Containers on this board: the only code that calls libcontainer.
//!
//! libcontainer clones and runs Rust code before exec, which is unsafe in a process with other
//! threads, so every call happens in one single-threaded runtime helper process
//! ([`helper_main`], started as `bramble runtime-helper --root DATA_DIR/runtime`). The helper is
//! the parent of every container, reaps them through pidfds and outlives daemon restarts. The
//! daemon talks to it with [`RuntimeClient`] over `ROOT/runtime.sock` in postcard frames
//! ([`protocol`]).
//!
//! Code map: `protocol` (messages), `frame` (bytes on the socket), `client` (daemon side),
//! `helper` (poll loop), `containers` (the table of containers, every libcontainer call),
//! `output` (stdout and stderr through FIFOs into CRI log files), `sandbox` (pod namespaces, shm,
//! /etc files), `spec` (OCI spec, pure), `cgroups` (layout, values, OOM counter), `mounts`
//! (overlay, tmpfs, binds), `process` (pidfds, start times).

pub mod cgroups;
mod client;
mod containers;
mod error;
pub mod frame;
mod helper;
mod mounts;
mod output;
mod process;
pub mod protocol;
mod sandbox;
mod spec;

pub use cgroups::CgroupLayout;
pub use client::{ClientError, ExecHandle, HelperCommand, RuntimeClient};
pub use error::RuntimeError;
pub use helper::helper_main;
