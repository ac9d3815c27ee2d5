//! Control plane of the balancer: object loading, map access, Maglev, config, controller, API.
pub mod api;
pub mod client;
pub mod config;
pub mod controller;
pub mod dataplane;
pub mod health;
pub mod lab;
pub mod maglev;
pub mod metrics;
pub mod netns;
pub mod object;
pub mod plan;
pub mod pool;
pub mod vm;
pub mod weights;
