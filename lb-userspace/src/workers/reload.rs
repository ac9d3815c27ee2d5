//! Reload: the config file read again, validated whole, and made the desired state through the
//! same path as `lbctl apply` (its moved shares reported); pools follow. An invalid config
//! changes nothing; daemon settings that only a restart can change are reported, not applied.
use std::path::PathBuf;

use super::pool::Pools;
use crate::{
    controller::{Command, Handle},
    model::{
        config::{Config, Daemon},
        state::digest,
        wire::ApplyReport,
        Error, Result,
    },
};

/// Where the config lives and what the command line replaced in it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The config file.
    pub path: PathBuf,
    /// `lbd --iface` (replaces `lbd.interfaces` when not empty).
    pub ifaces: Vec<String>,
    /// `lbd --socket`.
    pub socket: Option<PathBuf>,
}

impl Source {
    /// Reads the config file and validates it whole, with the command line's replacements;
    /// returns it with the digest of the file's own meaning.
    pub fn load(&self) -> Result<(Config, String)> {
        let mut cfg = Config::read(&self.path)?;
        let d = digest(&cfg);
        self.replace(&mut cfg.lbd);
        cfg.validate_runnable().map_err(|e| Error {
            field: format!("{}: {}", self.path.display(), e.field),
            ..e
        })?;
        Ok((cfg, d))
    }

    /// Applies the command line's replacements to daemon settings read from a file.
    pub fn replace(&self, lbd: &mut Daemon) {
        if !self.ifaces.is_empty() {
            lbd.interfaces = self.ifaces.clone();
        }
        if let Some(socket) = &self.socket {
            lbd.socket = Some(socket.clone());
        }
    }
}

/// Makes `cfg` (validated) the desired state, or only reports what that would do; restarts
/// settings are listed against `running`. Pools are reconciled after a real apply.
pub async fn apply(
    handle: &Handle,
    pools: &Pools,
    cfg: Config,
    running: Option<&Daemon>,
    digest: Option<String>,
    dry_run: bool,
) -> Result<ApplyReport> {
    let vips = cfg.vips.clone();
    let mut report = handle
        .call(|tx| Command::Apply {
            vips,
            dry_run,
            digest,
            reply: tx,
        })
        .await??;
    if let Some(running) = running {
        report.restart_needed = restart_needed(running, &cfg.lbd);
    }
    if !dry_run {
        let desired = handle.call(Command::Desired).await?;
        pools.reconcile(&desired).await?;
    }
    Ok(report)
}

/// Reads the config again and applies it (see [`apply`]).
pub async fn reload(
    source: &Source,
    running: &Daemon,
    handle: &Handle,
    pools: &Pools,
    dry_run: bool,
) -> Result<ApplyReport> {
    let (cfg, d) = source.load()?;
    let report = apply(handle, pools, cfg, Some(running), Some(d), dry_run).await?;
    tracing::info!(
        target: "audit",
        source = %source.path.display(),
        dry_run,
        applied = report.applied,
        vips = report.vips.len(),
        "reload: {}",
        summary(&report)
    );
    Ok(report)
}

/// One line about a report: each VIP's action and moved share.
pub fn summary(report: &ApplyReport) -> String {
    if report.vips.is_empty() {
        return "no change".into();
    }
    report
        .vips
        .iter()
        .map(|v| {
            format!(
                "{} {:?} (moves {:.2}%)",
                v.vip,
                v.action,
                v.moved_share * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The daemon settings that differ between `running` and `wanted`, which lbd applies only
/// when it restarts.
pub fn restart_needed(running: &Daemon, wanted: &Daemon) -> Vec<String> {
    let table = |d: &Daemon| toml::Table::try_from(d).unwrap_or_default();
    let (a, b) = (table(running), table(wanted));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("lbd.{k}"))
        .collect()
}
