//! Layer 1, the model: the desired state (config) and its validation, the API's wire types and
//! states, the workers' messages and the library's error. Imports nothing else of the crate.
pub mod config;
pub mod error;
pub mod msg;
mod validate;
pub mod wire;

pub use error::{Error, ErrorKind, Result};
pub use validate::validate_backend;
