//! One integration-test binary (fast to link); a module per story.

mod api;
mod board;
mod boards;
mod controllers;
mod federation;
mod image_pods;
mod images;
mod kubectl;
mod pods;
mod runtime;
mod support;
