//! Layer 0, the operating system: named network namespaces, veth links through netlink,
//! interface offloads, cgroups, batch commands on BPF maps. Imports nothing else of the
//! crate; the VM providers and the lab both build on it.
pub mod bpf_batch;
pub mod cgroup;
pub mod error;
pub mod ethtool;
pub mod link;
pub mod netns;

pub use error::{Context, Result, SysError};
