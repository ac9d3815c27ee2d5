//! `lbctl trace` in the controller: the query's filters as the data path's `TraceCtl`, the
//! ring buffer lent out while the trace runs.
use aya::maps::{MapData, RingBuf};
use lb_common::{addr_words, TraceCtl};

use super::Controller;
use crate::model::{trace::TraceQuery, Error, Result};

impl Controller {
    /// Starts sampling what `q` asks for (checked); the ring buffer to read, until
    /// [`Controller::stop_trace`] takes it back.
    pub fn start_trace(&mut self, q: &TraceQuery) -> Result<RingBuf<MapData>> {
        let (_, _, every) = q.bounds()?;
        let (mut addr, mut port) = (q.addr, q.port);
        if let Some(name) = &q.vip {
            let vip = self
                .vips
                .iter()
                .find(|v| &v.cfg.name == name)
                .ok_or_else(|| {
                    Error::not_found("vip", format!("no VIP {}", crate::model::shown(name)))
                })?;
            addr = Some(vip.cfg.addr);
            port = Some(vip.cfg.port);
        }
        let ctl = TraceCtl {
            every,
            addr: addr.map_or([0; 4], addr_words),
            port: port.unwrap_or(0).to_be(),
            ..TraceCtl::default()
        };
        self.dp
            .start_trace(ctl)
            .map_err(|e| Error::busy("trace", e.cause))
    }

    /// Stops sampling; the data path is back to one array read per packet.
    pub fn stop_trace(&mut self, ring: RingBuf<MapData>) -> Result<()> {
        Ok(self.dp.stop_trace(ring)?)
    }
}
