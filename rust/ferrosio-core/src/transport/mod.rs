//! Transports carrying Engine.IO sessions.
pub mod polling;
pub mod websocket;
pub mod wsframe;
