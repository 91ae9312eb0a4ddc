//! What both derives share: the error collector, attribute parsing, names and the
//! value types written in attributes (durations, sizes, upcast chains).

pub mod attr;
pub mod chain;
pub mod ctxt;
pub mod duration;
pub mod size;
pub mod symbol;
