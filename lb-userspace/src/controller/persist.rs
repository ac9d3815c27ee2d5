//! The state file: the desired state written as a config file after every change, so the next
//! lbd restores it.
use super::Controller;
use crate::model::config::Config;

impl Controller {
    /// Writes the desired state if persistence is on. A failure is logged: the change is
    /// already live, and the next successful change writes the file again.
    pub(super) fn save(&self) {
        let Some((path, daemon)) = &self.persist else {
            return;
        };
        let cfg = Config {
            lbd: daemon.clone(),
            vips: self.vips.iter().map(|v| v.cfg.clone()).collect(),
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let text = toml::to_string(&cfg).map_err(std::io::Error::other)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::error!("could not save the state to {}: {e}", path.display());
        }
    }
}
