//! Layer 5, the faces: the HTTP/JSON API server and its client, the Prometheus metrics page,
//! and the human tables the CLI prints.
pub mod api;
pub mod client;
pub mod metrics;
pub mod render;
