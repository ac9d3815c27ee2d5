//! Layer 1, the model: the desired state (config), its validation and its state file, the
//! API's wire types and states, the workers' messages and the library's error. Imports only
//! the system layer (for its error).
pub mod config;
pub mod diff;
pub mod error;
pub mod msg;
pub mod provider;
pub mod state;
pub mod trace;
mod validate;
pub mod wire;

pub use error::{Error, ErrorKind, Result};
pub use validate::{shown, validate_backend, validate_vips};
