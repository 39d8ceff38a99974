//! bramble: a Kubernetes-style orchestrator for small boards. See
//! ARCHITECTURE.md for the map.

pub mod api;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod controllers;
pub mod events;
pub mod export;
pub mod image;
pub mod kubelet;
pub mod manifests;
pub mod metrics;
pub mod model;
#[cfg(test)]
pub(crate) mod mutate;
pub mod net;
pub mod node;
pub mod pki;
pub mod runtime;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod store;
