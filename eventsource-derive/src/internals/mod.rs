//! What both derives share: the error collector, attribute parsing, names and the
//! value types written in attributes (durations, upcast chains).

pub mod attr;
pub mod chain;
pub mod ctxt;
pub mod duration;
pub mod symbol;
