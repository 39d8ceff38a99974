//! One integration-test binary (fast to link); a module per story.

mod api;
mod board;
mod boards;
mod controllers;
mod image_pods;
mod images;
mod kubectl;
mod manifests;
mod network;
mod pods;
mod runtime;
mod services;
mod support;
