//! One integration-test binary (fast to link); a module per story.

mod api;
mod board;
mod boards;
mod chaos;
mod cluster_network;
mod controllers;
mod deployments;
mod federation;
mod hardening;
mod image_pods;
mod images;
mod kubectl;
mod limits;
mod manifests;
mod network;
mod pods;
mod power_loss;
mod runtime;
mod scheduling;
mod services;
mod support;
mod workloads;
