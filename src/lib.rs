//! The solution library; build.rs checks every solutions/*.xml.
