//! Tier 3: the daemon driven in-process, the way `lbd` runs it (`lb_userspace::daemon`), in the
//! balancer namespace of a lab: it serves its VIPs and its API, and stops cleanly.
use std::{net::SocketAddr, time::Duration};

use lb_lab::{
    backend_name, netns::unique_name, state_file, tcp_hello, wait_until, TempFile, Topology, VIP,
    VIP_PORT,
};
use lb_userspace::{
    daemon::{self, Daemon},
    face::client,
    sys,
    workers::reload::Source,
};

#[test]
fn a_daemon_started_in_process_serves_its_vips_and_stops_cleanly() {
    tests::require_root();
    let mut topo = Topology::build(2).expect("build namespaces");
    topo.start_backends(&tests::bin("lb-backend"), &tests::bin("lb-decap"))
        .expect("start backends");
    let instance = unique_name("inproc");
    let socket = std::env::temp_dir().join(format!("{instance}.sock"));
    let _state = TempFile::adopt(state_file(&socket));
    let config = TempFile::new(
        &format!("{instance}.toml"),
        &topo.config_toml(&instance, &socket),
    )
    .expect("write config");
    let source = Source {
        path: config.path().to_path_buf(),
        ifaces: Vec::new(),
        socket: None,
    };
    let startup = daemon::desired_state(&source, false).expect("lab config");
    let pins = daemon::pin_dir(&instance);
    let lb = topo.lb.name().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The daemon's runtime lives on a thread inside the balancer namespace.
    let runner = std::thread::spawn(move || -> lb_userspace::model::Result<()> {
        sys::netns::enter_here(&lb)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| lb_userspace::model::Error::internal("runtime", e))?;
        runtime.block_on(async {
            let d = Daemon::start(startup).await?;
            let _ = stopped.await;
            d.stop(false).await
        })
    });
    wait_until(Duration::from_secs(10), || {
        client::request(&socket, "GET", "/v1/status", None).is_ok()
    })
    .expect("the API answers");
    let status = client::call(&socket, "GET", "/v1/status", None).expect("status");
    assert_eq!(status["instance"], instance.as_str(), "{status}");
    assert_eq!(status["vips"], 5, "{status}");
    let vip = SocketAddr::from((VIP, VIP_PORT));
    let names: Vec<String> = topo
        .as_client(move || (0..20).map(|_| tcp_hello(vip).expect("hello")).collect())
        .expect("client namespace");
    for i in 0..2 {
        assert!(names.contains(&backend_name(i)), "{names:?}");
    }
    assert!(pins.exists(), "pinned while running");
    stop.send(()).expect("daemon still running");
    runner.join().expect("daemon thread").expect("daemon ran");
    assert!(!pins.exists(), "a clean stop unpins {}", pins.display());
    assert!(!socket.exists(), "a clean stop removes the socket");
}
