//! RESP2/RESP3 framing.
