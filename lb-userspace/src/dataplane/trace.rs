//! Turning the data path's sampling for `lbctl trace` on and off, and lending out the ring
//! buffer it fills: one tracer at a time.
use aya::maps::{MapData, RingBuf};
use lb_common::TraceCtl;

use super::Dataplane;
use crate::sys::error::{fail, Context, Result};

impl Dataplane {
    /// Starts sampling as `ctl` says and hands out the ring buffer to read (emptied of
    /// records left from an earlier trace); fails while another trace runs.
    pub fn start_trace(&mut self, ctl: TraceCtl) -> Result<RingBuf<MapData>> {
        let mut ring = self
            .trace_ring
            .take()
            .ok_or_else(|| fail("trace", "another trace is running"))?;
        while ring.next().is_some() {}
        let on = TraceCtl { on: 1, ..ctl };
        if let Err(e) = self.trace_ctl.set(0, on, 0).context("starting the trace") {
            self.trace_ring = Some(ring);
            return Err(e);
        }
        Ok(ring)
    }

    /// Stops sampling and takes the ring buffer back.
    pub fn stop_trace(&mut self, ring: RingBuf<MapData>) -> Result<()> {
        self.trace_ring = Some(ring);
        self.trace_ctl
            .set(0, TraceCtl::default(), 0)
            .context("stopping the trace")
    }
}
