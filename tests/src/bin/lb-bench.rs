//! `lb-bench` (run by `cargo xtask bench`): ns/packet of `lb_xdp` per traffic class through
//! BPF_PROG_TEST_RUN, net of the harness that restores each iteration's frame, with Katran's
//! figures on this machine kind beside ours; then Maglev build times. Tables and JSON.
use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, HashMap, Map, MapData, ProgramArray},
    programs::{ProgramFd, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use lb_common::{
    bench::{BenchFrame, FRAME_LEN, FRAME_MAP, TARGET_MAP},
    map_names, prog_names, xdp_action, ConnEntry, FlowKey, DIR_FORWARD, FAMILY_V4, MAX_CONNS,
    PROTO_TCP,
};
use lb_userspace::{
    balance::maglev::{self, Member},
    model::config::Proto,
};
use serde_json::json;
use tests::{
    harness::{Balancer, Harness, CLIENT, CLIENT6, VIP, VIP6},
    median,
    packet::{Frame, ACK, SYN},
};

/// Runs of each class; the table shows their median, min and max.
const RUNS: usize = 9;

/// One traffic class.
struct Class {
    name: &'static str,
    frame: Frame,
    /// Stamp the iteration number into the source port: every iteration is a new flow.
    new_flows: bool,
    /// The program grows the frame (encapsulation): the harness's shrink is subtracted too.
    grows: bool,
    /// Iterations per run.
    repeat: u32,
    expect: u32,
    /// Katran's ns/packet on this machine kind, measured the same way (from the issue).
    katran: (f64, f64),
}

fn padded(mut f: Frame) -> Frame {
    let ip = if f.src.is_ipv4() { 20 } else { 40 };
    let header = 14 + ip + if f.proto == 6 { 20 } else { 8 };
    f.payload = vec![0x5a; FRAME_LEN - header];
    f
}

fn classes() -> Vec<Class> {
    let tcp = |flags| padded(Frame::tcp(CLIENT, 40000, VIP, 80, flags));
    vec![
        Class {
            name: "non-VIP pass",
            frame: padded(Frame::tcp(
                CLIENT,
                40000,
                Ipv4Addr::new(10, 200, 0, 99),
                80,
                ACK,
            )),
            new_flows: false,
            grows: false,
            repeat: 200_000,
            expect: xdp_action::PASS,
            katran: (70.0, 70.0),
        },
        Class {
            name: "established TCP forward",
            frame: tcp(ACK),
            new_flows: false,
            grows: false,
            repeat: 200_000,
            expect: xdp_action::REDIRECT,
            katran: (150.0, 195.0),
        },
        Class {
            name: "established UDP forward",
            frame: padded(Frame::udp(CLIENT, 40001, VIP, 53)),
            new_flows: false,
            grows: false,
            repeat: 200_000,
            expect: xdp_action::REDIRECT,
            katran: (210.0, 230.0),
        },
        Class {
            name: "IPv6 established TCP forward",
            frame: padded(Frame::tcp(CLIENT6, 40000, VIP6, 80, ACK)),
            new_flows: false,
            grows: false,
            repeat: 200_000,
            expect: xdp_action::REDIRECT,
            katran: (150.0, 195.0),
        },
        Class {
            name: "DSR encap, established TCP",
            frame: padded(Frame::tcp(CLIENT, 40000, VIP, 8443, ACK)),
            new_flows: false,
            grows: true,
            repeat: 200_000,
            expect: xdp_action::REDIRECT,
            katran: (150.0, 195.0),
        },
        Class {
            name: "new flow (SYN), table empty",
            frame: tcp(SYN),
            new_flows: true,
            grows: false,
            repeat: 4_000,
            expect: xdp_action::REDIRECT,
            katran: (1050.0, 1050.0),
        },
        Class {
            name: "new flow (SYN), table full",
            frame: tcp(SYN),
            new_flows: true,
            grows: false,
            repeat: 20_000,
            expect: xdp_action::REDIRECT,
            katran: (1780.0, 1780.0),
        },
    ]
}

struct Bench {
    obj: Ebpf,
}

impl Bench {
    fn load() -> Result<Self> {
        let mut obj = Ebpf::load(lb_lab::BENCH_OBJECT).context("load bench object")?;
        for name in [
            prog_names::LB_BENCH,
            prog_names::LB_PASS,
            prog_names::LB_GROW,
        ] {
            let p: &mut Xdp = obj
                .program_mut(name)
                .ok_or_else(|| anyhow!("no {name}"))?
                .try_into()?;
            p.load()?;
        }
        Ok(Bench { obj })
    }

    fn prog(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .obj
            .program(name)
            .ok_or_else(|| anyhow!("no {name}"))?
            .try_into()?)
    }

    fn set(&mut self, frame: &[u8], vary: bool, target: &ProgramFd) -> Result<()> {
        let mut bytes = [0u8; FRAME_LEN];
        bytes.copy_from_slice(frame);
        let value = BenchFrame {
            vary_off: if vary { 14 + 20 } else { 0 },
            _pad: 0,
            bytes,
        };
        let mut frames: Array<_, BenchFrame> = Array::try_from(
            self.obj
                .map_mut(FRAME_MAP)
                .ok_or_else(|| anyhow!("no frame map"))?,
        )?;
        frames.set(0, value, 0)?;
        let mut targets = ProgramArray::try_from(
            self.obj
                .map_mut(TARGET_MAP)
                .ok_or_else(|| anyhow!("no target map"))?,
        )?;
        targets.set(0, target, 0)?;
        Ok(())
    }

    /// ns per iteration of `prog` on `frame`, `RUNS` times; checks the action every run.
    fn measure(&self, prog: &str, frame: &[u8], repeat: u32, expect: u32) -> Result<Vec<f64>> {
        let prog = self.prog(prog)?;
        let mut out = vec![0u8; FRAME_LEN + 256];
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let r = prog.test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })?;
            if r.return_value != expect {
                bail!("action {} instead of {expect}", r.return_value);
            }
            samples.push(duration_ns(r.duration));
        }
        Ok(samples)
    }
}

fn duration_ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// Fills this CPU's share of the connection table so every new flow evicts one.
fn fill_conn_table(lb: &Balancer) -> Result<()> {
    let data = MapData::from_pin(lb.pin_dir().join(map_names::CONNS))?;
    let mut conns: HashMap<_, FlowKey, ConnEntry> = HashMap::try_from(Map::LruHashMap(data))?;
    for i in 0..MAX_CONNS {
        let key = FlowKey {
            src: [0x0a00_0000 | i, 0, 0, 0],
            dst: [1, 0, 0, 0],
            sport: 1,
            dport: 1,
            proto: PROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let entry = ConnEntry {
            backend_id: 1,
            dir: DIR_FORWARD,
            ..ConnEntry::default()
        };
        conns.insert(key, entry, 0)?;
    }
    Ok(())
}

fn run(lb: &mut Balancer, json_path: &PathBuf) -> Result<()> {
    let mut cpu = nix::sched::CpuSet::new();
    cpu.set(0)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu)
        .context("pin to CPU 0 (the flow table fill must land on the measuring CPU)")?;
    lb.add_vip(
        "web",
        Proto::Tcp,
        80,
        &[(0, 8080, 1), (1, 8080, 1), (2, 8080, 1)],
    );
    lb.add_vip("dns", Proto::Udp, 53, &[(0, 8080, 1), (1, 8080, 1)]);
    lb.add_vip6(
        "web6",
        Proto::Tcp,
        80,
        &[(0, 8080, 1), (1, 8080, 1), (2, 8080, 1)],
    );
    lb.add_dsr_vip("dsr", false, 8443, &[0, 1, 2]);
    let mut bench = Bench::load()?;
    let target = lb.ctl.dataplane().program()?.fd()?.try_clone()?;
    let pass = bench.prog(prog_names::LB_PASS)?.fd()?.try_clone()?;
    let any = padded(Frame::tcp(CLIENT, 1, VIP, 80, ACK)).bytes();

    let floor = bench.measure(prog_names::LB_PASS, &any, 1_000_000, xdp_action::PASS)?;
    bench.set(&any, false, &pass)?;
    let harness = bench.measure(prog_names::LB_BENCH, &any, 1_000_000, xdp_action::PASS)?;
    let overhead = median(&harness) - median(&floor);
    // A program that grows the frame makes the harness shrink it back: one head adjustment,
    // which costs about as much as the one `lb_grow` makes.
    let grow = bench.prog(prog_names::LB_GROW)?.fd()?.try_clone()?;
    bench.set(&any, false, &grow)?;
    let grown = bench.measure(prog_names::LB_BENCH, &any, 1_000_000, xdp_action::PASS)?;
    let adjust = (median(&grown) - median(&harness)) / 2.0;

    println!(
        "lb_xdp ns/packet through BPF_PROG_TEST_RUN, {RUNS} runs each, CPU 0, net of the harness \
         ({overhead:.1} ns: frame restore + tail call; {adjust:.1} ns more to shrink a grown frame)\n"
    );
    println!(
        "{:<30} {:>8} {:>8} {:>8} {:>12} {:>10} {:>12}",
        "class", "median", "min", "max", "Katran", "target", "ratio"
    );
    println!(
        "{:<30} {:>8.1} {:>8.1} {:>8.1} {:>12} {:>10} {:>8}",
        "return XDP_PASS (floor)",
        median(&floor),
        min(&floor),
        max(&floor),
        "",
        "",
        ""
    );
    let mut rows = vec![
        json!({"class": "return XDP_PASS (floor)", "median_ns": median(&floor),
        "min_ns": min(&floor), "max_ns": max(&floor)}),
    ];
    for class in classes() {
        let frame = class.frame.bytes();
        if class.name.contains("full") {
            fill_conn_table(lb)?;
        } else if !class.new_flows {
            // Establish the flow first, so the measured packets hit the connection table.
            let mut first = class.frame.clone();
            first.flags = SYN;
            lb.run(&first.bytes());
        }
        bench.set(&frame, class.new_flows, &target)?;
        let raw = bench.measure(prog_names::LB_BENCH, &frame, class.repeat, class.expect)?;
        let undo = if class.grows { adjust } else { 0.0 };
        let net: Vec<f64> = raw.iter().map(|t| t - overhead - undo).collect();
        let (k_lo, k_hi) = class.katran;
        let (r_hi, r_lo) = (median(&net) / k_hi, median(&net) / k_lo);
        let (katran, ratio) = if k_lo == k_hi {
            (format!("{k_hi:.0}"), format!("{r_hi:.2}x"))
        } else {
            (
                format!("{k_lo:.0}-{k_hi:.0}"),
                format!("{r_hi:.2}-{r_lo:.2}x"),
            )
        };
        println!(
            "{:<30} {:>8.1} {:>8.1} {:>8.1} {:>12} {:>10.0} {:>12}",
            class.name,
            median(&net),
            min(&net),
            max(&net),
            katran,
            0.8 * k_hi,
            ratio
        );
        rows.push(json!({
            "class": class.name, "median_ns": median(&net), "min_ns": min(&net),
            "max_ns": max(&net), "katran_ns": [k_lo, k_hi], "target_ns": 0.8 * k_hi,
            "ratio_to_katran": [r_hi, r_lo], "iterations": class.repeat, "runs": RUNS,
        }));
    }
    println!(
        "\nratio = our median / Katran's figure (upper-lower end of its range); \
         target = 0.8 x Katran's upper figure."
    );
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let doc = json!({"harness_overhead_ns": overhead, "head_adjust_ns": adjust, "classes": rows});
    std::fs::write(json_path, serde_json::to_string_pretty(&doc)?)?;
    println!("JSON: {}", json_path.display());
    Ok(())
}

/// Maglev table build time (M = 65537) for growing backend counts: median, min, max of 9.
fn maglev_build_times() -> serde_json::Value {
    println!("\nMaglev table build, M = 65537, 9 builds each (target: < 5 ms at 1,000 backends)\n");
    println!(
        "{:>9} {:>10} {:>10} {:>10}",
        "backends", "median ms", "min ms", "max ms"
    );
    let mut rows = Vec::new();
    for n in [10u32, 100, 1000, 4096] {
        let members: Vec<Member> = (1..=n)
            .map(|i| Member {
                id: i,
                addr: std::net::SocketAddr::from((
                    [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                    8080,
                )),
                weight: 1,
            })
            .collect();
        let times: Vec<f64> = (0..RUNS)
            .map(|_| {
                let start = std::time::Instant::now();
                std::hint::black_box(maglev::build(&members, 65537));
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        println!(
            "{n:>9} {:>10.2} {:>10.2} {:>10.2}",
            median(&times),
            min(&times),
            max(&times)
        );
        rows.push(
            json!({"backends": n, "median_ms": median(&times), "min_ms": min(&times),
            "max_ms": max(&times)}),
        );
    }
    serde_json::Value::Array(rows)
}

/// Control-plane timings in a namespace lab: API round trip of a ring change (changes are
/// applied before the API answers, so this bounds "API change to data path"), and how long
/// health checks take to take a killed server out of the ring.
fn lab_timings() -> Result<serde_json::Value> {
    use lb_lab::{backend_addr, wait_until, BACKEND_PORT};
    let mut lab = tests::lab::RunningLab::start(3);
    let mut api = Vec::new();
    for i in 0..50u32 {
        let weight = 1 + i % 3;
        let body = json!({"vip": "web", "addr": backend_addr(2), "port": BACKEND_PORT,
            "weight": weight});
        let start = std::time::Instant::now();
        lb_userspace::face::client::call(&lab.socket, "POST", "/v1/backends", Some(&body))?;
        api.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let (at10, at4000) = (change_latency(&lab, 10)?, change_latency(&lab, 4000)?);
    let bulk = apply_latency(&lab, 1000)?;
    let state = |lab: &tests::lab::RunningLab| -> String {
        let list: serde_json::Value =
            serde_json::from_str(&lab.lbctl(&["backend", "list", "--vip", "web", "--json"]))
                .unwrap_or_default();
        list[0]["backends"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["addr"] == backend_addr(1).to_string()))
            .and_then(|b| b["state"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut detect = Vec::new();
    for _ in 0..10 {
        lab.topo.kill_server(1)?;
        let start = std::time::Instant::now();
        wait_until(Duration::from_secs(5), || state(&lab) == "down")?;
        detect.push(start.elapsed().as_secs_f64() * 1e3);
        lab.topo.start_server(1, &tests::bin("lb-backend"))?;
        wait_until(Duration::from_secs(5), || state(&lab) == "active")?;
    }
    let p90 = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[(s.len() * 9) / 10 - 1]
    };
    println!(
        "\nControl plane, namespace lab (web: tcp check, inter 200 ms, fastinter 100 ms, fall 2)\n"
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "measure", "median", "p90", "max"
    );
    println!(
        "{:<44} {:>7.2}ms {:>7.2}ms {:>7.2}ms",
        "API ring change, applied on return (50)",
        median(&api),
        p90(&api),
        max(&api)
    );
    for (what, v) in [
        ("backend add, VIP of 10 backends (20)", &at10),
        ("backend add, VIP of 4,000 backends (20)", &at4000),
        ("apply -f of 1,000 backends, one call (5)", &bulk),
    ] {
        println!(
            "{what:<44} {:>7.2}ms {:>7.2}ms {:>7.2}ms",
            median(v),
            p90(v),
            max(v)
        );
    }
    println!(
        "{:<44} {:>7.0}ms {:>7.0}ms {:>7.0}ms",
        "killed server out of the ring (10)",
        median(&detect),
        p90(&detect),
        max(&detect)
    );
    Ok(json!({
        "api_change_ms": {"median": median(&api), "p90": p90(&api), "max": max(&api)},
        "backend_add_ms_at_10": {"median": median(&at10), "p90": p90(&at10), "max": max(&at10)},
        "backend_add_ms_at_4000": {"median": median(&at4000), "p90": p90(&at4000), "max": max(&at4000)},
        "apply_1000_backends_ms": {"median": median(&bulk), "p90": p90(&bulk), "max": max(&bulk)},
        "health_detection_ms": {"median": median(&detect), "p90": p90(&detect), "max": max(&detect),
            "samples": detect},
    }))
}

/// A VIP `name` with `n` backends (10.220.0.0/16, port 8080), as config text.
fn vip_text(name: &str, addr: &str, n: u32) -> String {
    let mut text =
        format!("[[vip]]\nname = {name:?}\naddr = {addr:?}\nport = 80\nproto = \"tcp\"\n");
    for i in 0..n {
        text += &format!(
            "[[vip.backend]]\naddr = \"10.220.{}.{}\"\nport = 8080\n",
            i / 250,
            i % 250 + 1
        );
    }
    text
}

/// API round trips of 20 backend adds (each then removed, untimed) to a VIP of `n` backends.
fn change_latency(lab: &tests::lab::RunningLab, n: u32) -> Result<Vec<f64>> {
    use lb_userspace::face::client::call;
    let name = format!("scale{n}");
    let body = json!({"config": vip_text(&name, "10.200.0.60", n)});
    call(&lab.socket, "POST", "/v1/apply", Some(&body))?;
    let mut took = Vec::new();
    for i in 0..20u32 {
        let change = json!({"vip": name, "addr": format!("10.221.0.{}", i + 1), "port": 8080});
        let start = std::time::Instant::now();
        call(&lab.socket, "POST", "/v1/backends", Some(&change))?;
        took.push(start.elapsed().as_secs_f64() * 1e3);
        call(&lab.socket, "DELETE", "/v1/backends", Some(&change))?;
    }
    call(
        &lab.socket,
        "DELETE",
        "/v1/vips",
        Some(&json!({"name": name})),
    )?;
    Ok(took)
}

/// Round trips of `POST /v1/apply` adding a VIP of `n` backends in one call (5 rounds, each
/// then removed).
fn apply_latency(lab: &tests::lab::RunningLab, n: u32) -> Result<Vec<f64>> {
    use lb_userspace::face::client::call;
    let body = json!({"config": vip_text("bulk", "10.200.0.61", n)});
    let mut took = Vec::new();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        call(&lab.socket, "POST", "/v1/apply", Some(&body))?;
        took.push(start.elapsed().as_secs_f64() * 1e3);
        call(
            &lab.socket,
            "DELETE",
            "/v1/vips",
            Some(&json!({"name": "bulk"})),
        )?;
    }
    Ok(took)
}

/// Autoscaling timings in a pool lab, over several load steps from idle to 200 requests/s
/// (2 ms of CPU each against 0.2-core VMs at a 50% target): how long until the first
/// scale-out decision, until that VM serves, and each new VM's create-to-serving time.
fn pool_timings() -> Result<serde_json::Value> {
    use lb_lab::{Load, PoolLab, VIP, VIP_PORT};
    use tests::lab::PoolRunning;
    let (mut decide, mut serve, mut boot) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let lab = PoolRunning::start(&PoolLab {
            cooldowns_s: (1, 3600),
            ..PoolLab::default()
        });
        lab.wait_for(Duration::from_secs(10), "2 VMs serving", |p| {
            PoolRunning::active(p).len() == 2
        });
        // Let the agents' CPU windows settle after the VMs' start.
        std::thread::sleep(Duration::from_secs(2));
        let load = Load::start(&lab.topo.client, (VIP, VIP_PORT).into(), 200, 16)?;
        let start = std::time::Instant::now();
        lab.wait_for(Duration::from_secs(20), "a scale-out", |p| {
            p.decisions.contains_key("scale_out")
        });
        decide.push(start.elapsed().as_secs_f64() * 1e3);
        let p = lab.wait_for(Duration::from_secs(20), "a third VM serving", |p| {
            PoolRunning::active(p).len() >= 3
        });
        serve.push(start.elapsed().as_secs_f64() * 1e3);
        boot.extend(
            p.vms
                .iter()
                .filter_map(|v| v.serving_after_ms)
                .map(|ms| ms as f64),
        );
        drop(load);
    }
    println!(
        "\nAutoscaling, pool lab (agent check inter 300 ms, fastinter 100 ms, rise 2; load step \
         idle -> 200 req/s, 5 steps)\n"
    );
    println!("{:<44} {:>9} {:>9}", "measure", "median", "max");
    for (name, v) in [
        ("load step to scale-out decision", &decide),
        ("load step to the new VM serving", &serve),
        ("VM create to serving (every VM)", &boot),
    ] {
        println!("{name:<44} {:>7.0}ms {:>7.0}ms", median(v), max(v));
    }
    let stat = |v: &[f64]| json!({"median": median(v), "max": max(v), "samples": v});
    Ok(json!({
        "step_to_decision_ms": stat(&decide),
        "step_to_serving_ms": stat(&serve),
        "create_to_serving_ms": stat(&boot),
    }))
}

fn main() -> Result<()> {
    let json_path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/bench/dataplane.json".into()),
    );
    let harness = Harness::new();
    harness.run(|lb| run(lb, &json_path))?;
    let maglev = maglev_build_times();
    let lab = lab_timings()?;
    let pools = pool_timings()?;
    let path = json_path.with_file_name("controlplane.json");
    let doc = json!({"maglev_build": maglev, "lab": lab, "pools": pools});
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    println!("JSON: {}", path.display());
    Ok(())
}
