//! Layer 4, the workers: health checkers, the pool managers and their VM providers, and the
//! tickers that drive telemetry; they talk to the controller core through its mailbox.
pub mod health;
pub mod pool;
pub mod reload;
pub mod ticker;
pub mod vm;
