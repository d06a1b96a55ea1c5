//! Writers over the IR. Each takes a checked solution and prints one form of it.

pub mod graph;
pub mod xml;
