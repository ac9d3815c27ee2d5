//! Tier 2: sampling for `lbctl trace`, at both hooks. While a trace runs, a packet the filter
//! lets through goes to the ring buffer as it arrived, with the reason counted and where it was
//! sent; one it does not, or one sent while nobody traces, leaves nothing.
use aya::maps::{MapData, RingBuf};
use lb_common::{addr_words, xdp_action, Reason, TraceRecord, TRACE_SNAP};
use lb_userspace::model::config::Hook;
use lb_userspace::model::{config::Proto, trace::TraceQuery};
use tests::hook_tests;
use tests::{
    harness::{backend, Balancer, Harness, CLIENT, VIP},
    packet::{Frame, SYN},
};

/// Every record in the ring now.
fn drain(ring: &mut RingBuf<MapData>) -> Vec<TraceRecord> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        let size = std::mem::size_of::<TraceRecord>();
        out.push(bytemuck::pod_read_unaligned(&item[..size]));
    }
    out
}

fn query(vip: Option<&str>, port: Option<u16>) -> TraceQuery {
    TraceQuery {
        vip: vip.map(Into::into),
        port,
        ..TraceQuery::default()
    }
}

/// A 160-byte SYN to the VIP (longer than a record keeps).
fn syn() -> Vec<u8> {
    let mut f = Frame::tcp(CLIENT, 40000, VIP, 80, SYN);
    f.payload = vec![7; 160 - 54];
    f.bytes()
}

fn start(lb: &mut Balancer, q: &TraceQuery) -> RingBuf<MapData> {
    lb.ctl.start_trace(q).expect("start a trace")
}

hook_tests! {
    fn a_traced_packet_is_recorded_as_it_arrived_with_its_reason_and_backend() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut ring = start(lb, &query(Some("web"), None));
            let frame = syn();
            assert_eq!(lb.run(&frame).0, xdp_action::REDIRECT);
            let records = drain(&mut ring);
            assert_eq!(records.len(), 1, "one packet, one record");
            let r = records[0];
            assert_eq!(r.reason, Reason::FwdNat as u8);
            assert_eq!(r.hook, u8::from(lb.hook == Hook::Tc));
            assert_eq!(r.len as usize, frame.len());
            assert_eq!(usize::from(r.captured), TRACE_SNAP);
            assert_eq!(&r.bytes[..], &frame[..TRACE_SNAP], "as it arrived");
            assert_eq!(r.out_addr, addr_words(backend(0).into()), "sent to the backend");
            assert_eq!(u16::from_be(r.out_port), 8080);
            lb.ctl.stop_trace(ring).expect("stop");
        });
    }
}

hook_tests! {
    fn a_packet_the_filter_excludes_and_one_sent_while_nobody_traces_leave_nothing() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut ring = start(lb, &query(None, Some(443)));
            assert_eq!(lb.run(&syn()).0, xdp_action::REDIRECT);
            assert!(drain(&mut ring).is_empty(), "port 443 only");
            lb.ctl.stop_trace(ring).expect("stop");
            assert_eq!(lb.run(&syn()).0, xdp_action::REDIRECT);
            let mut ring = start(lb, &query(None, None));
            assert!(drain(&mut ring).is_empty(), "nothing sampled while off");
            let not_ours = Frame::tcp(CLIENT, 40000, std::net::Ipv4Addr::new(10, 200, 0, 99), 80, SYN);
            assert_eq!(lb.run(&not_ours.bytes()).0, xdp_action::PASS);
            let records = drain(&mut ring);
            assert_eq!(records.len(), 1, "every packet when unfiltered");
            assert_eq!(records[0].reason, Reason::PassNotVip as u8);
            assert_eq!(records[0].out_addr, [0; 4], "passed: sent nowhere");
            lb.ctl.stop_trace(ring).expect("stop");
        });
    }
}

hook_tests! {
    fn one_trace_at_a_time_and_sampling_one_in_n() {
        Harness::new().run(|lb| {
            lb.add_vip("web", Proto::Tcp, 80, &[(0, 8080, 1)]);
            let mut ring = start(lb, &TraceQuery { every: Some(4), ..query(None, None) });
            assert!(lb.ctl.start_trace(&query(None, None)).is_err(), "a second trace is refused");
            for sport in 0..16 {
                lb.run(&Frame::tcp(CLIENT, 41000 + sport, VIP, 80, SYN).bytes());
            }
            assert_eq!(drain(&mut ring).len(), 4, "one in four of 16");
            lb.ctl.stop_trace(ring).expect("stop");
            let e = lb.ctl.start_trace(&query(Some("nope"), None)).err().expect("unknown VIP");
            assert!(e.to_string().contains("vip"), "{e}");
        });
    }
}
