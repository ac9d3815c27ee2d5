//! The flows the data path tracks, as `lbctl conn list` shows them: read from both flow tables
//! in batches, filtered by VIP, backend and client, bounded in number.
use std::{collections::HashMap, net::SocketAddr};

use lb_common::{words_addr, CONN_F_CLOSED, DIR_FORWARD, PROTO_UDP, TIME_UNIT_SHIFT};

use super::{Controller, Vip};
use crate::model::{
    config::Proto,
    shown,
    wire::{ConnList, ConnQuery, ConnView},
    Error, Result,
};

/// Flows a list shows unless asked otherwise, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// A client filter: an address, or an address and port.
fn client_filter(text: &str) -> Result<(std::net::IpAddr, Option<u16>)> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    text.parse().map(|ip| (ip, None)).map_err(|_| {
        Error::invalid(
            "client",
            format!("{} is not ADDR or ADDR:PORT", shown(text)),
        )
    })
}

impl Controller {
    /// The tracked flows matching `q`: their number, and the first `q.limit` of them.
    pub fn conns(&self, q: &ConnQuery) -> Result<ConnList> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::invalid("limit", format!("must be 1-{MAX_LIMIT}")));
        }
        let vip_id = match &q.vip {
            Some(name) => Some(self.vips[self.vip_index(name)?].id),
            None => None,
        };
        let backend_id = match &q.backend {
            Some(text) => {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    Error::invalid("backend", format!("{} is not ADDR:PORT", shown(text)))
                })?;
                let id = self.ids.get(&addr).ok_or_else(|| {
                    Error::not_found("backend", format!("{addr} is no VIP's backend"))
                })?;
                Some(id)
            }
            None => None,
        };
        let client = q.client.as_deref().map(client_filter).transpose()?;
        let vips: HashMap<u32, &Vip> = self.vips.iter().map(|v| (v.id, v)).collect();
        let backends: HashMap<u32, SocketAddr> = self
            .ids
            .by_addr
            .iter()
            .map(|(a, (id, _))| (*id, *a))
            .collect();
        let idle = self.dp.udp_idle();
        let now = self.dp.clock()?;
        let mut list = ConnList::default();
        self.dp.each_flow(|key, entry, probation| {
            if entry.dir != DIR_FORWARD
                || vip_id.is_some_and(|id| id != entry.vip_id)
                || backend_id.is_some_and(|id| id != entry.backend_id)
            {
                return;
            }
            let (Some(vip), Some(backend)) =
                (vips.get(&entry.vip_id), backends.get(&entry.backend_id))
            else {
                return;
            };
            let client_addr =
                SocketAddr::new(words_addr(key.family, &key.src), u16::from_be(key.sport));
            if let Some((ip, port)) = client {
                if client_addr.ip() != ip || port.is_some_and(|p| p != client_addr.port()) {
                    return;
                }
            }
            list.matched += 1;
            if list.conns.len() >= limit {
                return;
            }
            let udp = key.proto == PROTO_UDP;
            let ticks = now.wrapping_sub(entry.last_seen);
            let state = if probation {
                "probation"
            } else if udp && ticks > idle {
                "idle"
            } else if !udp && entry.flags & CONN_F_CLOSED != 0 {
                "closing"
            } else {
                "established"
            };
            list.conns.push(ConnView {
                proto: if udp { Proto::Udp } else { Proto::Tcp },
                client: client_addr,
                vip: vip.cfg.name.clone(),
                service: SocketAddr::new(vip.cfg.addr, vip.cfg.port),
                backend: *backend,
                state: state.into(),
                age_s: (u64::from(ticks) << TIME_UNIT_SHIFT) / 1_000_000_000,
            });
        });
        Ok(list)
    }
}
