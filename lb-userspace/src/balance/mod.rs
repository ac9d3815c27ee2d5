//! Layer 1, pure balancing arithmetic over the model: the weighted Maglev table, the planner
//! of what a change would move, and the telemetry weight policies.
pub mod maglev;
pub mod plan;
pub mod weights;
