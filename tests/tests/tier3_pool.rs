//! Tier 3: backend VM pools with real traffic: lbd creates `netns` VMs, scales them out under
//! load and back in by draining, replaces a dead one, adopts its VMs across a restart, and
//! weights them by telemetry (resource, least-conn, slow-start). Tests in this file run one at
//! a time: they measure CPU load, which a neighbour would disturb.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{atomic::Ordering, Mutex},
    time::Duration,
};

use lb_lab::{http_get, http_keepalive, http_session, Load, PoolLab, VIP, VIP_PORT};
use lb_userspace::model::wire::PoolView;
use tests::lab::{PoolRunning, RunningLab};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, VIP_PORT))
}

/// New flows per VM name, as the data path counted them.
fn new_flows(p: &PoolView) -> BTreeMap<String, u64> {
    p.vms
        .iter()
        .map(|v| (v.name.clone(), v.new_flows))
        .collect()
}

/// New flows per VM between two views.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

/// Starts a pool lab and waits until its two first VMs serve; returns it and that view.
fn two_serving(cfg: PoolLab) -> (PoolRunning, PoolView) {
    let lab = PoolRunning::start(&cfg);
    let p = lab.wait_for(Duration::from_secs(10), "2 VMs serving", |p| {
        PoolRunning::active(p).len() == 2
    });
    (lab, p)
}

/// A pool of exactly 2 VMs that never scales (extra VMs come from `lbctl vm create`).
fn fixed(policy: &'static str, slow_start_s: u64) -> PoolLab {
    PoolLab {
        min: 2,
        max: 2,
        policy,
        slow_start_s,
        cooldowns_s: (3600, 3600),
        ..PoolLab::default()
    }
}

#[test]
fn a_pool_scales_out_under_load_and_back_in_with_no_failed_request() {
    let _one = serial();
    let (lab, _) = two_serving(PoolLab {
        cooldowns_s: (2, 2),
        ..PoolLab::default()
    });
    // 2 ms of CPU per request against 0.2-core VMs at a 50% target: about 50 requests/s per
    // VM, so 200/s needs 4.
    let load = Load::start(&lab.topo.client, vip(), 200, 16).expect("load");
    let out = lab.wait_for(Duration::from_secs(40), "scale out to 4", |p| {
        PoolRunning::active(p).len() >= 4
    });
    assert!(
        out.events.iter().any(|e| e.what.contains("> target")),
        "scale-out reasons logged: {:?}",
        out.events
    );
    lab.scale_in_to_two(load);
    assert_eq!(lab.namespaces().len(), 2, "deleted VMs leave no namespace");
    let page = tests::lab::metrics_page(&lab.topo.lb);
    let counted = |kind: &str| {
        page.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "lb_pool_decisions_total{{vip=\"web\",kind=\"{kind}\"}} "
                ))
            })
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        counted("scale_out") >= 2,
        "scale-outs in the metrics: {page}"
    );
    assert!(counted("scale_in") >= 2, "scale-ins in the metrics: {page}");
    assert!(
        page.contains("lb_pool_vms{vip=\"web\",state=\"active\"} 2"),
        "{page}"
    );
}

#[test]
fn a_killed_vm_server_is_replaced_and_other_vms_keep_their_connections() {
    let _one = serial();
    let (lab, p) = two_serving(PoolLab::default());
    // A keep-alive connection to one VM; then the other VM's server dies.
    let (mut conn, kept) = lab
        .topo
        .as_client(|| {
            let (name, s) = http_session(vip()).expect("keep-alive connection");
            (s, name)
        })
        .expect("client");
    let victim = p.vms.iter().find(|v| v.name != kept).expect("other VM");
    let cgroup =
        lb_userspace::sys::cgroup::Cgroup::of(&format!("xlb-{}-{}", lab.instance, victim.name));
    for pid in cgroup.pids() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the VM's server");
    }
    let after = lab.wait_for(Duration::from_secs(15), "a replacement serving", |p| {
        p.events.iter().any(|e| e.what.contains("replacing")) && PoolRunning::active(p).len() == 2
    });
    assert_eq!(after.vms.len(), 2, "min size kept");
    assert_eq!(
        http_keepalive(&mut conn).expect("an answer"),
        kept,
        "the other VM's connection is unbroken"
    );
    assert_eq!(lab.namespaces().len(), 2, "the dead VM's namespace is gone");
}

#[test]
fn lbd_restart_adopts_its_vms_without_leaking_or_duplicating() {
    let _one = serial();
    // A fixed size: the restart, not the autoscaler, is under test.
    let (mut lab, before) = two_serving(fixed("resource", 5));
    let names = PoolRunning::active(&before);
    let namespaces = lab.namespaces();
    let load = Load::start(&lab.topo.client, vip(), 40, 4).expect("load");
    std::thread::sleep(Duration::from_secs(1));
    RunningLab::kill_and_restart_lbd(&mut lab.topo.lb, &mut lab.lbd, &lab.config, &lab.socket);
    let after = lab.wait_for(Duration::from_secs(10), "adopted VMs serving", |p| {
        p.events.iter().any(|e| e.what.contains("adopted 2 VMs"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let failed = load.tally.failed.load(Ordering::Relaxed);
    let ok = load.tally.ok.load(Ordering::Relaxed);
    drop(load);
    let mut after_names: Vec<String> = after.vms.iter().map(|v| v.name.clone()).collect();
    after_names.sort();
    assert_eq!(after_names, names, "the same VMs");
    assert_eq!(lab.namespaces(), namespaces, "none leaked, none duplicated");
    assert_eq!(
        failed, 0,
        "requests failed across the restart ({ok} answered)"
    );
}

#[test]
fn resource_weights_give_a_vm_with_half_the_cpu_fewer_new_flows() {
    let _one = serial();
    let (lab, _) = two_serving(fixed("resource", 0));
    let out = lab.lbctl(&["vm", "create", "--pool", "web", "--cpu-limit", "0.1"]);
    let small = out.split_whitespace().nth(1).expect("VM name").to_string();
    lab.wait_for(Duration::from_secs(10), "3 VMs serving", |p| {
        PoolRunning::active(p).len() == 3
    });
    let load = Load::start(&lab.topo.client, vip(), 60, 8).expect("load");
    std::thread::sleep(Duration::from_secs(6));
    let start = new_flows(&lab.pool());
    std::thread::sleep(Duration::from_secs(8));
    let end = lab.pool();
    drop(load);
    let got = delta(&start, &new_flows(&end));
    let others: Vec<u64> = got
        .iter()
        .filter(|(k, _)| **k != small)
        .map(|(_, v)| *v)
        .collect();
    let mean = others.iter().sum::<u64>() as f64 / others.len() as f64;
    assert!(mean > 100.0, "traffic flowed: {got:?}");
    assert!(
        (got[&small] as f64) < 0.75 * mean,
        "the half-CPU VM {small} took {} new flows, the others {mean:.0} on average: {got:?}",
        got[&small]
    );
}

#[test]
fn least_conn_weights_give_a_vm_with_many_open_connections_fewer_new_flows() {
    let _one = serial();
    let (lab, _) = two_serving(fixed("least-conn", 0));
    // Keep 20 open connections on one VM (those that landed elsewhere are closed).
    let (held, busy) = lab
        .topo
        .as_client(|| {
            let mut held = Vec::new();
            let mut busy = None;
            for _ in 0..200 {
                let (name, s) = http_session(vip()).expect("keep-alive connection");
                if busy.get_or_insert_with(|| name.clone()) == &name {
                    held.push(s);
                }
                if held.len() == 20 {
                    break;
                }
            }
            (held, busy.expect("a VM answered"))
        })
        .expect("client");
    assert_eq!(held.len(), 20, "20 connections held on {busy}");
    std::thread::sleep(Duration::from_secs(4));
    let start = new_flows(&lab.pool());
    let tally = lab
        .topo
        .as_client(|| {
            let mut t: BTreeMap<String, u64> = BTreeMap::new();
            for _ in 0..200 {
                *t.entry(http_get(vip(), "/").expect("request")).or_default() += 1;
            }
            t
        })
        .expect("client");
    let got = delta(&start, &new_flows(&lab.pool()));
    drop(held);
    let idle = tally
        .keys()
        .find(|k| **k != busy)
        .cloned()
        .unwrap_or_default();
    assert!(
        tally.get(&busy).copied().unwrap_or(0) * 2 < tally.get(&idle).copied().unwrap_or(0),
        "{busy} holds 20 connections and should get clearly fewer new ones: {tally:?} (data path: {got:?})"
    );
}

#[test]
fn slow_start_raises_a_new_vms_share_over_its_ramp() {
    let _one = serial();
    let (lab, _) = two_serving(fixed("static", 12));
    // The first two VMs finish their ramp before the third joins.
    std::thread::sleep(Duration::from_secs(12));
    let load = Load::start(&lab.topo.client, vip(), 80, 8).expect("load");
    let out = lab.lbctl(&["vm", "create", "--pool", "web"]);
    let new = out.split_whitespace().nth(1).expect("VM name").to_string();
    lab.wait_for(Duration::from_secs(10), "the new VM serving", |p| {
        PoolRunning::active(p).contains(&new)
    });
    let share = |secs: u64| {
        let a = new_flows(&lab.pool());
        std::thread::sleep(Duration::from_secs(secs));
        let d = delta(&a, &new_flows(&lab.pool()));
        d[&new] as f64 / d.values().sum::<u64>().max(1) as f64
    };
    let early = share(3);
    std::thread::sleep(Duration::from_secs(6));
    let late = share(3);
    drop(load);
    assert!(early < 0.25, "early share {early:.2} starts small");
    assert!(late > early + 0.1, "share rises: {early:.2} then {late:.2}");
}

#[test]
fn a_static_pool_picks_from_its_addresses_and_gives_them_back() {
    use lb_lab::{
        backend_addr, backend_name, netns::unique_name, state_file, tcp_hello, TempFile, Topology,
        AGENT_PORT, BACKEND_PORT,
    };
    let _one = serial();
    tests::require_root();
    // Three servers someone else runs; the pool may use at most all three, at least two.
    let mut topo = Topology::build(3).expect("namespaces");
    topo.start_backends(&tests::bin("lb-backend"), &tests::bin("lb-decap"))
        .expect("servers");
    let instance = unique_name("ts");
    let socket = std::env::temp_dir().join(format!("{instance}.sock"));
    let ifaces: Vec<String> = topo
        .lb_interfaces()
        .iter()
        .map(|i| format!("{i:?}"))
        .collect();
    let addrs: Vec<String> = (0..3).map(|i| format!("\"{}\"", backend_addr(i))).collect();
    let config = TempFile::new(
        &format!("{instance}.toml"),
        &format!(
            "[lbd]\ninstance = {instance:?}\ninterfaces = [{}]\nsocket = {:?}\nstate_file = {:?}\n\n\
             [[vip]]\nname = \"web\"\naddr = \"{VIP}\"\nport = {VIP_PORT}\nproto = \"tcp\"\n\
             [vip.health]\nkind = \"agent\"\nagent_port = {AGENT_PORT}\ninter_ms = 200\n\
             fastinter_ms = 100\nrise = 2\nfall = 2\n\
             [vip.pool]\nprovider = \"static\"\nmin = 2\nmax = 3\nport = {BACKEND_PORT}\n\
             scale_in_cooldown_s = 3600\naddrs = [{}]\n",
            ifaces.join(", "),
            socket.display().to_string(),
            state_file(&socket).display().to_string(),
            addrs.join(", ")
        ),
    )
    .expect("config");
    let _state = TempFile::adopt(state_file(&socket));
    topo.start_lbd(&tests::bin("lbd"), config.path(), &socket)
        .expect("lbd");
    let pool = || -> PoolView {
        let v = lb_userspace::face::client::call(&socket, "GET", "/v1/vms", None).expect("vms");
        serde_json::from_value::<Vec<PoolView>>(v)
            .expect("json")
            .remove(0)
    };
    let wait = |what: &str, ready: &dyn Fn(&PoolView) -> bool| {
        lb_lab::wait_until(Duration::from_secs(10), || ready(&pool()))
            .unwrap_or_else(|_| panic!("{what}: {:?}", pool().vms));
    };
    let burst = || {
        topo.as_client(|| {
            let mut t: BTreeMap<String, u32> = BTreeMap::new();
            for _ in 0..90 {
                *t.entry(tcp_hello(vip()).expect("connection")).or_default() += 1;
            }
            t
        })
        .expect("client")
    };
    wait("the first two addresses serving", &|p| {
        PoolRunning::active(p).len() == 2
    });
    let before = burst();
    assert_eq!(
        before.keys().cloned().collect::<Vec<_>>(),
        [backend_name(0), backend_name(1)],
        "only the pool's two addresses serve"
    );
    let out = tests::lab::lbctl(&socket, &["vm", "create", "--pool", "web"]);
    assert!(out.contains("web-2"), "{out}");
    wait("the third address serving", &|p| {
        PoolRunning::active(p).len() == 3
    });
    assert!(
        burst().contains_key(&backend_name(2)),
        "the third address joined"
    );
    tests::lab::lbctl(&socket, &["vm", "delete", "--pool", "web", "web-2"]);
    wait("the third address given back", &|p| p.vms.len() == 2);
    assert!(
        !burst().contains_key(&backend_name(2)),
        "it takes no new flows"
    );
    let direct = SocketAddr::from((backend_addr(2), BACKEND_PORT));
    assert_eq!(
        topo.as_client(move || tcp_hello(direct))
            .expect("client")
            .expect("direct"),
        backend_name(2),
        "lbd does not stop a server it does not run"
    );
}
