//! Tier 3: real TCP and UDP sockets across network namespaces, through `lbd` attached with
//! XDP in the balancer namespace.
use std::{
    collections::BTreeMap,
    net::{SocketAddr, SocketAddrV4, UdpSocket},
};

use lb_lab::{
    backend_addr, backend_name, tcp_hello, tcp_hello_from, udp_hello, BACKEND_PORT, CLIENT, VIP,
    VIP6, VIP6_DSR, VIP_DSR, VIP_PORT,
};
use tests::lab::RunningLab;

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, VIP_PORT))
}

/// Opens `n` connections to `vip` from the client; returns connections per backend name and
/// the number that failed. Gives up after 5 failures (each costs a probe timeout).
fn burst_to(lab: &RunningLab, vip: SocketAddr, n: usize) -> (BTreeMap<String, usize>, usize) {
    lab.topo
        .as_client(move || {
            let mut tally = BTreeMap::new();
            let mut failed = 0;
            for _ in 0..n {
                match tcp_hello(vip) {
                    Ok(name) => *tally.entry(name).or_insert(0) += 1,
                    Err(_) => failed += 1,
                }
                if failed >= 5 {
                    break;
                }
            }
            (tally, failed)
        })
        .expect("client namespace")
}

/// [`burst_to`] the IPv4 NAT VIP.
fn burst(lab: &RunningLab, n: usize) -> (BTreeMap<String, usize>, usize) {
    burst_to(lab, vip(), n)
}

#[test]
fn three_hundred_connections_succeed_and_reach_every_backend() {
    let lab = RunningLab::start(3);
    let (tally, failed) = burst(&lab, 300);
    assert_eq!(failed, 0, "failed connections; tally {tally:?}");
    assert_eq!(tally.values().sum::<usize>(), 300);
    for i in 0..3 {
        assert!(
            tally.get(&backend_name(i)).copied().unwrap_or(0) > 0,
            "{} served nothing: {tally:?}",
            backend_name(i)
        );
    }
    let stats = lab.lbctl(&["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert!(v["counters"]["fwd_nat"].as_u64().unwrap() >= 300 * 3, "{v}");
    assert!(
        v["counters"]["fwd_reply"].as_u64().unwrap() >= 300 * 2,
        "{v}"
    );
}

#[test]
fn the_same_five_tuple_stays_on_one_backend() {
    let lab = RunningLab::start(3);
    let (tcp, udp) = lab
        .topo
        .as_client(|| {
            let local = SocketAddrV4::new(CLIENT, 45678);
            let tcp: Vec<String> = (0..10)
                .map(|_| tcp_hello_from(local, vip()).expect("tcp from fixed port"))
                .collect();
            let sock = UdpSocket::bind(SocketAddrV4::new(CLIENT, 45679)).expect("bind udp");
            let udp: Vec<String> = (0..20)
                .map(|_| udp_hello(&sock, vip()).expect("udp answer"))
                .collect();
            (tcp, udp)
        })
        .expect("client namespace");
    assert!(tcp.iter().all(|n| *n == tcp[0]), "TCP moved: {tcp:?}");
    assert!(udp.iter().all(|n| *n == udp[0]), "UDP moved: {udp:?}");
}

#[test]
fn a_backend_removed_with_lbctl_gets_no_new_connections() {
    let lab = RunningLab::start(3);
    let (before, failed) = burst(&lab, 60);
    assert_eq!(failed, 0);
    assert!(
        before.contains_key(&backend_name(1)),
        "vm1 served before: {before:?}"
    );
    let removed = format!("{}:{BACKEND_PORT}", backend_addr(1));
    let out = lab.lbctl(&["backend", "remove", "--vip", "web", &removed]);
    assert!(out.contains("removed"), "{out}");
    let list = lab.lbctl(&["backend", "list", "--vip", "web"]);
    assert!(!list.contains(&removed), "still listed: {list}");
    let (after, failed) = burst(&lab, 200);
    assert_eq!(failed, 0, "{after:?}");
    assert_eq!(
        after.get(&backend_name(1)),
        None,
        "vm1 still served: {after:?}"
    );
    assert_eq!(after.len(), 2, "the other two share the load: {after:?}");
}

#[test]
fn traffic_not_for_the_vip_still_flows() {
    let lab = RunningLab::start(2);
    let direct = SocketAddr::from((backend_addr(0), BACKEND_PORT));
    let (tcp, udp) = lab
        .topo
        .as_client(move || {
            let tcp: Vec<String> = (0..20)
                .map(|_| tcp_hello(direct).expect("direct tcp"))
                .collect();
            let sock = UdpSocket::bind(SocketAddrV4::new(CLIENT, 0)).expect("bind");
            let udp = udp_hello(&sock, direct).expect("direct udp");
            (tcp, udp)
        })
        .expect("client namespace");
    assert!(tcp.iter().all(|n| *n == backend_name(0)), "{tcp:?}");
    assert_eq!(udp, backend_name(0));
    let stats = lab.lbctl(&["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(
        v["counters"]["fwd_nat"].as_u64(),
        Some(0),
        "nothing was NATed: {v}"
    );
    assert!(v["counters"]["pass_not_vip"].as_u64().unwrap() >= 20, "{v}");
}

#[test]
fn lbctl_reports_a_missing_lbd_and_bad_arguments_clearly() {
    let missing = std::process::Command::new(tests::bin("lbctl"))
        .args(["--socket", "/nonexistent/lbd.sock", "backend", "list"])
        .output()
        .expect("run lbctl");
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("lbd is not running"), "{err}");

    let bad = std::process::Command::new(tests::bin("lbctl"))
        .args(["backend", "add", "--vip", "web", "10.0.0.1"])
        .output()
        .expect("run lbctl");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("is not ADDR:PORT") && err.contains("example"),
        "{err}"
    );
}

#[test]
fn ipv6_connections_through_the_vip_reach_every_backend() {
    let lab = RunningLab::start(3);
    let (tally, failed) = burst_to(&lab, SocketAddr::from((VIP6, VIP_PORT)), 90);
    assert_eq!(failed, 0, "{tally:?}");
    assert_eq!(tally.len(), 3, "every backend serves IPv6: {tally:?}");
}

#[test]
fn a_ping_to_the_vip_is_answered_by_the_balancer() {
    let lab = RunningLab::start(1);
    // Unprivileged-style ICMP echo sockets: the kernel fills identifier and checksum.
    lab.topo
        .client
        .sysctl("net.ipv4.ping_group_range=0 0")
        .expect("allow ping sockets");
    let answer = lab
        .topo
        .client
        .enter(|| -> std::io::Result<Vec<u8>> {
            // SAFETY: plain socket(2); the descriptor is owned by `sock` from here on.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            let sock = unsafe { <std::net::UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            sock.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
            let echo = [8u8, 0, 0, 0, 0, 0, 0, 1, b'x', b'l', b'b', b'!'];
            sock.send_to(&echo, SocketAddr::from((VIP, 0)))?;
            let mut buf = [0u8; 64];
            let (n, from) = sock.recv_from(&mut buf)?;
            assert_eq!(
                from.ip(),
                std::net::IpAddr::from(VIP),
                "answered from the VIP"
            );
            Ok(buf[..n].to_vec())
        })
        .expect("client namespace")
        .expect("an echo reply");
    assert_eq!(answer[0], 0, "echo reply");
    assert_eq!(&answer[8..], b"xlb!", "the payload comes back");
    let v = lab.stats();
    assert_eq!(v["counters"]["icmp_echo_reply"].as_u64(), Some(1), "{v}");
}

/// 64 KiB echoed through the DSR VIP over a 1500-byte backend link, whose full-size segments
/// do not fit once encapsulated: true if the echo came back whole.
fn full_size_dsr_echo(lab: &RunningLab) -> bool {
    use std::io::{Read, Write};
    let vip = SocketAddr::from((VIP_DSR, VIP_PORT));
    lab.topo
        .client
        .enter(move || -> std::io::Result<bool> {
            let (_, mut s) = lb_lab::tcp_session(vip).expect("DSR session");
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            let msg: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
            s.write_all(&msg)?;
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back)?;
            Ok(back == msg)
        })
        .expect("client namespace")
        .expect("64 KiB through the DSR VIP and back")
}

/// Packets the balancer answered with "fragmentation needed".
fn too_big(lab: &RunningLab) -> u64 {
    lab.stats()["counters"]["icmp_too_big"]
        .as_u64()
        .unwrap_or(0)
}

/// At XDP there is no segmentation offload: 1500-byte segments do not fit the 1500-byte
/// backend link once encapsulated, and the client must learn a smaller path MTU from the
/// balancer, or the connection stalls.
#[test]
fn a_dsr_connection_sending_full_size_segments_works_through_fragmentation_needed() {
    let lab = RunningLab::start_xdp(1);
    assert_eq!(too_big(&lab), 0);
    assert!(full_size_dsr_echo(&lab), "the echo differs");
    assert!(
        too_big(&lab) >= 1,
        "the balancer answered fragmentation needed"
    );
}

/// At tc, with the client's default offloads, segments travel as aggregates whose segment
/// size the kernel lowers by the outer header when the balancer encapsulates them; a single
/// full-size packet still gets "fragmentation needed". Either way the echo comes back.
#[test]
fn a_dsr_connection_sending_full_size_segments_works_at_tc_with_default_offloads() {
    let lab = RunningLab::start(1);
    assert!(full_size_dsr_echo(&lab), "the echo differs");
}

#[test]
fn dsr_connections_with_lb_decap_reach_every_backend_over_ipv4_and_ipv6() {
    let lab = RunningLab::start(3);
    for vip in [
        SocketAddr::from((VIP_DSR, VIP_PORT)),
        SocketAddr::from((VIP6_DSR, VIP_PORT)),
    ] {
        let (tally, failed) = burst_to(&lab, vip, 90);
        assert_eq!(failed, 0, "{vip}: {tally:?}");
        assert_eq!(tally.len(), 3, "{vip}: every backend serves: {tally:?}");
    }
    let stats = lab.lbctl(&["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(
        v["counters"]["fwd_reply"].as_u64(),
        Some(0),
        "DSR replies bypass the balancer's NAT: {v}"
    );
}

#[test]
fn a_drained_backend_takes_no_new_flows_and_reports_drained_when_its_flows_closed() {
    let lab = RunningLab::start(3);
    let (before, failed) = burst(&lab, 60);
    assert_eq!(failed, 0);
    assert!(before.contains_key(&backend_name(2)), "{before:?}");
    let drained = format!("{}:{BACKEND_PORT}", backend_addr(2));
    let out = lab.lbctl(&["backend", "drain", "--vip", "web", &drained]);
    assert!(out.contains("draining"), "{out}");
    let (after, failed) = burst(&lab, 120);
    assert_eq!(failed, 0, "{after:?}");
    assert_eq!(
        after.get(&backend_name(2)),
        None,
        "drained backend got new flows: {after:?}"
    );
    // Every connection of the bursts was closed by the client (FIN): none is active.
    let list: serde_json::Value =
        serde_json::from_str(&lab.lbctl(&["backend", "list", "--vip", "web", "--json"]))
            .expect("list JSON");
    let b = list[0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["port"] == BACKEND_PORT && b["addr"] == backend_addr(2).to_string())
        .expect("drained backend listed")
        .clone();
    assert_eq!(b["weight"], 0);
    assert_eq!(b["state"], "drained", "{b}");
}

#[test]
fn prometheus_metrics_show_per_backend_flows_and_verdicts() {
    let lab = RunningLab::start(2);
    let (_, failed) = burst(&lab, 40);
    assert_eq!(failed, 0);
    let page = tests::lab::metrics_page(&lab.topo.lb);
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    assert!(
        page.contains("# TYPE lb_backend_active_flows gauge"),
        "{page}"
    );
    let flows: u64 = page
        .lines()
        .filter(|l| l.starts_with("lb_backend_new_flows_total{vip=\"web\","))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(flows, 40, "{page}");
    assert!(
        page.contains("lb_packets_total{reason=\"fwd_nat\"}"),
        "{page}"
    );
    let changes: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("lb_controller_changes_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        changes >= 5,
        "one ring change per configured VIP at least: {changes}"
    );
}

#[test]
fn lbd_killed_with_sigkill_and_restarted_breaks_no_connection_and_keeps_cli_changes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut lab = RunningLab::start(3);
    let drained = format!("{}:{BACKEND_PORT}", backend_addr(2));
    lab.lbctl(&["backend", "drain", "--vip", "web", &drained]);
    let stop = AtomicBool::new(false);
    let (ok, failed) = std::thread::scope(|s| {
        let client_ns = &lab.topo.client;
        let client = s.spawn(|| {
            client_ns
                .enter(|| {
                    let (mut ok, mut failed) = (0u32, 0u32);
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
                    while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                        match tcp_hello(vip()) {
                            Ok(_) => ok += 1,
                            Err(_) => failed += 1,
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    (ok, failed)
                })
                .expect("client namespace")
        });
        // 30 s of steady connections with the kill and restart 5 s in.
        let started = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_secs(5));
        RunningLab::kill_and_restart_lbd(&mut lab.topo.lb, &mut lab.lbd, &lab.config, &lab.socket);
        std::thread::sleep(std::time::Duration::from_secs(30).saturating_sub(started.elapsed()));
        stop.store(true, Ordering::SeqCst);
        client.join().expect("client thread")
    });
    assert_eq!(
        failed,
        0,
        "{failed} of {} connections broke across the restart",
        ok + failed
    );
    assert!(ok > 1000, "steady traffic ran for 30 s ({ok} connections)");
    let list: serde_json::Value =
        serde_json::from_str(&lab.lbctl(&["backend", "list", "--vip", "web", "--json"]))
            .expect("list JSON");
    let weights: Vec<(String, u64)> = list[0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["addr"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        weights.contains(&(backend_addr(2).to_string(), 0)),
        "the drain made before the kill survived: {weights:?}"
    );
}

#[test]
fn the_api_refuses_a_non_root_user() {
    use std::os::unix::process::CommandExt;
    let lab = RunningLab::start(1);
    let out = std::process::Command::new(tests::bin("lbctl"))
        .arg("--socket")
        .arg(&lab.socket)
        .arg("status")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run lbctl as nobody");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        lab.lbctl(&["status"]).contains("instance"),
        "root still gets in"
    );
}

#[test]
fn an_invalid_change_through_the_api_is_refused_and_changes_nothing() {
    let lab = RunningLab::start(2);
    let before = lab.lbctl(&["backend", "list", "--json"]);
    let stats_before: serde_json::Value =
        serde_json::from_str(&lab.lbctl(&["stats", "--json"])).unwrap();
    for (body, field) in [
        (
            r#"{"vip":"web","addr":"10.200.10.2","port":0}"#,
            "backend.port",
        ),
        (r#"{"vip":"nope","addr":"10.200.10.2","port":8080}"#, "vip"),
        (
            r#"{"vip":"web","addr":"fd00::1","port":8080}"#,
            "backend.addr",
        ),
        (
            r#"{"vip":"web","addr":"10.200.10.2","port":8080,"weight":70000}"#,
            "backend.weight",
        ),
        (r#"{"vip":"web","adr":"10.200.10.2","port":8080}"#, "body"),
        ("not json", "body"),
    ] {
        let (status, v) = lb_userspace::face::client::request(
            &lab.socket,
            "POST",
            "/v1/backends",
            Some(&serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into()))),
        )
        .expect("API answers");
        assert!((400..500).contains(&status), "{body}: HTTP {status}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with(field),
            "{body}: {msg:?} should name {field}"
        );
    }
    assert_eq!(
        lab.lbctl(&["backend", "list", "--json"]),
        before,
        "nothing changed"
    );
    let (tally, failed) = burst(&lab, 30);
    assert_eq!(failed, 0, "still forwarding: {tally:?}");
    let stats_after: serde_json::Value =
        serde_json::from_str(&lab.lbctl(&["stats", "--json"])).unwrap();
    assert!(
        stats_after["counters"]["fwd_nat"].as_u64() > stats_before["counters"]["fwd_nat"].as_u64()
    );
}

#[test]
fn lbctl_plan_shows_the_moved_share_and_apply_makes_exactly_that_change() {
    let lab = RunningLab::start(3);
    let before = lab.lbctl(&["backend", "list", "--json"]);
    let removed = format!("{}:{BACKEND_PORT}", backend_addr(1));
    let dry: serde_json::Value =
        serde_json::from_str(&lab.lbctl(&["plan", "--vip", "web", "--json", "remove", &removed]))
            .expect("plan JSON");
    assert_eq!(dry["applied"], false);
    let moved = dry["moved_share"].as_f64().unwrap();
    assert!(
        (0.30..0.40).contains(&moved),
        "removing 1 of 3 moves about a third: {moved}"
    );
    assert_eq!(
        lab.lbctl(&["backend", "list", "--json"]),
        before,
        "a plan changes nothing"
    );
    let text = lab.lbctl(&["plan", "--vip", "web", "--apply", "remove", &removed]);
    assert!(
        text.contains("(applied)") && text.contains("moves"),
        "{text}"
    );
    let list = lab.lbctl(&["backend", "list", "--vip", "web"]);
    assert!(!list.contains(&removed), "{list}");
    let (tally, failed) = burst(&lab, 60);
    assert_eq!(failed, 0);
    assert_eq!(tally.get(&backend_name(1)), None, "{tally:?}");
}

#[test]
fn a_backend_whose_server_dies_leaves_the_ring_and_returns_when_it_is_back() {
    let mut lab = RunningLab::start(3);
    assert_eq!(lab.web_state(1), "active");
    lab.topo.kill_server(1).expect("kill vm1's server");
    let killed = std::time::Instant::now();
    // fall (2) x inter (200 ms) + timeout (300 ms) = 700 ms, plus scheduling slack.
    lb_lab::wait_until(std::time::Duration::from_secs(3), || {
        lab.web_state(1) == "down"
    })
    .expect("vm1 marked down");
    let detected = killed.elapsed();
    eprintln!("health detection: vm1 down after {detected:?}");
    assert!(
        detected < std::time::Duration::from_millis(1500),
        "took {detected:?}"
    );
    let (tally, failed) = burst(&lab, 60);
    assert_eq!(
        failed, 0,
        "no new connection goes to the dead backend: {tally:?}"
    );
    assert_eq!(tally.get(&backend_name(1)), None);
    lab.topo
        .start_server(1, &tests::bin("lb-backend"))
        .expect("revive vm1's server");
    lb_lab::wait_until(std::time::Duration::from_secs(3), || {
        lab.web_state(1) == "active"
    })
    .expect("vm1 back up after rise checks");
    let (tally, failed) = burst(&lab, 90);
    assert_eq!(failed, 0);
    assert!(
        tally.contains_key(&backend_name(1)),
        "vm1 serves again: {tally:?}"
    );
}

#[test]
fn sigterm_stops_lbd_cleanly_removing_its_pins_and_socket() {
    let lab = RunningLab::start(2);
    let pins = std::path::Path::new("/sys/fs/bpf").join(&lab.instance);
    assert!(pins.join("links").exists(), "links pinned while running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lab.lbd as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    lb_lab::wait_until(std::time::Duration::from_secs(2), || {
        !pins.exists() && !lab.socket.exists()
    })
    .expect("lbd unpinned and removed its socket within 2 s");
}

#[test]
fn lbctl_stats_watch_shows_per_backend_rates() {
    let lab = RunningLab::start(2);
    let (_, failed) = burst(&lab, 20);
    assert_eq!(failed, 0);
    let out = lab.lbctl(&["stats", "--watch", "--interval", "0.2", "--count", "2"]);
    assert_eq!(out.matches("PKTS/S").count(), 2, "two refreshes: {out}");
    for i in 0..2 {
        assert!(
            out.contains(&format!("{}:{BACKEND_PORT}", backend_addr(i))),
            "{out}"
        );
    }
    assert!(out.contains("active"), "{out}");
}

#[test]
fn a_vip_added_live_serves_and_stops_serving_when_removed() {
    let lab = RunningLab::start(2);
    let api = SocketAddr::from((std::net::Ipv4Addr::new(10, 200, 0, 30), 8080));
    let out = lab.lbctl(&[
        "vip",
        "add",
        "--name",
        "api",
        "--addr",
        "10.200.0.30",
        "--port",
        "8080",
        "--table",
        "consistent",
        "--ring-size",
        "262139",
    ]);
    assert!(out.contains("added VIP api"), "{out}");
    let listed = lab.lbctl(&["vip", "list"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with("api "))
        .unwrap_or_default();
    assert!(
        row.contains("262139") && row.contains("consistent"),
        "{listed}"
    );
    let backend = format!("{}:{BACKEND_PORT}", backend_addr(0));
    lab.lbctl(&["backend", "add", "--vip", "api", &backend]);
    let (tally, failed) = burst_to(&lab, api, 10);
    assert_eq!(
        (failed, tally.get(&backend_name(0)).copied()),
        (0, Some(10)),
        "{tally:?}"
    );
    let out = lab.lbctl(&["vip", "remove", "api"]);
    assert!(out.contains("removed VIP api"), "{out}");
    assert!(!lab.lbctl(&["vip", "list"]).contains("api"));
    let (tally, failed) = burst_to(&lab, api, 2);
    assert!(
        tally.is_empty() && failed == 2,
        "removed VIP still served: {tally:?}"
    );
    let (_, failed) = burst(&lab, 20);
    assert_eq!(failed, 0, "the other VIPs are untouched");
}

#[test]
fn an_agent_check_drains_downs_and_reweights_a_backend() {
    let lab = RunningLab::start(2);
    let vip = SocketAddr::from((std::net::Ipv4Addr::new(10, 200, 0, 40), 8080));
    let body = serde_json::json!({
        "name": "agentweb", "addr": "10.200.0.40", "port": 8080, "proto": "tcp",
        "health": {"kind": "agent", "agent_port": lb_lab::AGENT_PORT,
            "inter_ms": 100, "fastinter_ms": 50, "downinter_ms": 100, "timeout_ms": 100,
            "rise": 1, "fall": 1},
        "backend": [
            {"addr": backend_addr(0).to_string(), "port": BACKEND_PORT},
            {"addr": backend_addr(1).to_string(), "port": BACKEND_PORT},
        ],
    });
    lb_userspace::face::client::call(&lab.socket, "POST", "/v1/vips", Some(&body))
        .expect("add VIP");
    let state = |i: usize| -> String {
        let list: serde_json::Value =
            serde_json::from_str(&lab.lbctl(&["backend", "list", "--vip", "agentweb", "--json"]))
                .unwrap();
        list[0]["backends"][i]["state"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    };
    let wait = |i: usize, want: &[&str]| {
        lb_lab::wait_until(std::time::Duration::from_secs(3), || {
            want.contains(&state(i).as_str())
        })
        .unwrap_or_else(|_| panic!("backend {i} never became {want:?} (is {})", state(i)));
    };
    wait(1, &["active"]);
    let (tally, failed) = burst_to(&lab, vip, 40);
    assert_eq!(failed, 0);
    assert!(tally.contains_key(&backend_name(1)), "{tally:?}");

    std::fs::write(lab.topo.agent_state_file(1), "drain\n").unwrap();
    wait(1, &["draining", "drained"]);
    let (tally, failed) = burst_to(&lab, vip, 40);
    assert_eq!(failed, 0);
    assert_eq!(
        tally.get(&backend_name(1)),
        None,
        "drained by its agent: {tally:?}"
    );

    std::fs::write(lab.topo.agent_state_file(1), "down\n").unwrap();
    wait(1, &["down"]);

    std::fs::write(lab.topo.agent_state_file(1), "up 100%\n").unwrap();
    wait(1, &["active"]);
    let (tally, failed) = burst_to(&lab, vip, 40);
    assert_eq!(failed, 0);
    assert!(
        tally.contains_key(&backend_name(1)),
        "back in the ring: {tally:?}"
    );
}

#[test]
fn drain_keeps_a_long_lived_connection_while_new_ones_avoid_the_backend() {
    let lab = RunningLab::start(3);
    let (name, mut session) = lab
        .topo
        .as_client(|| lb_lab::tcp_session(vip()).expect("session"))
        .expect("client namespace");
    let i: usize = name.trim_start_matches("vm").parse().expect("vmN");
    let drained = format!("{}:{BACKEND_PORT}", backend_addr(i));
    lab.lbctl(&["backend", "drain", "--vip", "web", &drained]);
    assert_eq!(lab.web_state(i), "draining", "its connection is still open");
    assert_eq!(lb_lab::echo(&mut session, "ping\n").unwrap(), "ping\n");
    let (tally, failed) = burst(&lab, 60);
    assert_eq!(failed, 0);
    assert_eq!(
        tally.get(&name),
        None,
        "new connections avoid {name}: {tally:?}"
    );
    // The deadline (drain_timeout_s = 2) passes: drained, though the connection lives on.
    lb_lab::wait_until(std::time::Duration::from_secs(4), || {
        lab.web_state(i) == "drained"
    })
    .expect("drained after the deadline");
    assert_eq!(
        lb_lab::echo(&mut session, "still here\n").unwrap(),
        "still here\n"
    );
}
