//! What the workers and the controller tell each other (besides the API's wire types): the
//! health checkers' targets and the agents' reports.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use super::{config::HealthConfig, wire::HealthDetail};

/// The health checkers' latest detail per (VIP name, backend), which they write after every
/// check and the controller's views read.
pub type HealthBoard = Arc<Mutex<HashMap<(String, SocketAddr), HealthDetail>>>;

/// One backend to check, as the controller sees it now.
#[derive(Clone, Debug)]
pub struct HealthTarget {
    /// VIP name.
    pub vip: String,
    /// The backend.
    pub addr: SocketAddr,
    /// How to check it.
    pub cfg: HealthConfig,
    /// Whether the controller has it up (a checker starts from this).
    pub up: bool,
    /// Which time the backend joined the VIP: a backend removed and added again between two
    /// looks of the health manager gets a fresh checker, starting from the controller's state.
    pub generation: u64,
}

/// What an agent reported, in HAProxy's agent-check words, plus the load words of
/// `lb-backend` (`cpu=NN%`, `inflight=N`, `capacity=CORES`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AgentReport {
    /// `down`, `fail`, `stopped` or `maint` was said.
    pub down: bool,
    /// Weight percentage: `drain` is 0, `NN%` is NN, neither is 100.
    pub percent: u32,
    /// CPU use as a share of the VM's limit (`cpu=42.5%` is 0.425).
    pub cpu: Option<f64>,
    /// Requests being served.
    pub inflight: Option<u64>,
    /// The VM's CPU limit in cores.
    pub capacity: Option<f64>,
}

impl AgentReport {
    /// What a check that reports nothing but success means: up, full weight, no load known.
    pub const UP: AgentReport = AgentReport {
        down: false,
        percent: 100,
        cpu: None,
        inflight: None,
        capacity: None,
    };
}
