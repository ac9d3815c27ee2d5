//! `lb-decap`: attaches `lb_decap` to a backend host's interface so it can serve DSR VIPs (at
//! XDP on NICs, at tc on virtual interfaces, or as `--attach` says), and detaches it on
//! SIGINT/SIGTERM.
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Ebpf,
};
use clap::Parser;
use lb_common::prog_names;
use lb_userspace::{
    dataplane::attach,
    model::config::{AttachMode, Hook},
};

#[derive(Parser, Debug)]
#[command(
    name = "lb-decap",
    version,
    about = "Decapsulate DSR traffic on a backend host (hold the VIP on lo as well)",
    after_help = "Example:\n  ip addr add 192.0.2.10/32 dev lo && lb-decap --iface eth0"
)]
struct Args {
    /// Interface the balancer's encapsulated traffic arrives on (repeatable).
    #[arg(long = "iface", value_name = "IFACE", required = true)]
    ifaces: Vec<String>,
    /// Where to run: auto (tc on virtual interfaces such as veth and tap, XDP on NICs), xdp
    /// or tc.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    attach: AttachMode,
}

fn main() -> ExitCode {
    lb_userspace::daemon::init_logging();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-decap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root: it attaches an XDP program (CAP_BPF, CAP_NET_ADMIN)");
    }
    let mut obj =
        Ebpf::load(lb_userspace::dataplane::object::DECAP_OBJECT).context("loading lb_decap")?;
    for iface in &args.ifaces {
        lb_userspace::dataplane::ifindex(iface)
            .with_context(|| format!("interface {iface:?} does not exist"))?;
        let (hook, why) = attach::resolve(iface, args.attach)?;
        let name = match hook {
            Hook::Xdp => prog_names::LB_DECAP,
            Hook::Tc => prog_names::LB_DECAP_TC,
        };
        let prog = obj
            .program_mut(name)
            .ok_or_else(|| anyhow!("object has no {name}"))?;
        match hook {
            Hook::Xdp => {
                let prog: &mut Xdp = prog.try_into()?;
                if prog.fd().is_err() {
                    prog.load().context("verifier rejected lb_decap")?;
                }
                prog.attach(iface, XdpMode::Default)
                    .with_context(|| format!("attaching lb_decap to {iface}"))?;
            }
            Hook::Tc => {
                let prog: &mut SchedClassifier = prog.try_into()?;
                if prog.fd().is_err() {
                    prog.load().context("verifier rejected lb_decap_tc")?;
                }
                let tcx = TcAttachOptions::TcxOrder(LinkOrder::default());
                prog.attach_with_options(iface, TcAttachType::Ingress, tcx)
                    .with_context(|| format!("attaching lb_decap_tc to {iface}"))?;
            }
        }
        tracing::info!("lb_decap attached to {iface} at {} ({why})", hook.name());
    }
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.thread_block().context("blocking signals")?;
    let sig = signals.wait().context("waiting for a signal")?;
    tracing::info!("{sig:?}: detaching lb_decap");
    Ok(())
}
