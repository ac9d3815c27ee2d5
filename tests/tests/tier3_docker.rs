//! Tier 3: the `docker` provider against podman's Docker-compatible API (runc; the image
//! `cargo xtask` imports, `lb-backend` inside). Containers serve through the VIP, are adopted
//! from the engine after lbd is killed, replaced when removed under lbd, scaled out under load
//! and back in by draining with no failed request; a missing image or an unreachable engine is
//! a clear error that leaves other pools alone.
use std::{collections::BTreeSet, net::SocketAddr, rc::Rc, time::Duration};

use lb_lab::{engines::Podman, Load, PoolEngine, PoolLab, VIP, VIP_PORT};
use tests::lab::{PoolRunning, RunningLab};

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, VIP_PORT))
}

/// Removes the instance's containers when dropped; made before the lab, so it acts after lbd
/// has stopped.
struct Containers(Rc<Podman>, String);

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.1.is_empty() {
            self.0.purge(&self.1);
        }
    }
}

fn engine(podman: &Podman, image: &str) -> PoolEngine {
    PoolEngine::Docker {
        socket: podman.socket.clone(),
        image: image.into(),
    }
}

#[test]
fn a_docker_pool_serves_survives_lbd_replaces_and_scales_with_no_failed_request() {
    let podman = Rc::new(Podman::start().expect("podman's API service"));
    let mut purge = Containers(podman.clone(), String::new());
    let mut lab = PoolRunning::start(&PoolLab {
        engine: engine(&podman, "xlb-backend:debug"),
        cooldowns_s: (2, 2),
        ..PoolLab::default()
    });
    purge.1 = lab.instance.clone();
    let p = lab.wait_for(Duration::from_secs(20), "2 containers serving", |p| {
        PoolRunning::active(p).len() == 2
    });
    for v in &p.vms {
        let route = lab.topo.lb.route_dev(v.backend.ip()).expect("a route");
        assert!(route.starts_with("xd"), "{}: routes via {route}", v.name);
        let ms = v.serving_after_ms.expect("create to serving");
        assert!(ms < 10_000, "{}: {ms} ms", v.name);
    }
    let (seen, failed) = lab.burst(20);
    assert_eq!(failed, 0);
    let names: BTreeSet<String> = p.vms.iter().map(|v| v.name.clone()).collect();
    assert_eq!(seen, names, "X-Backend names each container");
    let before = podman.containers(&lab.instance);
    assert_eq!(before.len(), 2, "{before:?}");

    // lbd killed and restarted: the same containers, adopted from their labels.
    RunningLab::kill_and_restart_lbd(&mut lab.topo.lb, &mut lab.lbd, &lab.config, &lab.socket);
    let p = lab.wait_for(Duration::from_secs(20), "the 2 containers adopted", |p| {
        PoolRunning::active(p).len() == 2
    });
    assert!(p.events.iter().any(|e| e.what.starts_with("adopted 2 VMs")));
    assert_eq!(
        podman.containers(&lab.instance),
        before,
        "no duplicate, none leaked"
    );
    assert_eq!(lab.burst(10).1, 0);

    // A container removed under lbd is replaced.
    let victim = format!("xlb-{}-web-1", lab.instance);
    let out = podman
        .cli(&["rm", "--force", &victim])
        .output()
        .expect("podman");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.wait_for(
        Duration::from_secs(20),
        "the removed container replaced",
        |p| {
            p.decisions.get("replace").copied().unwrap_or(0) >= 1
                && PoolRunning::active(p).len() == 2
        },
    );

    // 2 ms of CPU per request against 0.2-core containers at a 50% target: 200 requests/s
    // needs 4; then light load lets it drain back to 2.
    let load = Load::start(&lab.topo.client, vip(), 200, 16).expect("load");
    lab.wait_for(Duration::from_secs(40), "scale out to 4", |p| {
        PoolRunning::active(p).len() >= 4
    });
    lab.scale_in_to_two(load);
    assert_eq!(
        podman.containers(&lab.instance).len(),
        2,
        "drained ones removed"
    );
}

#[test]
fn a_missing_image_or_an_unreachable_engine_fails_its_pool_alone() {
    let podman = Rc::new(Podman::start().expect("podman's API service"));
    let mut purge = Containers(podman.clone(), String::new());
    let pool = |name: &str, addr: &str, net: &str, docker: String| {
        format!(
            "\n[[vip]]\nname = {name:?}\naddr = {addr:?}\nport = 80\nproto = \"tcp\"\n\
             [vip.health]\nkind = \"tcp\"\ninter_ms = 200\nrise = 1\n\
             [vip.pool]\nmin = 1\nmax = 1\nnetwork = {net:?}\nport = 8080\n\
             provider = \"docker\"\n[vip.pool.docker]\n{docker}"
        )
    };
    let socket = podman.socket.display().to_string();
    let lab = PoolRunning::start_with(&PoolLab::default(), |text| {
        text + &pool(
            "noimage",
            "10.200.0.63",
            "10.207.0.0/24",
            format!("socket = {socket:?}\nimage = \"xlb-no-such-image:1\"\n"),
        ) + &pool(
            "nosocket",
            "10.200.0.64",
            "10.208.0.0/24",
            "socket = \"/nonexistent/docker.sock\"\nimage = \"xlb-backend:debug\"\n".into(),
        )
    });
    purge.1 = lab.instance.clone();
    lab.wait_for(Duration::from_secs(10), "the netns pool serving", |p| {
        PoolRunning::active(p).len() == 2
    });
    let missing = lab.wait_for_error("noimage", "image_missing");
    let last = missing.last_error.expect("the last error").what;
    assert!(
        last.contains("xlb-no-such-image:1"),
        "names the image: {last}"
    );
    let unreachable = lab.wait_for_error("nosocket", "engine_unreachable");
    assert!(unreachable.vms.is_empty());
    let web = lab.pool_named("web");
    assert!(web.errors.is_empty(), "{:?}", web.errors);
    assert_eq!(lab.burst(10).1, 0, "the netns pool serves on");
    assert!(
        podman.containers(&lab.instance).is_empty(),
        "nothing half-made"
    );
}
