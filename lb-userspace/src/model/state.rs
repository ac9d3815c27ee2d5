//! The state file: the desired state lbd runs (its VIPs, runtime changes included) with the
//! digest of the config it started from, written crash-safely (write, fsync, rename, fsync the
//! directory; mode 0600, as it holds the hash seed) after every change.
//!
//! The rule an operator can predict: the config file is the source of truth. Runtime changes
//! (the API, `lbctl`) are kept in the state file and survive restarts for as long as the config
//! is unchanged; once the config is edited, the next start or reload applies the config and
//! reports the runtime changes it drops. `lbctl diff` shows them in the meantime.
use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    config::{Config, Daemon, VipConfig},
    error::Error,
};

/// `[state]` of the state file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateMeta {
    /// [`digest`] of the config file the state derives from.
    pub config_digest: String,
}

/// The whole state file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Where it came from (absent in files of lbd before 0.2: restored as they are).
    #[serde(default)]
    pub state: Option<StateMeta>,
    /// The daemon settings it ran with.
    #[serde(default)]
    pub lbd: Daemon,
    /// The VIPs it ran.
    #[serde(default, rename = "vip")]
    pub vips: Vec<VipConfig>,
}

/// A digest of a config's meaning (of its parsed form, so comments and layout do not count):
/// FNV-1a, 64 bits, hex.
pub fn digest(cfg: &Config) -> String {
    let text = toml::to_string(cfg).unwrap_or_default();
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Why a state file cannot be used, with the way out.
fn unusable(path: &Path, why: &str) -> Error {
    Error::invalid(
        path.display().to_string(),
        format!(
            "the state file is {why}; lbd will not guess the desired state. Start with \
             `lbd --reset-state` to start from the config (the file is kept aside as {})",
            aside(path).display()
        ),
    )
}

/// Where `--reset-state` keeps an unusable state file.
pub fn aside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".bad");
    PathBuf::from(name)
}

impl StateFile {
    /// Reads and validates the state file at `path`: an empty, unreadable or invalid one is
    /// an error that names it and the way out.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| unusable(path, &format!("unreadable ({e})")))?;
        if text.trim().is_empty() {
            return Err(unusable(path, "empty (a crash while it was written?)"));
        }
        let state: StateFile = toml::from_str(&text)
            .map_err(|e| unusable(path, &format!("corrupt ({})", e.message())))?;
        super::validate_vips(&state.vips).map_err(|e| unusable(path, &format!("invalid ({e})")))?;
        Ok(state)
    }

    /// Writes the state file at `path` crash-safely: a temporary file (mode 0600) written and
    /// synced, renamed over `path`, then the directory synced, so a crash leaves either the
    /// old file or the new one, never a torn one.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // A file left by a crash keeps its mode when truncated: start afresh.
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
    }
}
