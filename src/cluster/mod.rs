//! Federation: boards join one cluster. `server` is the side inside
//! `bramble server`, `agent` is `bramble agent`; they speak `protocol`
//! (postcard frames) over `tls` (rustls, TLS 1.3, mutual after `join`).
//! Only this module knows the cluster link.

pub mod agent;
pub mod join;
pub mod protocol;
pub mod server;
pub mod tls;
