//! The error of system operations (namespaces, netlink, cgroups, files, the kernel's BPF
//! calls): what was being done and why it failed, as the kernel or the library said.
use std::fmt::Display;

/// A failed system operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct SysError {
    /// What was being done (`creating veth xv1`, `entering namespace x`).
    pub what: String,
    /// Why it failed.
    pub cause: String,
}

/// Results of system operations.
pub type Result<T, E = SysError> = std::result::Result<T, E>;

/// A failure of `what` because of `cause`.
pub fn fail(what: impl Into<String>, cause: impl Display) -> SysError {
    SysError {
        what: what.into(),
        cause: cause.to_string(),
    }
}

/// `e` and the chain of errors beneath it, `outer: inner: ...`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        let more = inner.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        next = inner.source();
    }
    text
}

/// Says what was being done when a result failed.
pub trait Context<T> {
    /// Labels the failure with `what`.
    fn context(self, what: impl Into<String>) -> Result<T>;
    /// Labels the failure with what `what()` returns (computed only on failure).
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| fail(what, chain(&e)))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| fail(what(), chain(&e)))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| fail(what, "not found"))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| fail(what(), "not found"))
    }
}
