//! Socket.IO v5 on top of Engine.IO: the codec and binary attachment reassembly.
pub mod packet;

pub use packet::{PacketType, SocketPacket};
pub mod layer;
