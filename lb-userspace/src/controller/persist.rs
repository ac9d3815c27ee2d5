//! The state file: the desired state written after every change (crash-safely, see
//! [`crate::model::state`]) with the digest of the config it derives from, so the next lbd
//! restores it while the config is unchanged. A batch of changes writes it once.
use std::path::PathBuf;

use super::Controller;
use crate::model::{
    config::Daemon,
    state::{StateFile, StateMeta},
};

/// Where and how the controller keeps its state file.
pub struct Persist {
    /// The state file.
    pub path: PathBuf,
    /// The daemon settings written with it.
    pub daemon: Daemon,
    /// Digest of the config the desired state derives from.
    pub config_digest: String,
}

impl Controller {
    /// Writes the desired state if persistence is on and no batch is in progress. A failure
    /// is logged: the change is already live, and the next successful change writes the file
    /// again.
    pub(super) fn save(&self) {
        let Some(p) = &self.persist else {
            return;
        };
        if self.batch {
            return;
        }
        let state = StateFile {
            state: Some(StateMeta {
                config_digest: p.config_digest.clone(),
            }),
            lbd: p.daemon.clone(),
            vips: self.desired(),
        };
        if let Err(e) = state.write(&p.path) {
            tracing::error!("could not save the state to {}: {e}", p.path.display());
        }
    }
}
