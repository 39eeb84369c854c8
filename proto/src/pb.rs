//! The raw protobuf types generated from `sparkplug_b.proto` (prost).
//!
//! Use these for interop experiments or to compare against the typed model; the
//! typed model in the crate root is what applications should use: it enforces the
//! Sparkplug value rules that the bare schema cannot express.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/org.eclipse.tahu.protobuf.rs"));
