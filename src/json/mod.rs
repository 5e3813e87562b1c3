//! JSON the gateway reads without building trees: a strict scanner that builds nothing
//! ([`scan`]), the field a typed parse failed on ([`path`]), and values kept as the client
//! wrote them ([`text`], [`raw`]).

pub mod path;
pub mod raw;
pub mod scan;
pub mod text;
