//! csc-runtime: what cssc-generated solutions link against. Generated code is thin:
//! it describes the session ([`session`]) and implements a pure state machine over the
//! typed vocabulary of [`machine`]; this crate owns everything else.

#![warn(unreachable_pub)]

#[cfg(feature = "engine")]
pub mod actions;
pub mod address;
pub mod capability;
#[cfg(feature = "engine")]
pub mod cli;
#[cfg(feature = "engine")]
mod control;
#[cfg(feature = "engine")]
pub mod core;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "engine")]
pub mod drivers;
#[cfg(feature = "engine")]
pub mod executor;
pub mod fingerprint;
#[cfg(feature = "engine")]
pub mod ha;
#[cfg(feature = "engine")]
pub mod journal;
#[cfg(feature = "demo")]
pub mod lab;
#[cfg(feature = "engine")]
pub mod log;
pub mod machine;
#[cfg(feature = "engine")]
mod metrics;
pub mod model;
#[cfg(feature = "engine")]
pub mod nbd;
#[cfg(feature = "engine")]
pub mod plan;
#[cfg(feature = "engine")]
mod progress;
pub mod session;
#[cfg(feature = "engine")]
pub mod simulate;
#[cfg(feature = "engine")]
mod status;
#[cfg(feature = "engine")]
mod systemd;
#[cfg(feature = "engine")]
pub mod tls;
#[cfg(feature = "engine")]
pub mod verify;
pub mod vocab;
