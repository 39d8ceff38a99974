//! One integration-test binary (fast to link); a module per story.

mod api;
mod boards;
mod images;
mod kubectl;
mod pods;
mod runtime;
mod support;
