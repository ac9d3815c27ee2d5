//! Raw forwarding: `lb_xdp` forwarding an established UDP flow as live frames
//! (BPF_PROG_TEST_RUN with `BPF_F_TEST_XDP_LIVE_FRAMES`) out of a veth whose peer receives
//! them, against `return XDP_TX` on the same veth.
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, ProgramArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
    Ebpf,
};
use lb_common::{
    bench::{BenchFrame, FRAME_LEN, FRAME_MAP, TARGET_MAP},
    prog_names, xdp_action, Reason,
};
use lb_lab::{
    netns::{unique_name, Netns},
    TempFile,
};
use lb_userspace::{
    model::config::Proto,
    sys::ethtool::{self, Offload},
};
use serde_json::{json, Value};
use tests::{
    harness::{Harness, CLIENT, VIP as HARNESS_VIP},
    median,
    packet::Frame,
};

/// Live frames per raw-rate run, and runs of each program.
const RAW_FRAMES: u32 = 2_000_000;
const RAW_RUNS: usize = 5;

/// Live-frame forwarding rate (packets/s) of `lb_xdp` on an established UDP flow and of
/// `return XDP_TX`, both sending out of a veth whose peer receives (GRO on), run interleaved.
pub fn raw_rate() -> Result<Value> {
    let harness = Harness::new();
    let ns: &Netns = harness.ns();
    ns.enter(|| -> Result<()> {
        for dev in ["t0", "t1"] {
            ethtool::set(dev, Offload::Gro, true)?;
        }
        Ok(())
    })??;
    // t0 and t1 are each other's peers: frames delivered to the stack must not be forwarded
    // back around the pair. (Forwarding itself stays on: bpf_fib_lookup needs it.)
    let rules = TempFile::new(
        &format!("{}.nft", unique_name("raw")),
        "table ip raw {\n  chain forward {\n    type filter hook forward priority 0; policy drop;\n  }\n}\n",
    )?;
    ns.exec("nft", &["-f", &rules.path().display().to_string()])?;
    harness.run(|lb| -> Result<Value> {
        lb.add_vip("raw", Proto::Udp, 9, &[(0, 9, 1), (1, 9, 1), (2, 9, 1), (3, 9, 1)]);
        let mut udp = Frame::udp(CLIENT, 40000, HARNESS_VIP, 9);
        udp.payload = vec![0x5a; FRAME_LEN - 14 - 20 - 8];
        let frame = udp.bytes();
        // The first packet makes the flow; every later one is an established forward.
        let (action, _) = lb.run(&frame);
        if action != xdp_action::REDIRECT {
            bail!("the raw-rate frame is not forwarded (action {action})");
        }
        // Live frames reuse their pages, rewritten by the last run: the bench harness restores
        // the frame, then tail-calls the program measured (its cost is in both figures).
        let mut bench = Ebpf::load(lb_lab::BENCH_OBJECT)?;
        for name in [prog_names::LB_BENCH, prog_names::LB_TX] {
            let p: &mut Xdp = bench
                .program_mut(name)
                .ok_or_else(|| anyhow!("no {name}"))?
                .try_into()?;
            p.load()?;
        }
        let mut bytes = [0u8; FRAME_LEN];
        bytes.copy_from_slice(&frame);
        let take = |b: &mut Ebpf, name: &str| b.take_map(name).ok_or_else(|| anyhow!("no {name}"));
        Array::<_, BenchFrame>::try_from(take(&mut bench, FRAME_MAP)?)?.set(
            0,
            BenchFrame {
                vary_off: 0,
                _pad: 0,
                bytes,
            },
            0,
        )?;
        let mut targets = ProgramArray::try_from(take(&mut bench, TARGET_MAP)?)?;
        let program = |name: &str| -> Result<&Xdp> {
            Ok(bench
                .program(name)
                .ok_or_else(|| anyhow!("no {name}"))?
                .try_into()?)
        };
        let harness = program(prog_names::LB_BENCH)?;
        let tx_fd = program(prog_names::LB_TX)?.fd()?.try_clone()?;
        let lb_fd = lb.ctl.dataplane().program()?.fd()?.try_clone()?;
        let ingress = lb_userspace::dataplane::ifindex("t1")?;
        let mut ours = Vec::new();
        let mut ceiling = Vec::new();
        for _ in 0..RAW_RUNS {
            targets.set(0, &lb_fd, 0)?;
            let before = lb.count(Reason::FwdNat);
            ours.push(live_rate(harness, &frame, ingress)?);
            let forwarded = lb.count(Reason::FwdNat) - before;
            if forwarded < u64::from(RAW_FRAMES) {
                bail!("lb_xdp forwarded {forwarded} of {RAW_FRAMES} live frames");
            }
            targets.set(0, &tx_fd, 0)?;
            ceiling.push(live_rate(harness, &frame, ingress)?);
        }
        let (o, c) = (median(&ours), median(&ceiling));
        println!();
        println!("raw forwarding, live frames through one veth ({RAW_FRAMES} per run, {RAW_RUNS} runs interleaved)");
        println!("{:<34} {:>14} {:>14}", "program", "median pkt/s", "vs XDP_TX");
        println!("{:<34} {:>14.0} {:>13.0}%", "return XDP_TX (ceiling)", c, 100.0);
        println!("{:<34} {:>14.0} {:>13.0}%", "lb_xdp, established UDP NAT", o, 100.0 * o / c);
        Ok(json!({"frames_per_run": RAW_FRAMES, "runs": RAW_RUNS,
                  "xdp_tx_pps": ceiling, "lb_xdp_pps": ours,
                  "median_xdp_tx_pps": c, "median_lb_xdp_pps": o, "ratio": o / c}))
    })
}

/// Packets/s of `prog` sending `frame` as live frames that arrive on interface `ingress`.
fn live_rate(prog: &Xdp, frame: &[u8], ingress: u32) -> Result<f64> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress.to_ne_bytes());
    let start = Instant::now();
    prog.test_run(TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        repeat: RAW_FRAMES,
        attrs: TestRunAttrs::new().xdp_live_frames(64),
        ..TestRunOptions::default()
    })
    .context("BPF_PROG_TEST_RUN with live frames")?;
    Ok(f64::from(RAW_FRAMES) / start.elapsed().as_secs_f64())
}
