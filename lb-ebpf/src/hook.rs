//! What differs between the two hooks the pipeline runs at, behind [`Hook`]: native XDP (a
//! frame before the stack, physical NICs) and tc (a socket buffer, virtual interfaces, where
//! the kernel's checksum state must be kept: a locally sent packet carries a partial
//! checksum that only the kernel's helpers update correctly). The stages are written once
//! over it: head and tail adjustment, transport checksum updates, redirects, tail calls, the
//! action a verdict implies.
use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR,
        TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT,
    },
    helpers::generated,
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use lb_common::{xdp_action as action, Reason, TRACE_SNAP};
use lb_ebpf::packet::{self, Frame};

use crate::{
    csum,
    maps::{LB_PROGS, LB_TC_PROGS, LB_TX_PORTS},
};

/// A transport checksum change: the words of one address (1 for IPv4, 4 for IPv6) and a port,
/// from old to new, raw wire values.
pub struct L4Change<'a> {
    /// Offset of the checksum field in the packet.
    pub check_off: usize,
    /// The transport is UDP: a zero checksum over IPv4 means none and stays zero, and a
    /// checksum that comes out zero is sent as 0xffff.
    pub udp: bool,
    /// The packet is IPv4.
    pub v4: bool,
    /// The address words before and after.
    pub addr: (&'a [u32; 4], &'a [u32; 4]),
    /// The port before and after.
    pub port: (u16, u16),
}

/// A hook the pipeline runs at.
pub trait Hook: EbpfContext + Frame {
    /// Makes room for `len` bytes between the Ethernet header and the IP header (whose
    /// Ethernet header the caller writes again); `encap` says the room is an outer IPv4
    /// (`Some(true)`) or IPv6 header (tc marks an aggregate encapsulated, for segmentation).
    fn grow(&self, len: usize, encap: Option<bool>) -> Result<(), Reason>;
    /// Removes the `len` bytes after the Ethernet header (undoing [`Hook::grow`]).
    fn shrink(&self, len: usize) -> Result<(), Reason>;
    /// Cuts (or extends) the packet to `len` bytes.
    fn resize(&self, len: usize) -> Result<(), Reason>;
    /// Bytes in the packet, all of them.
    fn total_len(&self) -> usize;
    /// The interface the packet arrived on.
    fn ifindex(&self) -> u32;
    /// The packet is a segmentation-offload aggregate (tc only): it is cut to the egress MTU
    /// on its way out, so its length says nothing about the MTU.
    fn aggregate(&self) -> bool;
    /// `tot_len` to give the route lookup: the IP length to check against the route's MTU
    /// (XDP), or 0 so the kernel checks the buffer itself, aggregates included (tc).
    fn fib_len(&self, ip_len: u16) -> u16;
    /// Updates the transport checksum for `c`.
    fn fix_l4(&self, c: &L4Change) -> Result<(), Reason>;
    /// Redirects the packet out of `ifindex`; false if the hook cannot.
    fn redirect(&self, ifindex: u32) -> bool;
    /// Tail-calls slot `slot` of this hook's program array (returns only if it is empty).
    fn tail_call(&self, slot: u32);
    /// The hook's return code for `reason` (sending an answer back out of the receiving
    /// interface where the reason says so).
    fn verdict(&self, reason: Reason) -> i32;
    /// Copies the packet's first `len` bytes (1 to `TRACE_SNAP`) to `dst`, which has room
    /// for them; false if the packet is shorter.
    fn copy_out(&self, dst: *mut u8, len: usize) -> bool;
    /// 0 for XDP, 1 for tc (as `TraceRecord::hook` says).
    fn hook_id(&self) -> u8;
}

impl Hook for XdpContext {
    #[inline(always)]
    fn grow(&self, len: usize, _encap: Option<bool>) -> Result<(), Reason> {
        // SAFETY: `self.ctx` is this program's context; the helper checks the headroom and every
        // packet pointer is derived again (through `packet`) after it.
        if unsafe { generated::bpf_xdp_adjust_head(self.ctx, -(len as i32)) } != 0 {
            return Err(Reason::DropNoHeadroom);
        }
        Ok(())
    }

    #[inline(always)]
    fn shrink(&self, len: usize) -> Result<(), Reason> {
        // SAFETY: as in `grow`.
        if unsafe { generated::bpf_xdp_adjust_head(self.ctx, len as i32) } != 0 {
            return Err(Reason::DropNoHeadroom);
        }
        Ok(())
    }

    #[inline(always)]
    fn resize(&self, len: usize) -> Result<(), Reason> {
        let delta = len as i32 - self.total_len() as i32;
        // SAFETY: as in `grow`; the helper checks the new length.
        if unsafe { generated::bpf_xdp_adjust_tail(self.ctx, delta) } != 0 {
            return Err(Reason::DropMalformed);
        }
        Ok(())
    }

    #[inline(always)]
    fn total_len(&self) -> usize {
        // SAFETY: this program's context. (From a helper: the verifier refuses arithmetic on
        // the frame's end.)
        unsafe { generated::bpf_xdp_get_buff_len(self.ctx) as usize }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ingress_ifindex() as u32
    }

    #[inline(always)]
    fn aggregate(&self) -> bool {
        false
    }

    #[inline(always)]
    fn fib_len(&self, ip_len: u16) -> u16 {
        ip_len
    }

    #[inline(always)]
    fn fix_l4(&self, c: &L4Change) -> Result<(), Reason> {
        let check: u16 = packet::load(self, c.check_off)?;
        // A zero UDP checksum over IPv4 means "none" and stays zero.
        if c.udp && c.v4 && check == 0 {
            return Ok(());
        }
        let (old, new) = c.addr;
        let mut sum = csum::replace4(check, old[0], new[0]);
        if !c.v4 {
            for i in 1..4 {
                sum = csum::replace4(sum, old[i], new[i]);
            }
        }
        sum = csum::replace2(sum, c.port.0, c.port.1);
        if c.udp && sum == 0 {
            sum = 0xffff;
        }
        packet::store(self, c.check_off, sum)
    }

    #[inline(always)]
    fn redirect(&self, ifindex: u32) -> bool {
        matches!(
            LB_TX_PORTS.redirect(ifindex, u64::from(xdp_action::XDP_PASS)),
            Ok(a) if a == xdp_action::XDP_REDIRECT
        )
    }

    #[inline(always)]
    fn tail_call(&self, slot: u32) {
        // SAFETY: `self` is this program's context; on success the call does not return.
        let _ = unsafe { LB_PROGS.tail_call(self, slot) };
    }

    #[inline(always)]
    fn verdict(&self, reason: Reason) -> i32 {
        reason.action() as i32
    }

    #[inline(always)]
    fn copy_out(&self, dst: *mut u8, len: usize) -> bool {
        if len == 0 || len > TRACE_SNAP {
            return false;
        }
        // SAFETY: the helper checks `len` against the frame; the caller vouches for `dst`.
        unsafe { generated::bpf_xdp_load_bytes(self.ctx, 0, dst.cast(), len as u32) == 0 }
    }

    #[inline(always)]
    fn hook_id(&self) -> u8 {
        0
    }
}

/// The `__sk_buff` of a tc context.
#[inline(always)]
fn skb(ctx: &TcContext) -> *mut aya_ebpf::bindings::__sk_buff {
    ctx.skb.skb
}

impl Hook for TcContext {
    #[inline(always)]
    fn grow(&self, len: usize, encap: Option<bool>) -> Result<(), Reason> {
        use aya_ebpf::bindings::{BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6};
        // Only an aggregate is marked encapsulated (it is segmented on its way out, each
        // segment with its outer header): the mark would also stop `resize` on a packet
        // taken apart again for a too-big answer, which is never an aggregate.
        let flags = match encap {
            Some(true) if self.aggregate() => BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
            Some(false) if self.aggregate() => BPF_F_ADJ_ROOM_ENCAP_L3_IPV6,
            _ => 0,
        };
        // SAFETY: the helper takes this program's buffer and checks the room it makes.
        let rc = unsafe {
            generated::bpf_skb_adjust_room(
                skb(self),
                len as i32,
                BPF_ADJ_ROOM_MAC,
                u64::from(flags),
            )
        };
        if rc != 0 {
            return Err(Reason::DropNoHeadroom);
        }
        Ok(())
    }

    #[inline(always)]
    fn shrink(&self, len: usize) -> Result<(), Reason> {
        // SAFETY: as in `grow`.
        let rc = unsafe {
            generated::bpf_skb_adjust_room(skb(self), -(len as i32), BPF_ADJ_ROOM_MAC, 0)
        };
        if rc != 0 {
            return Err(Reason::DropNoHeadroom);
        }
        Ok(())
    }

    #[inline(always)]
    fn resize(&self, len: usize) -> Result<(), Reason> {
        // SAFETY: the helper takes this program's buffer and checks the length.
        if unsafe { generated::bpf_skb_change_tail(skb(self), len as u32, 0) } != 0 {
            return Err(Reason::DropMalformed);
        }
        Ok(())
    }

    #[inline(always)]
    fn total_len(&self) -> usize {
        self.len() as usize
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: reading a field of this program's context.
        unsafe { (*skb(self)).ifindex }
    }

    #[inline(always)]
    fn aggregate(&self) -> bool {
        // SAFETY: as above.
        unsafe { (*skb(self)).gso_size != 0 }
    }

    #[inline(always)]
    fn fib_len(&self, _ip_len: u16) -> u16 {
        0
    }

    #[inline(always)]
    fn fix_l4(&self, c: &L4Change) -> Result<(), Reason> {
        // The kernel knows whether the checksum is complete or partial (a locally sent
        // packet's): the helper updates either right. Addresses are in the pseudo header,
        // ports are not (a partial checksum leaves them to the device).
        let udp = if c.udp {
            u64::from(BPF_F_MARK_MANGLED_0)
        } else {
            0
        };
        let (old, new) = c.addr;
        let words = if c.v4 { 1 } else { 4 };
        for i in 0..words {
            if old[i] == new[i] {
                continue;
            }
            let flags = 4 | u64::from(BPF_F_PSEUDO_HDR) | udp;
            // SAFETY: the helper takes this program's buffer and checks the offset.
            let rc = unsafe {
                generated::bpf_l4_csum_replace(
                    skb(self),
                    c.check_off as u32,
                    u64::from(old[i]),
                    u64::from(new[i]),
                    flags,
                )
            };
            if rc != 0 {
                return Err(Reason::DropMalformed);
            }
        }
        if c.port.0 != c.port.1 {
            // SAFETY: as above.
            let rc = unsafe {
                generated::bpf_l4_csum_replace(
                    skb(self),
                    c.check_off as u32,
                    u64::from(c.port.0),
                    u64::from(c.port.1),
                    2 | udp,
                )
            };
            if rc != 0 {
                return Err(Reason::DropMalformed);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn redirect(&self, ifindex: u32) -> bool {
        // SAFETY: the helper only records where the buffer goes.
        unsafe { generated::bpf_redirect(ifindex, 0) == i64::from(TC_ACT_REDIRECT) }
    }

    #[inline(always)]
    fn tail_call(&self, slot: u32) {
        // SAFETY: `self` is this program's context; on success the call does not return.
        let _ = unsafe { LB_TC_PROGS.tail_call(self, slot) };
    }

    #[inline(always)]
    fn verdict(&self, reason: Reason) -> i32 {
        let code = match reason.action() {
            action::PASS => TC_ACT_OK,
            action::REDIRECT => TC_ACT_REDIRECT,
            // An answer goes back out of the interface it came in on.
            action::TX if self.redirect(self.ifindex()) => TC_ACT_REDIRECT,
            _ => TC_ACT_SHOT,
        };
        code as i32
    }

    #[inline(always)]
    fn copy_out(&self, dst: *mut u8, len: usize) -> bool {
        if len == 0 || len > TRACE_SNAP {
            return false;
        }
        // SAFETY: the helper checks `len` against the buffer; the caller vouches for `dst`.
        unsafe { generated::bpf_skb_load_bytes(skb(self).cast(), 0, dst.cast(), len as u32) == 0 }
    }

    #[inline(always)]
    fn hook_id(&self) -> u8 {
        1
    }
}
