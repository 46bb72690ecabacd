//! Transports carrying Engine.IO sessions.
pub mod polling;
pub mod static_files;
pub mod websocket;
pub mod wsframe;
