//! csc-runtime: what cssc-generated solutions link against. Generated code is thin:
//! it describes the session ([`session`]) and implements a pure state machine over the
//! typed vocabulary of [`machine`]; this crate owns everything else.

pub mod address;
#[cfg(feature = "engine")]
pub mod cli;
pub mod machine;
pub mod session;
pub mod vocab;
