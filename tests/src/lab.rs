//! A running lab for Tier 3 tests: namespaces, backend servers and `lbd`, torn down on drop.
use std::{path::PathBuf, process::Command};

use lb_userspace::{
    lab::{start_lbd_in, state_file, TempFile, Topology},
    netns::unique_name,
    netns::Netns,
};

/// Namespaces with `lb-backend` in every VM and `lbd` in the balancer.
pub struct RunningLab {
    /// The namespaces (dropping it stops lbd and the servers).
    pub topo: Topology,
    /// lbd's API socket.
    pub socket: PathBuf,
    /// lbd's pid.
    pub lbd: u32,
    /// lbd's instance name (its pins are under /sys/fs/bpf/<instance>).
    pub instance: String,
    /// lbd's config file.
    pub config: TempFile,
    _state: TempFile,
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
        let state = TempFile::adopt(state_file(&socket));
        let lbd = topo
            .start_lbd(&crate::bin("lbd"), config.path(), &socket)
            .expect("start lbd");
        RunningLab {
            topo,
            socket,
            lbd,
            instance,
            config,
            _state: state,
        }
    }

    /// Kills lbd with SIGKILL (no cleanup at all) and starts a new one with the same config.
    /// Borrows only the balancer side, so a client thread can keep using `topo.client`.
    pub fn kill_and_restart_lbd(
        lb: &mut Netns,
        lbd: &mut u32,
        config: &TempFile,
        socket: &std::path::Path,
    ) {
        lb.signal_child(*lbd, nix::sys::signal::Signal::SIGKILL)
            .expect("kill lbd");
        *lbd = start_lbd_in(lb, &crate::bin("lbd"), config.path(), socket).expect("restart lbd");
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
