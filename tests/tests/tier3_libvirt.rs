//! Tier 3: the `libvirt` provider with a real libvirtd and QEMU (software emulation: this
//! machine's KVM cannot boot stock guests). Its VMs boot Debian's cloud kernel and the
//! initramfs `cargo xtask` builds (`lb-backend` inside), serve through the VIP, are adopted
//! from libvirt after lbd is killed, replaced when destroyed, drained and undefined; a missing
//! image or an unreachable hypervisor is a clear error that leaves other pools alone.
use std::{collections::BTreeSet, net::SocketAddr, sync::atomic::Ordering, time::Duration};

use lb_lab::{
    engines::{domains, purge_domains, Libvirt},
    Load, PoolEngine, PoolLab, VIP, VIP_PORT,
};
use lb_userspace::model::wire::PoolView;
use tests::lab::{PoolRunning, RunningLab};

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, VIP_PORT))
}

/// Removes the instance's domains when dropped (lbd deletes its VMs on a clean stop; a
/// failed test may not get there). Made before the lab, so it acts after lbd has stopped.
struct Domains(String);

impl Drop for Domains {
    fn drop(&mut self) {
        purge_domains(&self.0);
    }
}

/// Every VM's backend address routes through its own tap in lbd's namespace (not the
/// machine's default route).
fn check_taps(lab: &PoolRunning, p: &PoolView) {
    for v in &p.vms {
        let route = lab.topo.lb.route_dev(v.backend.ip()).expect("a route");
        assert!(route.starts_with("xl"), "{}: routes via {route}", v.name);
    }
}

#[test]
fn a_libvirt_pool_boots_serves_survives_lbd_and_replaces_and_drains_its_vms() {
    let _engine = Libvirt::start().expect("libvirtd");
    let mut purge = Domains(String::new());
    // Two hypervisor URIs, the first one unreachable: placement goes to the one that answers.
    let mut lab = PoolRunning::start_with(
        &PoolLab::fixed(PoolEngine::Libvirt {
            kernel: tests::guest_file("vmlinuz"),
            initrd: tests::guest_file("initramfs-debug.cpio"),
        }),
        |text| {
            text.replacen(
                "[vip.pool.libvirt]\n",
                "[vip.pool.libvirt]\nuris = [\"qemu+unix:///system?socket=/nonexistent/xlb-libvirt-sock\", \"qemu:///system\"]\n",
                1,
            )
        },
    );
    purge.0 = lab.instance.clone();
    // Boot: two TCG guests at once on this machine's two cores.
    let p = lab.wait_for(Duration::from_secs(90), "2 VMs serving", |p| {
        PoolRunning::active(p).len() == 2
    });
    check_taps(&lab, &p);
    assert!(
        p.vms
            .iter()
            .all(|v| v.host.as_deref() == Some("qemu:///system")),
        "each VM is placed on the hypervisor that answers, and shown there: {:?}",
        p.vms
    );
    assert!(p.vms.iter().all(|v| v.serving_after_ms.is_some()));
    let (seen, failed) = lab.burst(20);
    assert_eq!(failed, 0);
    let names: BTreeSet<String> = p.vms.iter().map(|v| v.name.clone()).collect();
    assert_eq!(seen, names, "X-Backend names each VM");
    let before = domains(&lab.instance);
    assert_eq!(before.len(), 2, "{before:?}");

    // lbd killed and restarted: the same domains, adopted from libvirt's metadata.
    RunningLab::kill_and_restart_lbd(&mut lab.topo.lb, &mut lab.lbd, &lab.config, &lab.socket);
    let p = lab.wait_for(Duration::from_secs(20), "the 2 VMs adopted", |p| {
        PoolRunning::active(p).len() == 2
    });
    assert_eq!(domains(&lab.instance), before, "no duplicate, none leaked");
    assert!(p.events.iter().any(|e| e.what.starts_with("adopted 2 VMs")));
    assert_eq!(lab.burst(10).1, 0, "serving after the restart");

    // A domain destroyed under lbd is replaced.
    let victim = format!("xlb-{}-web-1", lab.instance);
    let out = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "destroy", &victim])
        .output()
        .expect("virsh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = lab.wait_for(Duration::from_secs(90), "the destroyed VM replaced", |p| {
        p.decisions.get("replace").copied().unwrap_or(0) >= 1 && PoolRunning::active(p).len() == 2
    });
    check_taps(&lab, &p);

    // Scale-in by hand: drained under load with no failed request, then undefined (min 2
    // then makes a new web-0: a new domain of the same name).
    let uuid = |name: &str| {
        std::process::Command::new("virsh")
            .args(["-c", "qemu:///system", "domuuid", name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let web0 = format!("xlb-{}-web-0", lab.instance);
    let first = uuid(&web0).expect("web-0's domain");
    let load = Load::start(&lab.topo.client, vip(), 20, 4).expect("load");
    std::thread::sleep(Duration::from_secs(1));
    lab.lbctl(&["vm", "delete", "--pool", "web", "web-0"]);
    let p = lab.wait_for(Duration::from_secs(60), "web-0 drained and deleted", |p| {
        p.events
            .iter()
            .any(|e| e.what == "web-0 drained; deleting it")
    });
    let failed = load.tally.failed.load(Ordering::Relaxed);
    let ok = load.tally.ok.load(Ordering::Relaxed);
    drop(load);
    assert_ne!(uuid(&web0), Some(first), "the drained domain was undefined");
    assert_eq!(failed, 0, "requests failed while draining ({ok} answered)");
    assert!(ok > 10, "the load ran: {ok}: {:?}", p.events);
}

#[test]
fn a_missing_image_or_an_unreachable_hypervisor_fails_its_pool_alone() {
    tests::require_root();
    let mut purge = Domains(String::new());
    let kernel = tests::guest_file("vmlinuz");
    let pool = |name: &str, addr: &str, net: &str, libvirt: String| {
        format!(
            "\n[[vip]]\nname = {name:?}\naddr = {addr:?}\nport = 80\nproto = \"tcp\"\n\
             [vip.health]\nkind = \"tcp\"\ninter_ms = 200\nrise = 1\n\
             [vip.pool]\nmin = 1\nmax = 1\nnetwork = {net:?}\nport = 8080\n{libvirt}"
        )
    };
    let lab = PoolRunning::start_with(&PoolLab::default(), |text| {
        text + &pool(
            "vmimg",
            "10.200.0.61",
            "10.205.0.0/24",
            "provider = \"libvirt\"\n[vip.pool.libvirt]\ndomain_type = \"qemu\"\n\
             kernel = \"/nonexistent/vmlinuz\"\ninitrd = \"/nonexistent/initrd\"\n"
                .to_string(),
        ) + &pool(
            "vmuri",
            "10.200.0.62",
            "10.206.0.0/24",
            format!(
                "provider = \"libvirt\"\n[vip.pool.libvirt]\ndomain_type = \"qemu\"\n\
                 uris = [\"qemu+unix:///system?socket=/nonexistent/libvirt-sock\"]\n\
                 kernel = {:?}\ninitrd = {:?}\n",
                kernel.display().to_string(),
                kernel.display().to_string()
            ),
        )
    });
    purge.0 = lab.instance.clone();
    let web = lab.wait_for(Duration::from_secs(10), "the netns pool serving", |p| {
        PoolRunning::active(p).len() == 2
    });
    assert_eq!(web.vip, "web");
    let img = lab.wait_for_error("vmimg", "image_missing");
    let last = img.last_error.expect("the last error").what;
    assert!(
        last.contains("/nonexistent/vmlinuz"),
        "names the file: {last}"
    );
    let uri = lab.wait_for_error("vmuri", "engine_unreachable");
    assert!(uri.vms.is_empty());
    let shown = lab.lbctl(&["vm", "list", "--pool", "vmuri"]);
    assert!(shown.contains("engine_unreachable"), "{shown}");
    // Errors back off: not one a look.
    std::thread::sleep(Duration::from_secs(2));
    let again = lab.pool_named("vmimg").errors["image_missing"];
    assert!(again <= 2, "retried at every look: {again}");
    let page = tests::lab::metrics_page(&lab.topo.lb);
    assert!(
        page.contains("lb_pool_provider_errors_total{vip=\"vmimg\",kind=\"image_missing\"}"),
        "{page}"
    );
    // The other pool is untouched: serving, no error.
    let web = lab.pool_named("web");
    assert!(web.errors.is_empty(), "{:?}", web.errors);
    assert_eq!(lab.burst(10).1, 0);
}
