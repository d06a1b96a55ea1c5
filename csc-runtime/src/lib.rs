//! csc-runtime: what cssc-generated solutions link against.

pub mod vocab;
