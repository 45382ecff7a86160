//! Pieces shared by the node task types (snapshot-restore, config-patch, discover-peers,
//! configure-state-sync): blocking HTTP GETs over wasi:http, config keys written in the
//! style the file already uses, crash-safe file writes, and files written in large pieces.

pub mod config;
pub mod durable;
pub mod http;
pub mod large_file;
