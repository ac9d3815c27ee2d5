//! Layer 1, pure balancing arithmetic over the model: the weighted Maglev table and the
//! consistent table, the planner of what a change would move, and the telemetry weight
//! policies.
pub mod consistent;
pub mod maglev;
pub mod plan;
pub mod weights;

use crate::model::config::TableKind;

/// The table of `kind` over `members` (ring weights), `size` slots.
pub fn table(kind: TableKind, members: &[maglev::Member], size: u32) -> Vec<u32> {
    match kind {
        TableKind::Maglev => maglev::build(members, size),
        TableKind::Consistent => consistent::build(members, size),
    }
}
