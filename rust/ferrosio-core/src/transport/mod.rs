//! Transports carrying Engine.IO sessions.
pub mod websocket;
