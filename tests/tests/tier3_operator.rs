//! Tier 3: an operator's day with lbd, each defect an operator met as its own test: a duplicate
//! VIP, a second lbd, a bad state file, the config against the state, reload, `ip netns exec`,
//! the state file's mode, half-open API connections, a service manager's stop, the audit log.
use std::{
    io::{Read, Write},
    net::SocketAddr,
    os::unix::{fs::PermissionsExt, net::UnixStream},
    time::{Duration, Instant},
};

use lb_lab::{
    backend_addr, echo, start_lbd_with, state_file, tcp_hello, tcp_session, wait_until,
    BACKEND_PORT, VIP, VIP_PORT,
};
use tests::lab::{lbctl_try, RunningLab};

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, VIP_PORT))
}

/// `n` connections to the NAT VIP from the client: how many failed.
fn failures(lab: &RunningLab, n: usize) -> usize {
    lab.topo
        .as_client(move || (0..n).filter(|_| tcp_hello(vip()).is_err()).count())
        .expect("client namespace")
}

/// The backends of VIP `name` as `lbctl backend list --json` shows them.
fn backends(lab: &RunningLab, name: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&lab.lbctl(&["backend", "list", "--vip", name, "--json"]))
            .expect("JSON");
    v[0]["backends"].as_array().cloned().unwrap_or_default()
}

/// Runs lbd with `args` in the balancer namespace to its end (bounded: killed after 10 s):
/// whether it succeeded, and its stderr.
fn lbd_once(lab: &RunningLab, args: &[&str]) -> (bool, String) {
    let bin = tests::bin("lbd").display().to_string();
    let mut child = lab
        .topo
        .lb
        .command(&bin, args)
        .expect("command")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start lbd");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            let _ = child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err);
            return (status.success(), err);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    (false, "still running after 10 s".into())
}

#[test]
fn a_duplicate_vip_is_refused_and_the_original_keeps_forwarding() {
    let lab = RunningLab::start(2);
    let (ok, _, err) = lbctl_try(
        &lab.socket,
        &[
            "vip",
            "add",
            "--name",
            "web2",
            "--addr",
            &VIP.to_string(),
            "--port",
            "80",
        ],
    );
    assert!(!ok, "a second VIP on 10.200.0.10:80/tcp was accepted");
    assert!(err.contains("\"web\"") && err.contains("HTTP 409"), "{err}");
    assert!(!lab.lbctl(&["vip", "list"]).contains("web2"));
    assert_eq!(failures(&lab, 20), 0, "the original VIP stopped forwarding");
    let saved = std::fs::read_to_string(state_file(&lab.socket)).expect("state file");
    assert!(!saved.contains("web2"), "the refused VIP was saved");
}

#[test]
fn a_second_lbd_of_the_same_instance_is_refused_while_the_first_keeps_forwarding() {
    let lab = RunningLab::start(2);
    let config = lab.config.path().display().to_string();
    let (ok, err) = lbd_once(&lab, &["--config", &config]);
    assert!(!ok, "a second lbd started");
    assert!(
        err.contains("already running") && err.contains(&lab.lbd.to_string()),
        "{err}"
    );
    assert!(
        lab.lbctl(&["status"]).contains(&lab.instance),
        "the first lost its API"
    );
    assert_eq!(failures(&lab, 20), 0, "the first stopped forwarding");
}

#[test]
fn an_empty_state_file_is_refused_with_the_way_out_and_reset_state_starts_from_the_config() {
    let mut lab = RunningLab::start(2);
    lab.lbctl(&[
        "backend",
        "remove",
        "--vip",
        "web",
        &format!("{}:{BACKEND_PORT}", backend_addr(1)),
    ]);
    let state = state_file(&lab.socket);
    let mode = std::fs::metadata(&state)
        .expect("state file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the state file holds the hash seed");
    lab.topo
        .lb
        .signal_child(lab.lbd, nix::sys::signal::Signal::SIGKILL)
        .expect("kill lbd");
    std::fs::write(&state, "").expect("truncate");
    let config = lab.config.path().display().to_string();
    let (ok, err) = lbd_once(&lab, &["--config", &config]);
    assert!(!ok, "lbd started from an empty state file");
    assert!(
        err.contains(&state.display().to_string()) && err.contains("--reset-state"),
        "{err}"
    );
    lab.lbd = start_lbd_with(
        &mut lab.topo.lb,
        &tests::bin("lbd"),
        lab.config.path(),
        &lab.socket,
        &["--reset-state"],
    )
    .expect("lbd --reset-state");
    assert_eq!(
        backends(&lab, "web").len(),
        2,
        "the config's backends, not the lost change"
    );
    let bad = lb_userspace::model::state::aside(&state);
    assert!(bad.exists(), "the bad file is kept aside");
    let _ = std::fs::remove_file(bad);
}

#[test]
fn runtime_changes_survive_a_restart_until_the_config_changes_then_the_config_wins() {
    let mut lab = RunningLab::start(3);
    let third = format!("{}:{BACKEND_PORT}", backend_addr(2));
    lab.lbctl(&["backend", "remove", "--vip", "web", &third]);
    assert!(
        lab.lbctl(&["status"]).contains("1 against the config"),
        "{}",
        lab.lbctl(&["status"])
    );
    assert!(lab
        .lbctl(&["diff"])
        .contains(&format!("backend {third} removed")));
    RunningLab::kill_and_restart_lbd(&mut lab.topo.lb, &mut lab.lbd, &lab.config, &lab.socket);
    assert_eq!(
        backends(&lab, "web").len(),
        2,
        "the runtime change was kept"
    );
    // Edit the config: backend 0 of `web` gets weight 5.
    let text = std::fs::read_to_string(lab.config.path()).expect("config");
    let first = format!(
        "[[vip.backend]]\naddr = \"{}\"\nport = {BACKEND_PORT}\n",
        backend_addr(0)
    );
    let edited = text.replacen(&first, &format!("{first}weight = 5\n"), 1);
    assert_ne!(text, edited);
    std::fs::write(lab.config.path(), edited).expect("edit config");
    RunningLab::kill_and_restart_lbd(&mut lab.topo.lb, &mut lab.lbd, &lab.config, &lab.socket);
    let web = backends(&lab, "web");
    assert_eq!(web.len(), 3, "the config won: the removed backend is back");
    assert_eq!(web[0]["weight"], 5, "{web:?}");
    assert!(
        lab.log().contains("runtime change(s) dropped"),
        "{}",
        lab.log()
    );
}

#[test]
fn sighup_reloads_the_config_keeping_established_flows_and_an_invalid_one_changes_nothing() {
    let lab = RunningLab::start(3);
    let (first, mut session) = lab
        .topo
        .as_client(|| tcp_session(vip()).expect("session"))
        .expect("client");
    // Drop the third backend of `web` from the config (unless the session is on it).
    let victim = (0..3)
        .find(|i| lb_lab::backend_name(*i) != first)
        .expect("another backend");
    let text = std::fs::read_to_string(lab.config.path()).expect("config");
    let entry = format!(
        "[[vip.backend]]\naddr = \"{}\"\nport = {BACKEND_PORT}\n",
        backend_addr(victim)
    );
    let web_start = text.find("name = \"web\"").expect("web");
    let at = web_start + text[web_start..].find(&entry).expect("entry");
    let edited = format!("{}{}", &text[..at], &text[at + entry.len()..]);
    std::fs::write(lab.config.path(), &edited).expect("edit");
    let preview = lab.lbctl(&["reload", "--dry-run"]);
    assert!(
        preview.contains("would apply") && preview.contains("web"),
        "{preview}"
    );
    assert_eq!(
        backends(&lab, "web").len(),
        3,
        "a dry run changed something"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lab.lbd as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_until(Duration::from_secs(5), || backends(&lab, "web").len() == 2).expect("reloaded");
    assert!(lab.log().contains("SIGHUP: reloaded"), "{}", lab.log());
    let answer = lab
        .topo
        .as_client(move || echo(&mut session, "still here\n").map(|a| (a, session)))
        .expect("client");
    let (answer, _session) = answer.expect("the established flow broke");
    assert_eq!(answer, "still here\n");
    // An invalid config: refused whole.
    std::fs::write(
        lab.config.path(),
        edited.replacen("port = 8080", "port = 0", 1),
    )
    .expect("break");
    let (ok, _, err) = lbctl_try(&lab.socket, &["reload"]);
    assert!(!ok && err.contains("port: must be 1-65535"), "{err}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lab.lbd as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_until(Duration::from_secs(3), || {
        lab.log().contains("reload refused")
    })
    .expect("refused");
    assert_eq!(
        backends(&lab, "web").len(),
        2,
        "the invalid config changed something"
    );
    assert_eq!(failures(&lab, 10), 0);
}

#[test]
fn lbd_under_ip_netns_exec_refuses_to_start_and_names_nsenter() {
    let lab = RunningLab::start(1);
    let bin = tests::bin("lbd").display().to_string();
    let other = format!("{}-b", lab.instance);
    let config = std::fs::read_to_string(lab.config.path())
        .expect("config")
        .replace(
            &format!("instance = \"{}\"", lab.instance),
            &format!("instance = \"{other}\""),
        )
        .replace(".sock\"", "-b.sock\"");
    let file = lb_lab::TempFile::new(&format!("{other}.toml"), &config).expect("config");
    let out = std::process::Command::new("timeout")
        .args([
            "10",
            "ip",
            "netns",
            "exec",
            lab.topo.lb.name(),
            &bin,
            "--config",
        ])
        .arg(file.path())
        .output()
        .expect("ip netns exec");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "lbd ran with a private bpffs");
    assert!(err.contains("nsenter --net="), "{err}");
}

#[test]
fn half_open_api_connections_are_closed_and_do_not_block_the_api() {
    let lab = RunningLab::start(1);
    let held: Vec<UnixStream> = (0..300)
        .map(|_| {
            let mut s = UnixStream::connect(&lab.socket).expect("connect");
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: lbd\r\n")
                .expect("half a head");
            s
        })
        .collect();
    let started = Instant::now();
    assert!(
        lab.lbctl(&["status"]).contains(&lab.instance),
        "the API stopped answering"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        // The server answers the timeout (408 or a close) within its header timeout.
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
}

#[test]
fn sigterm_keeps_the_data_path_by_default_so_a_restart_breaks_no_flow() {
    let mut lab = RunningLab::start_custom(2, 0, |t| t.replace("on_stop = \"remove\"\n", ""));
    let (_, mut session) = lab
        .topo
        .as_client(|| tcp_session(vip()).expect("session"))
        .expect("client");
    lab.topo
        .lb
        .signal_child(lab.lbd, nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    let pins = lb_userspace::daemon::pin_dir(&lab.instance);
    let status = lab
        .topo
        .lb
        .wait_child(lab.lbd, Duration::from_secs(10))
        .expect("lbd stops");
    assert!(status.success(), "{status}");
    assert!(pins.exists(), "a stop removed the data path");
    assert!(
        lab.log().contains("data path left running"),
        "{}",
        lab.log()
    );
    let (answer, mut session) = lab
        .topo
        .as_client(move || {
            (
                echo(&mut session, "no lbd\n").expect("flow without lbd"),
                session,
            )
        })
        .expect("client");
    assert_eq!(answer, "no lbd\n");
    lab.lbd = lb_lab::start_lbd_in(
        &mut lab.topo.lb,
        &tests::bin("lbd"),
        lab.config.path(),
        &lab.socket,
    )
    .expect("restart");
    let answer = lab
        .topo
        .as_client(move || echo(&mut session, "adopted\n").expect("flow after restart"))
        .expect("client");
    assert_eq!(answer, "adopted\n");
}

#[test]
fn every_change_is_an_audit_line_naming_the_uid_and_the_moved_share() {
    let lab = RunningLab::start(2);
    let backend = format!("{}:{BACKEND_PORT}", backend_addr(1));
    lab.lbctl(&["backend", "weight", "--vip", "web", &backend, "3"]);
    let log = lab.log();
    let line = log
        .lines()
        .find(|l| l.contains("audit") && l.contains("backend add") && l.contains(&backend))
        .unwrap_or_else(|| panic!("no audit line in:\n{log}"));
    assert!(line.contains("uid=0") && line.contains("moved="), "{line}");
}

#[test]
fn a_read_only_socket_serves_views_to_its_group_and_refuses_changes() {
    let lab = RunningLab::start_with(1, 0, "read_group = \"nogroup\"\n");
    let ro = lb_userspace::face::api::read_only_socket(&lab.socket);
    let run_as_nobody = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let out = std::process::Command::new(tests::bin("lbctl"))
            .arg("--socket")
            .arg(&ro)
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("lbctl as nobody");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run_as_nobody(&["status"]);
    assert!(ok && out.contains(&lab.instance), "{err}");
    let (ok, _, err) = run_as_nobody(&["backend", "add", "--vip", "web", "10.200.10.2:9999"]);
    assert!(
        !ok && err.contains("read-only") && err.contains("403"),
        "{err}"
    );
    let mode = std::fs::metadata(&ro).expect("socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[test]
fn conn_list_shows_a_live_connection_with_its_backend_and_bounds_its_output() {
    let lab = RunningLab::start(2);
    let (name, _session) = lab
        .topo
        .as_client(|| tcp_session(vip()).expect("session"))
        .expect("client");
    assert_eq!(failures(&lab, 5), 0);
    let list: serde_json::Value = serde_json::from_str(&lab.lbctl(&[
        "conn",
        "list",
        "--vip",
        "web",
        "--client",
        &lb_lab::CLIENT.to_string(),
        "--json",
    ]))
    .expect("JSON");
    let conns = list["conns"].as_array().expect("conns");
    let live = conns
        .iter()
        .find(|c| c["state"] == "established")
        .unwrap_or_else(|| panic!("no established flow: {list}"));
    let i: usize = name.trim_start_matches("vm").parse().expect("vm name");
    assert_eq!(
        live["backend"],
        format!("{}:{BACKEND_PORT}", backend_addr(i)),
        "{list}"
    );
    assert_eq!(live["service"], vip().to_string());
    let matched = list["matched"].as_u64().expect("matched");
    assert!(matched >= 6, "the session and 5 hellos: {list}");
    let one: serde_json::Value =
        serde_json::from_str(&lab.lbctl(&["conn", "list", "--limit", "1", "--json"]))
            .expect("JSON");
    assert_eq!(one["conns"].as_array().map(Vec::len), Some(1));
    assert!(one["matched"].as_u64() >= Some(matched));
    let table = lab.lbctl(&["conn", "list", "--vip", "web"]);
    assert!(
        table.contains("TCP") && table.contains("matching flows shown"),
        "{table}"
    );
}

#[test]
fn health_detail_names_the_failure_and_unchecked_backends_say_so() {
    let mut lab = RunningLab::start(2);
    lab.topo.kill_server(1).expect("kill vm1's server");
    let sick = format!("{}:{BACKEND_PORT}", backend_addr(1));
    wait_until(Duration::from_secs(5), || lab.web_state(1) == "down").expect("down");
    let shown = lab.lbctl(&["backend", "show", "--vip", "web", &sick]);
    assert!(
        shown.contains("failed: refused") && shown.contains("down for"),
        "{shown}"
    );
    let detail = |i: usize| -> serde_json::Value {
        let b = format!("{}:{BACKEND_PORT}", backend_addr(i));
        let v: serde_json::Value =
            serde_json::from_str(&lab.lbctl(&["backend", "show", "--vip", "web", &b, "--json"]))
                .expect("JSON");
        v["health"].clone()
    };
    assert_eq!(detail(1)["last"]["reason"], "refused", "{}", detail(1));
    assert!(
        detail(0)["consecutive_ok"].as_u64() > Some(0),
        "{}",
        detail(0)
    );
    let page = tests::lab::metrics_page(&lab.topo.lb);
    let line = format!(
        "lb_backend_check_failures_total{{vip=\"web\",backend=\"{sick}\",reason=\"refused\"}}"
    );
    assert!(page.contains(&line), "{page}");
    // `web6` has no check: said so, not `active` like a checked one.
    let list = lab.lbctl(&["backend", "list", "--vip", "web6"]);
    assert!(list.contains("no check"), "{list}");
    // A check set from the CLI.
    lab.lbctl(&[
        "vip",
        "health",
        "web6",
        "--check",
        "tcp",
        "--inter-ms",
        "200",
    ]);
    let web6 = format!("[{}]:{BACKEND_PORT}", lb_lab::backend_addr6(0));
    wait_until(Duration::from_secs(5), || {
        let v: serde_json::Value = serde_json::from_str(
            &lab.lbctl(&["backend", "show", "--vip", "web6", &web6, "--json"]),
        )
        .unwrap_or_default();
        v["health"]["checks"].as_u64() > Some(0)
    })
    .expect("web6 gets checked");
    assert!(!lab
        .lbctl(&["backend", "list", "--vip", "web6"])
        .contains("no check"));
}

#[test]
fn a_drain_keeps_the_counter_series_and_moves_the_state_gauge() {
    let lab = RunningLab::start(2);
    assert_eq!(failures(&lab, 10), 0);
    let drained = format!("{}:{BACKEND_PORT}", backend_addr(1));
    let series = |page: &str| -> Vec<String> {
        page.lines()
            .filter(|l| l.starts_with("lb_backend_new_flows_total{vip=\"web\""))
            .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
            .collect()
    };
    let before = series(&tests::lab::metrics_page(&lab.topo.lb));
    lab.lbctl(&["backend", "drain", "--vip", "web", &drained]);
    let page = tests::lab::metrics_page(&lab.topo.lb);
    assert_eq!(series(&page), before, "a state change started new series");
    assert!(!before.iter().any(|s| s.contains("state=")), "{before:?}");
    let gauge = |state: &str, v: u8| {
        format!("lb_backend_state{{vip=\"web\",backend=\"{drained}\",state=\"{state}\"}} {v}")
    };
    assert!(page.contains(&gauge("active", 0)), "{page}");
    assert!(
        page.contains(&gauge("draining", 1)) || page.contains(&gauge("drained", 1)),
        "{page}"
    );
}

#[test]
fn apply_of_a_thousand_backends_is_one_ring_rebuild_and_plan_lists_only_what_moves() {
    let lab = RunningLab::start(1);
    let mut text = "[[vip]]\nname = \"bulk\"\naddr = \"10.200.0.50\"\nport = 80\nproto = \"tcp\"\n"
        .to_string();
    for i in 0..1000u32 {
        text += &format!(
            "[[vip.backend]]\naddr = \"10.210.{}.{}\"\nport = 8080\n",
            i / 250,
            i % 250 + 1
        );
    }
    let file = lb_lab::TempFile::new(&format!("{}-bulk.toml", lab.instance), &text).expect("file");
    let path = file.path().display().to_string();
    let preview = lab.lbctl(&["apply", "-f", &path, "--dry-run"]);
    assert!(
        preview.contains("would apply") && preview.contains("bulk") && preview.contains("added"),
        "{preview}"
    );
    assert!(
        !lab.lbctl(&["vip", "list"]).contains("bulk"),
        "a dry run applied"
    );
    let changes = |lab: &RunningLab| lab.stats()["changes"].as_u64().expect("changes");
    let before = changes(&lab);
    let started = Instant::now();
    let done = lab.lbctl(&["apply", "-f", &path]);
    let took = started.elapsed();
    assert!(done.contains("applied"), "{done}");
    assert_eq!(changes(&lab) - before, 1, "one ring rebuild for the batch");
    assert_eq!(backends(&lab, "bulk").len(), 1000);
    assert_eq!(
        backends(&lab, "web").len(),
        1,
        "apply without --prune leaves other VIPs"
    );
    eprintln!("apply -f of 1,000 backends: {took:?}");
    let plan = lab.lbctl(&["plan", "--vip", "bulk", "remove", "10.210.0.1:8080"]);
    let lines = plan.lines().count();
    assert!(lines < 1000, "{lines} lines: plan lists every backend");
    assert!(plan.contains("--all lists them"), "{plan}");
}

#[test]
fn trace_shows_the_packets_of_a_request_through_the_vip_and_writes_them_as_pcap() {
    let lab = RunningLab::start(2);
    wait_until(Duration::from_secs(5), || {
        lab.web_state(0) == "active" && lab.web_state(1) == "active"
    })
    .expect("web's backends pass their checks");
    let pcap = std::env::temp_dir().join(format!("{}.pcap", lab.instance));
    let _pcap = lb_lab::TempFile::adopt(pcap.clone());
    let socket = lab.socket.clone();
    let path = pcap.display().to_string();
    let tracer = std::thread::spawn(move || {
        let args = [
            "trace",
            "--vip",
            "web",
            "--count",
            "6",
            "--seconds",
            "10",
            "--pcap",
            &path,
        ];
        lbctl_try(&socket, &args)
    });
    // Requests until the trace has its six packets (bounded by the trace's own 10 s).
    let start = Instant::now();
    while !tracer.is_finished() && start.elapsed() < Duration::from_secs(12) {
        let _ = lab.topo.as_client(|| lb_lab::http_get(vip(), "/"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out, err) = tracer.join().expect("tracer thread");
    assert!(ok, "lbctl trace failed: {err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("[web]")).collect();
    assert_eq!(lines.len(), 6, "{out}");
    let from_client = format!("{}:", lb_lab::CLIENT);
    let to_vip = format!("> {VIP}:{VIP_PORT} tcp");
    let syn = lines
        .iter()
        .find(|l| l.contains(&from_client) && l.contains(&to_vip) && l.contains(" S "))
        .unwrap_or_else(|| panic!("a SYN from the client to the VIP: {out}"));
    assert!(syn.contains("fwd_nat -> "), "{syn}");
    let backend_port = format!(":{BACKEND_PORT} [web]");
    assert!(syn.contains(&backend_port), "sent to a backend: {syn}");
    assert!(out.contains("6 packets sampled"), "{out}");
    let bytes = std::fs::read(&pcap).expect("pcap file");
    assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    assert_eq!(
        u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    // Six records, each a 16-byte header and its bytes; the first is an IPv4 frame.
    let mut at = 24;
    for _ in 0..6 {
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        assert_eq!(&bytes[at + 16 + 12..at + 16 + 14], &[0x08, 0x00]);
        at += 16 + incl;
    }
    assert_eq!(at, bytes.len(), "six records and nothing else");
}
