use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{Order, QueryError};

/// An opaque pagination position: the `seq` of the last event of the previous page, and the
/// order it was read in (a cursor cannot be replayed with the other order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Last `seq` already returned.
    pub seq: u64,
    /// The order the cursor belongs to.
    pub order: Order,
}

impl Cursor {
    /// The wire form: URL-safe base64 of `c1.<d|a>.<seq>`.
    pub fn encode(&self) -> String {
        let order = match self.order {
            Order::Desc => 'd',
            Order::Asc => 'a',
        };
        URL_SAFE_NO_PAD.encode(format!("c1.{order}.{}", self.seq))
    }

    /// Parses the wire form produced by [`Cursor::encode`].
    pub fn decode(text: &str) -> Result<Cursor, QueryError> {
        let invalid = || QueryError::new("cursor", "cursor is not a cursor returned by this server");
        if text.len() > 64 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.split('.');
        if parts.next() != Some("c1") {
            return Err(invalid());
        }
        let order = match parts.next() {
            Some("d") => Order::Desc,
            Some("a") => Order::Asc,
            _ => return Err(invalid()),
        };
        let seq = parts.next().and_then(|s| s.parse::<u64>().ok()).ok_or_else(invalid)?;
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Cursor { seq, order })
    }
}
