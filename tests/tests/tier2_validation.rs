//! Tier 2: the API's way into the desired state (the controller) takes the same whole-state
//! validation as a config file: each bad VIP and backend is refused naming the field, a
//! duplicate service is a conflict, and nothing of a refused change reaches the data path.
use lb_common::xdp_action;
use lb_userspace::model::{
    config::{Config, VipConfig},
    wire::BackendChange,
    ErrorKind,
};
use tests::{
    harness::{backend, Harness, CLIENT, VIP},
    packet::{Frame, SYN},
};

fn vip(extra: &str) -> VipConfig {
    let text = format!(
        "[[vip]]\nname = \"api\"\naddr = \"10.200.0.11\"\nport = 443\nproto = \"tcp\"\n{extra}"
    );
    Config::from_toml(&text).expect("toml").vips.remove(0)
}

#[test]
fn bad_vips_and_backends_through_the_api_are_refused_naming_the_field() {
    Harness::new().run(|lb| {
        lb.add_vip(
            "web",
            lb_userspace::model::config::Proto::Tcp,
            80,
            &[(0, 8080, 1)],
        );
        let cases: [(VipConfig, &str); 8] = [
            (vip("").with_port(0), "vip.port"),
            (vip("").with_addr("255.255.255.255"), "vip.addr"),
            (vip("").with_addr("127.0.0.1"), "vip.addr"),
            (
                vip("[[vip.backend]]\naddr = \"10.200.10.2\"\nport = 0\n"),
                "vip.backend[0].port",
            ),
            (
                vip("[[vip.backend]]\naddr = \"10.200.10.2\"\nport = 80\nweight = 70000\n"),
                "vip.backend[0].weight",
            ),
            (
                vip("[vip.health]\ninter_ms = 100\ntimeout_ms = 500\n"),
                "vip.health.timeout_ms",
            ),
            (
                vip("[vip.health]\nkind = \"http\"\nexpect_status = 999\n"),
                "vip.health.expect_status",
            ),
            // A VIP on web's backend 10.200.10.2:8080.
            (
                vip("").with_addr(&backend(0).to_string()).with_port(8080),
                "vip[1].addr",
            ),
        ];
        for (cfg, field) in cases {
            let e = lb
                .ctl
                .add_vip(cfg.clone())
                .expect_err("a bad VIP was accepted");
            assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
            assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{e} does not name {field}"
            );
        }
        let bad_port = BackendChange {
            vip: "web".into(),
            addr: backend(1).into(),
            port: 0,
            weight: None,
        };
        let e = lb.ctl.add_backend(&bad_port).expect_err("port 0");
        assert!(e.to_string().starts_with("backend.port:"), "{e}");
        assert_eq!(lb.ctl.vips().len(), 1, "a refused VIP was kept");
        assert_eq!(
            lb.ctl.vips()[0].backends.len(),
            1,
            "a refused backend was kept"
        );
        let (action, _) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes());
        assert_eq!(action, xdp_action::REDIRECT, "web stopped forwarding");
    });
}

#[test]
fn a_second_vip_on_a_served_service_is_a_conflict_and_the_first_keeps_forwarding() {
    Harness::new().run(|lb| {
        lb.add_vip(
            "web",
            lb_userspace::model::config::Proto::Tcp,
            80,
            &[(0, 8080, 1)],
        );
        let dup = vip("")
            .with_addr(&VIP.to_string())
            .with_port(80)
            .named("web2");
        let e = lb
            .ctl
            .add_vip(dup)
            .expect_err("a duplicate service was accepted");
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        assert!(e.to_string().contains("\"web\""), "{e}");
        assert!(lb.ctl.remove_vip("web2").is_err(), "web2 exists");
        let (action, out) = lb.run(&Frame::tcp(CLIENT, 40000, VIP, 80, SYN).bytes());
        assert_eq!(action, xdp_action::REDIRECT, "web stopped forwarding");
        assert_eq!(tests::packet::parse_and_verify(&out).dst, backend(0));
    });
}

#[test]
fn a_long_name_through_the_api_is_not_echoed_back_whole() {
    Harness::new().run(|lb| {
        let e = lb
            .ctl
            .add_vip(vip("").named(&"n".repeat(10_000)))
            .expect_err("a 10 KB name");
        assert!(e.to_string().len() < 200, "{} bytes", e.to_string().len());
    });
}

/// Field edits of a VIP for the cases above.
trait Edit {
    fn with_port(self, port: u16) -> Self;
    fn with_addr(self, addr: &str) -> Self;
    fn named(self, name: &str) -> Self;
}

impl Edit for VipConfig {
    fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    fn with_addr(mut self, addr: &str) -> Self {
        self.addr = addr.parse().expect("address");
        self
    }
    fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
}
