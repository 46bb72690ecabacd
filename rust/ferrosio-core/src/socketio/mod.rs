//! Socket.IO v5 on top of Engine.IO: the codec, binary attachment reassembly, rooms and the
//! adapter seam, and the server layer; what Socket.IO v4 clients (socket.io-client 2.x) need
//! differently, in [`v4`].
pub mod adapter;
pub mod assembler;
pub mod layer;
pub mod msgpack;
pub mod one_or_many;
pub mod packet;
pub mod parser;
pub mod recovery;
pub mod rooms;
pub mod v4;
