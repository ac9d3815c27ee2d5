//! A running lab for Tier 3 tests: namespaces, backend servers and `lbd`, torn down on drop.
use std::{path::PathBuf, process::Command};

use lb_userspace::{
    lab::{TempFile, Topology},
    netns::unique_name,
};

/// Namespaces with `lb-backend` in every VM and `lbd` in the balancer.
pub struct RunningLab {
    /// The namespaces (dropping it stops lbd and the servers).
    pub topo: Topology,
    /// lbd's API socket.
    pub socket: PathBuf,
    _config: TempFile,
}

impl RunningLab {
    /// Starts a lab with `n` backend VMs serving the VIP on TCP and UDP.
    pub fn start(n: usize) -> Self {
        crate::require_root();
        let mut topo = Topology::build(n).expect("build namespaces");
        topo.start_backends(&crate::bin("lb-backend"), &crate::bin("lb-decap"))
            .expect("start backends");
        let instance = unique_name("t3");
        let socket = std::env::temp_dir().join(format!("{instance}.sock"));
        let config = TempFile::new(
            &format!("{instance}.toml"),
            &topo.config_toml(&instance, &socket),
        )
        .expect("write config");
        topo.start_lbd(&crate::bin("lbd"), config.path(), &socket)
            .expect("start lbd");
        RunningLab {
            topo,
            socket,
            _config: config,
        }
    }

    /// Runs `lbctl --socket <socket> ARGS...` and returns its stdout; panics with stderr on failure.
    pub fn lbctl(&self, args: &[&str]) -> String {
        let out = Command::new(crate::bin("lbctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run lbctl");
        assert!(
            out.status.success(),
            "lbctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
