//! Control-plane timings: the Maglev build, API changes and health detection in a namespace
//! lab, and autoscaling in a pool lab.
use std::time::Duration;

use anyhow::Result;
use lb_userspace::balance::maglev::{self, Member};
use serde_json::json;
use tests::median;

use crate::{max, min, RUNS};

/// Maglev table build time (M = 65537) for growing backend counts: median, min, max of 9.
pub fn maglev_build_times() -> serde_json::Value {
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

/// At 1,000 backends, for each table kind and size: build time (median of 3), the share a
/// removal moves (as a multiple of the minimum, 1/N) and balance (max and min share over
/// the mean).
pub fn table_tradeoffs() -> serde_json::Value {
    use lb_userspace::{balance, model::config::TableKind};
    println!("\nTables at 1,000 backends: disruption of removing one, and balance\n");
    println!(
        "{:<11} {:>9} {:>9} {:>12} {:>9} {:>9} {:>11}",
        "table", "slots", "build ms", "moved x 1/N", "max/mean", "min/mean", "memory MiB"
    );
    let members: Vec<Member> = (1..=1000u32)
        .map(|i| Member {
            id: i,
            addr: std::net::SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 8080)),
            weight: 100,
        })
        .collect();
    let mut rows = Vec::new();
    for (kind, size) in [
        (TableKind::Maglev, 65_537u32),
        (TableKind::Maglev, 1_048_573),
        (TableKind::Maglev, 4_194_301),
        (TableKind::Consistent, 1_048_573),
        (TableKind::Consistent, 4_194_301),
    ] {
        let mut times = Vec::new();
        let mut table = Vec::new();
        for _ in 0..3 {
            let start = std::time::Instant::now();
            table = balance::table(kind, &members, size);
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let moved = [0usize, 499, 999]
            .iter()
            .map(|&k| {
                let mut rest = members.clone();
                rest.remove(k);
                maglev::moved_share(&table, &balance::table(kind, &rest, size)) * 1000.0
            })
            .fold(0.0, f64::max);
        let mut count = std::collections::HashMap::new();
        for id in &table {
            *count.entry(*id).or_insert(0u64) += 1;
        }
        let mean = f64::from(size) / 1000.0;
        let hi = count.values().copied().max().unwrap_or(0) as f64 / mean;
        let lo = count.values().copied().min().unwrap_or(0) as f64 / mean;
        // Two buffers of 4-byte slots.
        let mib = 8.0 * f64::from(size) / f64::from(1 << 20);
        let name = format!("{kind:?}").to_lowercase();
        println!(
            "{name:<11} {size:>9} {:>9.1} {moved:>12.2} {hi:>9.3} {lo:>9.3} {mib:>11.1}",
            median(&times)
        );
        rows.push(
            json!({"table": name, "slots": size, "build_ms": median(&times),
            "moved_x_min": moved, "max_over_mean": hi, "min_over_mean": lo, "memory_mib": mib}),
        );
    }
    serde_json::Value::Array(rows)
}

/// Control-plane timings in a namespace lab: API round trip of a ring change (changes are
/// applied before the API answers, so this bounds "API change to data path"), and how long
/// health checks take to take a killed server out of the ring.
pub fn lab_timings() -> Result<serde_json::Value> {
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
pub fn pool_timings() -> Result<serde_json::Value> {
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

/// Create-to-serving time per VM provider (create, boot, health checks passed, joined the
/// ring), 3 pools of 2 VMs each: `netns` (a namespace and our server), `docker` (a container
/// through podman's Docker API) and `libvirt` (a QEMU guest under software emulation, TCG:
/// this machine's KVM cannot boot stock guests, so the figure says nothing about KVM).
pub fn provider_boot_times() -> Result<serde_json::Value> {
    use lb_lab::{
        engines::{purge_domains, Libvirt, Podman},
        PoolEngine, PoolLab,
    };
    use tests::lab::PoolRunning;
    fn guest(name: &str) -> Result<std::path::PathBuf> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/guest")
            .join(name);
        anyhow::ensure!(path.exists(), "{} is missing", path.display());
        Ok(path)
    }
    /// An engine's guard, held while its pools run (one engine at a time in a process).
    enum Guard {
        None,
        Libvirt(#[allow(dead_code, reason = "held, not read")] Libvirt),
        Podman(Podman),
    }
    let start = |name: &str| -> Result<(Guard, PoolEngine)> {
        Ok(match name {
            "docker" => {
                let podman = Podman::start()?;
                let engine = PoolEngine::Docker {
                    socket: podman.socket.clone(),
                    image: "xlb-backend:release".into(),
                };
                (Guard::Podman(podman), engine)
            }
            "libvirt (TCG, not KVM)" => {
                let engine = PoolEngine::Libvirt {
                    kernel: guest("vmlinuz")?,
                    initrd: guest("initramfs-release.cpio")?,
                };
                (Guard::Libvirt(Libvirt::start()?), engine)
            }
            _ => (Guard::None, PoolEngine::Netns),
        })
    };
    println!("\nVM create to serving, per provider (3 pools of 2 VMs started at once)\n");
    println!(
        "{:<24} {:>9} {:>9} {:>8}",
        "provider", "median", "max", "samples"
    );
    let mut out = serde_json::Map::new();
    for name in ["netns", "docker", "libvirt (TCG, not KVM)"] {
        let (guard, engine) = start(name)?;
        let mut boot = Vec::new();
        for _ in 0..3 {
            let lab = PoolRunning::start(&PoolLab::fixed(engine.clone()));
            let instance = lab.instance.clone();
            let p = lab.wait_for(Duration::from_secs(120), "2 VMs serving", |p| {
                p.vms
                    .iter()
                    .filter(|v| v.serving_after_ms.is_some())
                    .count()
                    == 2
            });
            boot.extend(
                p.vms
                    .iter()
                    .filter_map(|v| v.serving_after_ms)
                    .map(|ms| ms as f64),
            );
            drop(lab);
            match &guard {
                Guard::None => {}
                Guard::Libvirt(_) => purge_domains(&instance),
                Guard::Podman(podman) => podman.purge(&instance),
            }
        }
        drop(guard);
        println!(
            "{name:<24} {:>7.0}ms {:>7.0}ms {:>8}",
            median(&boot),
            max(&boot),
            boot.len()
        );
        out.insert(
            name.into(),
            json!({"median_ms": median(&boot), "max_ms": max(&boot), "samples": boot}),
        );
    }
    Ok(serde_json::Value::Object(out))
}
