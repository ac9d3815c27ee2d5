//! The library's error: which field or object a request got wrong, what is wrong with it, and
//! its kind, which the API maps to an HTTP status (so rewording a message changes no status).
use serde::{Deserialize, Serialize};

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The named VIP, backend, pool or VM does not exist.
    NotFound,
    /// The request contradicts the current state (a name or service in use, a limit reached).
    Conflict,
    /// A field has a value that is not allowed.
    Invalid,
    /// The request cannot be served now (a worker stopped, a lock held); it may work later.
    Busy,
    /// The kernel, the system or an engine failed underneath.
    Internal,
}

/// A failed request or operation: `field: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Error {
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// The field path (`vip[1].backend[0].port`) or object (`vip`, `pool`) it is about.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Results of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` about `field`.
    pub fn new(kind: ErrorKind, field: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            kind,
            field: field.into(),
            message: message.into(),
        }
    }

    /// `field` has a value that is not allowed.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, field, message)
    }

    /// The object `field` names does not exist.
    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, field, message)
    }

    /// The request contradicts the current state.
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, field, message)
    }

    /// The request cannot be served now.
    pub fn busy(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, field, message)
    }

    /// Something underneath failed while doing `what`; `cause` says how.
    pub fn internal(what: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, what, format!("{cause:#}"))
    }
}

impl From<crate::sys::SysError> for Error {
    fn from(e: crate::sys::SysError) -> Self {
        Error::new(ErrorKind::Internal, e.what, e.cause)
    }
}
