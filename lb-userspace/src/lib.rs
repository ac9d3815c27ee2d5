//! The control plane of the balancer, in layers that import only downward:
//!
//! 0. [`sys`]: namespaces, netlink links, offloads, cgroups, BPF map batches;
//! 1. [`model`] (desired state, validation, wire types, messages, errors) and [`balance`]
//!    (Maglev, plans, weight policies: pure arithmetic over the model);
//! 2. [`dataplane`]: the map owner;
//! 3. [`controller`]: the core that owns the desired state and applies changes whole;
//! 4. [`workers`]: health checks, pools and VM providers, tickers;
//! 5. [`face`]: the API, its client, metrics, human tables;
//! 6. [`daemon`]: the daemon assembled.
pub mod balance;
pub mod controller;
pub mod daemon;
pub mod dataplane;
pub mod face;
pub mod model;
pub mod sys;
pub mod workers;
