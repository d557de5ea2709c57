//! Hash writes on versioned sub-keys: `sub_key(key, version, field)` → value.
//!
//! Encoding bookkeeping follows Redis 7.0's defaults (`hash-max-listpack-entries 128`,
//! `hash-max-listpack-value 64`): once a hash would have been converted to a hashtable the
//! metadata is marked ([`super::coll::BIG`]) and stays so, as in Redis.

use super::apply::Tx;
use super::coll::BIG;
use super::encoding::{KeyType, StrEnc};
use super::write::WriteOp;
use super::{num, Result};
use bytes::Bytes;
use pinnacle_resp::Reply;

/// First opcode of the collection ops (hashes, then sets).
pub const FIRST_OPCODE: u8 = 19;
/// `hash-max-listpack-entries` default.
pub const MAX_LISTPACK_ENTRIES: u64 = 128;
/// `hash-max-listpack-value` default.
pub const MAX_LISTPACK_VALUE: usize = 64;

macro_rules! try_reply {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return Ok(r),
        }
    };
}
pub(super) use try_reply;

/// Applies a hash write op.
pub(super) fn apply(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Reply> {
    Ok(match op {
        WriteOp::HSet { key, pairs, nx } => {
            let mut m = try_reply!(tx.get_or_new(key, KeyType::Hash)?);
            let mut added = 0;
            let mut big = m.enc == BIG;
            for (f, v) in pairs {
                let exists = tx.sub_get(key, m.version, f)?.is_some();
                if *nx && exists {
                    return Ok(Reply::Integer(0));
                }
                if !exists {
                    added += 1;
                    m.size += 1;
                }
                big |= f.len() > MAX_LISTPACK_VALUE || v.len() > MAX_LISTPACK_VALUE;
                tx.sub_put(key, m.version, f, v.clone());
            }
            big |= m.size > MAX_LISTPACK_ENTRIES;
            let enc = if big { BIG } else { StrEnc::Auto };
            // Overwriting existing fields leaves the metadata as it was: don't rewrite it.
            if added > 0 || enc != m.enc {
                m.enc = enc;
                tx.put_coll(key, m);
            }
            Reply::Integer(if *nx { 1 } else { added })
        }
        WriteOp::HDel { key, fields } => {
            let Some(mut m) = try_reply!(tx.get_coll(key, KeyType::Hash)?) else {
                return Ok(Reply::Integer(0));
            };
            let mut n = 0;
            for f in fields {
                if tx.sub_get(key, m.version, f)?.is_some() {
                    tx.sub_del(key, m.version, f);
                    m.size -= 1;
                    n += 1;
                }
            }
            if n > 0 {
                tx.put_coll(key, m);
            }
            Reply::Integer(n)
        }
        WriteOp::HIncrBy { key, field, delta } => {
            let mut m = try_reply!(tx.get_or_new(key, KeyType::Hash)?);
            let old = tx.sub_get(key, m.version, field)?;
            let cur = match &old {
                None => 0,
                Some(v) => match num::parse_i64(v) {
                    Some(v) => v,
                    None => return Ok(Reply::error("ERR hash value is not an integer")),
                },
            };
            let Some(new) = cur.checked_add(*delta) else {
                return Ok(Reply::error("ERR increment or decrement would overflow"));
            };
            set_field(
                tx,
                key,
                &mut m,
                field,
                old.is_none(),
                Bytes::from(new.to_string()),
            );
            Reply::Integer(new)
        }
        WriteOp::HIncrByFloat { key, field, delta } => {
            let Some(incr) = num::LongDouble::parse(delta) else {
                return Ok(Reply::error(num::ERR_NOT_FLOAT));
            };
            let mut m = try_reply!(tx.get_or_new(key, KeyType::Hash)?);
            let old = tx.sub_get(key, m.version, field)?;
            let cur = match &old {
                None => num::LongDouble::zero(),
                Some(v) => match num::LongDouble::parse(v) {
                    Some(v) => v,
                    None => return Ok(Reply::error("ERR hash value is not a float")),
                },
            };
            let sum = cur.add(&incr);
            if !sum.is_finite() {
                return Ok(Reply::error("ERR increment would produce NaN or Infinity"));
            }
            let text = Bytes::from(sum.to_human_string());
            set_field(tx, key, &mut m, field, old.is_none(), text.clone());
            Reply::Bulk(text)
        }
        _ => Reply::error("ERR not a hash operation"),
    })
}

fn set_field(
    tx: &mut Tx<'_>,
    key: &Bytes,
    m: &mut super::Meta,
    field: &Bytes,
    new: bool,
    value: Bytes,
) {
    if new {
        m.size += 1;
    }
    if field.len() > MAX_LISTPACK_VALUE
        || value.len() > MAX_LISTPACK_VALUE
        || m.size > MAX_LISTPACK_ENTRIES
    {
        m.enc = BIG;
    }
    tx.sub_put(key, m.version, field, value);
    tx.put_coll(key, m.clone());
}
