//! Layer 5, the faces: the HTTP/JSON API server and its client, the Prometheus metrics page,
//! the human tables the CLI prints, and the trace reader behind `lbctl trace`.
pub mod api;
pub mod client;
pub mod metrics;
pub mod render;
pub mod trace;
