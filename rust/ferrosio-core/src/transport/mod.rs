//! Transports carrying Engine.IO sessions.
pub mod deflate;
pub mod external;
pub mod polling;
pub mod websocket;
pub mod wsframe;
