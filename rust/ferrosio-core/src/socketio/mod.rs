//! Socket.IO v5 on top of Engine.IO: the codec, binary attachment reassembly, rooms and the
//! adapter seam, and the server layer.
pub mod adapter;
pub mod assembler;
pub mod layer;
pub mod msgpack;
pub mod packet;
pub mod parser;
pub mod rooms;
