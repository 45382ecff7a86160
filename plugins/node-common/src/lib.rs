//! Pieces shared by the node task types (snapshot-restore, discover-peers,
//! configure-state-sync): blocking HTTP GETs over wasi:http, and config keys written in
//! the style the file already uses.

pub mod config;
pub mod http;
