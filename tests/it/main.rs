//! One integration-test binary (fast to link); a module per story.

mod api;
mod kubectl;
mod runtime;
mod support;
