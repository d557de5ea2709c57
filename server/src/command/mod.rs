//! The command table and the request pipeline (lookup → auth → arity → route → execute).

use bytes::Bytes;
use pinnacle_resp::Reply;

/// Per-connection state (protocol, name, auth, flags).
pub struct Client {}

/// Process-wide state shared by every connection.
pub struct Server {
    /// The keyspace on the storage engine.
    pub db: crate::storage::Db,
}

/// What a handler sees: the server and the calling client.
pub struct Ctx<'a> {
    /// Shared server state.
    pub server: &'a Server,
    /// The calling connection's state.
    pub client: &'a mut Client,
}

/// A command handler: `args[0]` is the command name as sent; arity was already checked.
pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> Reply;
