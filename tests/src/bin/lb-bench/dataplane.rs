//! The data path's ns/packet, at XDP (`lb_xdp`) and at tc (`lb_tc`), through
//! BPF_PROG_TEST_RUN in the real kernel. A harness program restores the original frame before
//! every iteration (the kernel re-runs a program on its own output) and tail-calls the program
//! under test. Net = raw − H, where H is the same harness tail-calling `return XDP_PASS` (or
//! `TC_ACT_OK`) in the same run: the convention of the Katran figures the targets come from.
//! Classes run in interleaved rounds on one pinned CPU; every run's action is checked.
use std::path::Path;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{Array, IterableMap, ProgramArray},
    programs::{ProgramFd, SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use lb_common::{
    bench::{BenchFrame, FRAME_LEN, FRAME_MAP, TARGET_MAP, TC_TARGET_MAP},
    map_names, prog_names, xdp_action, ConnEntry, FlowKey,
};
use lb_userspace::model::config::{Hook, Proto};
use serde_json::{json, Value};
use tests::{
    flows::{delete_all, flow_key, insert_all, pin_to, possible_cpus},
    harness::{tc_verdict, Balancer, Harness, CLIENT, CLIENT6, VIP, VIP6},
    median,
    packet::{Frame, ACK, SYN},
};

use crate::{max, min, RUNS};

/// Iterations of one run of an established or non-VIP class.
const FAST_REPEAT: u32 = 200_000;
/// Iterations (new flows) of one run of a new-flow class.
const NEW_REPEAT: u32 = 20_000;
/// Flows the data path records before the table is emptied by deletes.
const EMPTIED_FILL: u32 = 100_000;
/// Offset of the IPv4 source address in a frame: new-flow classes stamp the iteration there.
const SOURCE_OFF: u32 = 14 + 12;

/// Katran's net ns per class as a multiple of H, in the side-by-side run our targets come from
/// (2026-12-02, H = 69 ns): non-VIP 1.14, established TCP 2.70, established UDP 3.62, new
/// flow on a fresh table 18.2. Targets: 0.8 of those (1.0 for NAT new flows, which record a
/// reply entry Katran does not); after mass deletes, 1.2 × the same run's fresh-table figure.
const KATRAN_X_H: [(&str, f64); 4] = [
    ("non-VIP pass", 1.14),
    ("established TCP", 2.70),
    ("established UDP", 3.62),
    ("new flow, fresh table", 18.2),
];

/// The harness object: `lb_bench` / `lb_bench_tc` and what they tail-call for the floor.
struct Rig {
    obj: Ebpf,
}

/// Which program a run starts at.
#[derive(Clone, Copy)]
enum Entry {
    /// The harness (restore, stamp, tail call to the target).
    Harness,
    /// `return XDP_PASS` / `TC_ACT_OK` alone: the test-run floor.
    Pass,
}

impl Rig {
    fn load() -> Result<Self> {
        let mut obj = Ebpf::load(lb_lab::BENCH_OBJECT).context("loading the bench object")?;
        for name in [prog_names::LB_BENCH, prog_names::LB_PASS] {
            let p: &mut Xdp = obj.program_mut(name).context(name)?.try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        for name in [prog_names::LB_BENCH_TC, prog_names::LB_PASS_TC] {
            let p: &mut SchedClassifier = obj.program_mut(name).context(name)?.try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        Ok(Rig { obj })
    }

    /// The `return XDP_PASS` / `TC_ACT_OK` program of `hook`.
    fn pass(&self, hook: Hook) -> Result<ProgramFd> {
        let name = match hook {
            Hook::Xdp => prog_names::LB_PASS,
            Hook::Tc => prog_names::LB_PASS_TC,
        };
        Ok(self.obj.program(name).context(name)?.fd()?.try_clone()?)
    }

    /// Makes the harness of `hook` start each iteration from `frame` (stamping a new source
    /// address if `vary`) and tail-call `target`.
    fn aim(&mut self, hook: Hook, frame: &[u8], vary: bool, target: &ProgramFd) -> Result<()> {
        let mut bytes = [0u8; FRAME_LEN];
        bytes.copy_from_slice(frame);
        let value = BenchFrame {
            vary_off: if vary { SOURCE_OFF } else { 0 },
            _pad: 0,
            bytes,
        };
        let mut frames: Array<_, BenchFrame> =
            Array::try_from(self.obj.map_mut(FRAME_MAP).context("frame map")?)?;
        frames.set(0, value, 0)?;
        let map = match hook {
            Hook::Xdp => TARGET_MAP,
            Hook::Tc => TC_TARGET_MAP,
        };
        let mut targets = ProgramArray::try_from(self.obj.map_mut(map).context("target map")?)?;
        targets.set(0, target, 0)?;
        Ok(())
    }

    /// ns per iteration (the kernel's mean) of one run of `repeat` iterations from `entry`;
    /// fails unless the
    /// program answered `expect` (an XDP action; its tc twin at tc).
    fn run(&self, hook: Hook, entry: Entry, frame: &[u8], repeat: u32, expect: u32) -> Result<f64> {
        let name = match (hook, entry) {
            (Hook::Xdp, Entry::Harness) => prog_names::LB_BENCH,
            (Hook::Xdp, Entry::Pass) => prog_names::LB_PASS,
            (Hook::Tc, Entry::Harness) => prog_names::LB_BENCH_TC,
            (Hook::Tc, Entry::Pass) => prog_names::LB_PASS_TC,
        };
        let mut out = vec![0u8; FRAME_LEN + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        };
        let prog = self.obj.program(name).context(name)?;
        let r = match hook {
            Hook::Xdp => <&Xdp>::try_from(prog)?.test_run(opts)?,
            Hook::Tc => <&SchedClassifier>::try_from(prog)?.test_run(opts)?,
        };
        let want = match hook {
            Hook::Xdp => expect,
            Hook::Tc => tc_verdict(expect),
        };
        if r.return_value != want {
            bail!("{name}: return code {} instead of {want}", r.return_value);
        }
        Ok(r.duration.as_nanos() as f64)
    }
}

/// The balancer program of `hook`, to aim the harness at.
fn target(lb: &mut Balancer, hook: Hook) -> Result<ProgramFd> {
    let dp = lb.ctl.dataplane();
    let fd = match hook {
        Hook::Xdp => dp.program()?.fd()?.try_clone()?,
        Hook::Tc => dp.tc_program()?.fd()?.try_clone()?,
    };
    Ok(fd)
}

/// A 128-byte frame.
fn padded(mut f: Frame) -> Vec<u8> {
    let ip = if f.src.is_ipv4() { 20 } else { 40 };
    let header = 14 + ip + if f.proto == 6 { 20 } else { 8 };
    f.payload = vec![0x5a; FRAME_LEN - header];
    f.bytes()
}

/// Ports of the bench's VIPs on `VIP` (and `VIP6`, NAT TCP on 80).
fn port(mode: &str, proto: Proto) -> u16 {
    match (mode, proto) {
        ("nat", Proto::Tcp) => 80,
        ("nat", Proto::Udp) => 53,
        ("dsr", Proto::Tcp) => 8443,
        _ => 5353,
    }
}

/// The bench's VIPs, three backends each.
fn add_vips(lb: &mut Balancer) {
    let three = [(0, 8080, 1), (1, 8080, 1), (2, 8080, 1)];
    lb.add_vip("web", Proto::Tcp, 80, &three);
    lb.add_vip("dns", Proto::Udp, 53, &three);
    lb.add_vip6("web6", Proto::Tcp, 80, &three);
    lb.add_dsr_vip("dsr", false, 8443, &[0, 1, 2]);
    lb.add_dsr_udp_vip("dsr-udp", 5353, &[0, 1, 2]);
}

/// One row of the table: its raw and net samples.
struct Row {
    class: String,
    mode: &'static str,
    raw: Vec<f64>,
    net: Vec<f64>,
    /// Target as a multiple of H, if the issue sets one.
    target_x_h: Option<f64>,
}

/// Everything measured at one hook.
struct HookRun {
    hook: Hook,
    /// The test-run floor: `return XDP_PASS` alone.
    pass: Vec<f64>,
    /// H: the harness tail-calling `return XDP_PASS`.
    h: Vec<f64>,
    rows: Vec<Row>,
}

/// Measures every class at `hook` on `cpu`.
fn measure_hook(hook: Hook, cpu: usize) -> Result<HookRun> {
    let mut run = HookRun {
        hook,
        pass: Vec::new(),
        h: Vec::new(),
        rows: Vec::new(),
    };
    let h_vary = steady_classes(hook, cpu, &mut run)?;
    for mode in ["dsr", "nat"] {
        new_flow_classes(hook, cpu, mode, &h_vary, &mut run)?;
    }
    Ok(run)
}

/// The floors, non-VIP pass and the established classes (one balancer, interleaved rounds);
/// returns H with the source stamped (the new-flow classes' floor).
fn steady_classes(hook: Hook, cpu: usize, run: &mut HookRun) -> Result<Vec<f64>> {
    let tcp = |mode| Frame::tcp(CLIENT, 40000, VIP, port(mode, Proto::Tcp), ACK);
    let udp = |mode| Frame::udp(CLIENT, 40001, VIP, port(mode, Proto::Udp));
    let not_ours = Frame::tcp(
        CLIENT,
        40000,
        std::net::Ipv4Addr::new(10, 200, 0, 99),
        80,
        ACK,
    );
    let classes: Vec<(&str, &'static str, Frame, u32)> = vec![
        ("non-VIP pass", "-", not_ours, xdp_action::PASS),
        ("established TCP", "nat", tcp("nat"), xdp_action::REDIRECT),
        ("established TCP", "dsr", tcp("dsr"), xdp_action::REDIRECT),
        ("established UDP", "nat", udp("nat"), xdp_action::REDIRECT),
        ("established UDP", "dsr", udp("dsr"), xdp_action::REDIRECT),
        (
            "IPv6 established TCP",
            "nat",
            Frame::tcp(CLIENT6, 40000, VIP6, 80, ACK),
            xdp_action::REDIRECT,
        ),
    ];
    Harness::new().run(|lb| -> Result<Vec<f64>> {
        pin_to(cpu)?;
        add_vips(lb);
        let mut rig = Rig::load()?;
        let target = target(lb, hook)?;
        let pass = rig.pass(hook)?;
        let any = padded(Frame::tcp(CLIENT, 1, VIP, 80, ACK));
        // Open each flow first, so the measured packets hit the connection table.
        for (_, _, frame, _) in &classes[1..] {
            let mut first = frame.clone();
            if first.proto == 6 {
                first.flags = SYN;
            }
            lb.run(&padded(first));
        }
        let classes: Vec<_> = classes
            .into_iter()
            .map(|(c, m, f, e)| (c, m, padded(f), e))
            .collect();
        let mut raw = vec![Vec::new(); classes.len()];
        let mut h_vary = Vec::new();
        for _ in 0..RUNS {
            run.pass
                .push(rig.run(hook, Entry::Pass, &any, 1_000_000, xdp_action::PASS)?);
            rig.aim(hook, &any, false, &pass)?;
            run.h
                .push(rig.run(hook, Entry::Harness, &any, 1_000_000, xdp_action::PASS)?);
            rig.aim(hook, &any, true, &pass)?;
            h_vary.push(rig.run(hook, Entry::Harness, &any, 1_000_000, xdp_action::PASS)?);
            for (i, (_, _, frame, expect)) in classes.iter().enumerate() {
                rig.aim(hook, frame, false, &target)?;
                raw[i].push(rig.run(hook, Entry::Harness, frame, FAST_REPEAT, *expect)?);
            }
        }
        let h = median(&run.h);
        for ((class, mode, _, _), raw) in classes.iter().zip(raw) {
            run.rows.push(Row {
                class: class.to_string(),
                mode,
                net: raw.iter().map(|r| r - h).collect(),
                raw,
                target_x_h: target_for(class, mode),
            });
        }
        Ok(h_vary)
    })
}

/// The target of `class` in `mode` as a multiple of H, where the issue sets one.
fn target_for(class: &str, mode: &str) -> Option<f64> {
    let (_, katran) = KATRAN_X_H.iter().find(|(c, _)| *c == class)?;
    let factor = if class.starts_with("new flow") && mode == "nat" {
        1.0
    } else {
        0.8
    };
    Some(katran * factor)
}

/// New flows of `mode` (TCP SYNs from a new source each iteration): on a fresh table (a new
/// balancer per run), on a table just emptied by deletes, and on full tables of this CPU's
/// share of 262,144, 1,048,576 and 4,194,304 entries (every insert evicts).
fn new_flow_classes(
    hook: Hook,
    cpu: usize,
    mode: &'static str,
    h_vary: &[f64],
    run: &mut HookRun,
) -> Result<()> {
    let h = median(h_vary);
    let syn = padded(Frame::tcp(CLIENT, 40000, VIP, port(mode, Proto::Tcp), SYN));
    let one_run = |lb: &mut Balancer, rig: &mut Rig| -> Result<f64> {
        let target = target(lb, hook)?;
        rig.aim(hook, &syn, true, &target)?;
        rig.run(hook, Entry::Harness, &syn, NEW_REPEAT, xdp_action::REDIRECT)
    };
    let mut fresh = Vec::new();
    for _ in 0..RUNS {
        fresh.push(Harness::new().run(|lb| -> Result<f64> {
            pin_to(cpu)?;
            add_vips(lb);
            one_run(lb, &mut Rig::load()?)
        })?);
    }
    let emptied = Harness::new().run(|lb| -> Result<Vec<f64>> {
        pin_to(cpu)?;
        add_vips(lb);
        let mut rig = Rig::load()?;
        let target = target(lb, hook)?;
        let table = lb.flow_table(map_names::CONNS);
        let fd = raw_fd(&table);
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            rig.aim(hook, &syn, true, &target)?;
            rig.run(
                hook,
                Entry::Harness,
                &syn,
                EMPTIED_FILL,
                xdp_action::REDIRECT,
            )?;
            let keys: Vec<FlowKey> = table.keys().collect::<Result<_, _>>()?;
            delete_all(fd, &keys);
            samples.push(one_run(lb, &mut rig)?);
        }
        Ok(samples)
    })?;
    let fresh_net = median(&fresh) - h;
    push(
        run,
        "new flow, fresh table",
        mode,
        fresh,
        h,
        target_for("new flow, fresh table", mode),
    );
    run.rows.push(Row {
        class: "new flow, table emptied by deletes".into(),
        mode,
        net: emptied.iter().map(|r| r - h).collect(),
        raw: emptied,
        // 1.2 x the fresh-table figure, as a multiple of H.
        target_x_h: Some(1.2 * fresh_net / median(&run.h)),
    });
    for flows in [131_072u32, 524_288, 2_097_152] {
        let full = Harness::with_max_flows(flows).run(|lb| -> Result<Vec<f64>> {
            pin_to(cpu)?;
            add_vips(lb);
            fill_share(lb, cpu, mode)?;
            let mut rig = Rig::load()?;
            (0..RUNS).map(|_| one_run(lb, &mut rig)).collect()
        })?;
        let class = format!("new flow, full table of {}", 2 * flows);
        push(run, &class, mode, full, h, None);
    }
    Ok(())
}

/// Adds a row of raw samples net of `h`.
fn push(
    run: &mut HookRun,
    class: &str,
    mode: &'static str,
    raw: Vec<f64>,
    h: f64,
    target: Option<f64>,
) {
    run.rows.push(Row {
        class: class.into(),
        mode,
        net: raw.iter().map(|r| r - h).collect(),
        raw,
        target_x_h: target,
    });
}

/// Fills `cpu`'s share of the balancer's connection table with flows of `mode`'s VIP (entries
/// copied from a real flow's), from that CPU (the LRU lists are per CPU), so every new flow
/// there evicts one.
fn fill_share(lb: &mut Balancer, cpu: usize, mode: &str) -> Result<()> {
    pin_to(cpu)?;
    let vport = port(mode, Proto::Tcp);
    let syn = Frame::tcp(CLIENT, 40000, VIP, vport, SYN);
    lb.run(&syn.bytes());
    let table = lb.flow_table(map_names::CONNS);
    let key = FlowKey {
        dport: vport.to_be(),
        ..tests::harness::tcp_key(40000)
    };
    let entry = table.get(&key, 0).context("the real flow's entry")?;
    let share = IterableMap::map(&table).info()?.max_entries() / possible_cpus() as u32;
    let keys: Vec<FlowKey> = (0..share)
        .map(|i| FlowKey {
            dport: vport.to_be(),
            ..flow_key(i, VIP)
        })
        .collect();
    insert_all(raw_fd(&table), &keys, &entry);
    Ok(())
}

/// The descriptor of a flow table, for batch syscalls.
fn raw_fd(table: &aya::maps::HashMap<aya::maps::MapData, FlowKey, ConnEntry>) -> i32 {
    use std::os::fd::{AsFd, AsRawFd};
    IterableMap::map(table).fd().as_fd().as_raw_fd()
}

/// Runs the data-path benchmark at both hooks on the last CPU; prints the tables, writes the
/// JSON to `json_path`.
pub fn run(json_path: &Path) -> Result<()> {
    let cpu = possible_cpus() - 1;
    let mut doc = Vec::new();
    for hook in [Hook::Xdp, Hook::Tc] {
        let r = measure_hook(hook, cpu)?;
        print_hook(&r, cpu);
        doc.push(hook_json(&r));
    }
    println!(
        "\nnet = raw − H (the harness tail-calling return XDP_PASS / TC_ACT_OK, same run); \
         targets are multiples of H: 0.8 × Katran's multiples of its run (non-VIP 1.14, \
         established TCP 2.70, UDP 3.62, new flow 18.2; 1.0 × for NAT new flows), and \
         1.2 × this run's fresh-table figure after mass deletes."
    );
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        json_path,
        serde_json::to_string_pretty(&json!({ "hooks": doc }))?,
    )?;
    println!("JSON: {}", json_path.display());
    Ok(())
}

fn print_hook(r: &HookRun, cpu: usize) {
    let h = median(&r.h);
    println!(
        "\n{} ns/packet, BPF_PROG_TEST_RUN on CPU {cpu}, {RUNS} runs each, interleaved\n\
         floors: return {} alone {:.1} ns; H = harness tail-calling it {:.1} ns ({:.1}-{:.1})\n",
        if r.hook == Hook::Xdp {
            "lb_xdp (XDP)"
        } else {
            "lb_tc (tc)"
        },
        if r.hook == Hook::Xdp {
            "XDP_PASS"
        } else {
            "TC_ACT_OK"
        },
        median(&r.pass),
        h,
        min(&r.h),
        max(&r.h),
    );
    println!(
        "{:<36} {:>4} {:>8} {:>8} {:>15} {:>7} {:>9} {:>5}",
        "class", "mode", "raw", "net", "net min-max", "x H", "target xH", "met"
    );
    for row in &r.rows {
        let net = median(&row.net);
        let (target, met) = match row.target_x_h {
            Some(t) => (format!("{t:.2}"), if net / h <= t { "yes" } else { "NO" }),
            None => (String::new(), ""),
        };
        println!(
            "{:<36} {:>4} {:>8.1} {:>8.1} {:>15} {:>7.2} {:>9} {:>5}",
            row.class,
            row.mode,
            median(&row.raw),
            net,
            format!("{:.1}-{:.1}", min(&row.net), max(&row.net)),
            net / h,
            target,
            met
        );
    }
}

fn hook_json(r: &HookRun) -> Value {
    let h = median(&r.h);
    let rows: Vec<Value> = r
        .rows
        .iter()
        .map(|row| {
            json!({
                "class": row.class, "mode": row.mode, "raw_ns": row.raw, "net_ns": row.net,
                "net_median_ns": median(&row.net), "x_h": median(&row.net) / h,
                "target_x_h": row.target_x_h,
                "met": row.target_x_h.map(|t| median(&row.net) / h <= t),
            })
        })
        .collect();
    json!({
        "hook": r.hook.name(), "pass_ns": r.pass, "h_ns": r.h, "h_median_ns": h,
        "classes": rows,
    })
}
