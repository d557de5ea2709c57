//! LCS: the longest common subsequence of two strings, with Redis's exact table walk.

use super::{failed, int_arg, is, syntax_error};
use crate::storage::{Db, KeyType, MAX_STRING_LEN};
use bytes::Bytes;
use pinnacle_resp::Reply;

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`.
pub(super) fn lcs(db: &Db, a: &[Bytes]) -> Reply {
    let view = db.view();
    let (va, vb) = match (view.get(&a[1]), view.get(&a[2])) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    if va.as_ref().is_some_and(|m| m.kind != KeyType::String)
        || vb.as_ref().is_some_and(|m| m.kind != KeyType::String)
    {
        return Reply::error("ERR The specified keys must contain string values");
    }
    let sa = va.map(|m| m.value).unwrap_or_default();
    let sb = vb.map(|m| m.value).unwrap_or_default();
    let (mut getlen, mut getidx, mut withmatchlen) = (false, false, false);
    let mut minmatchlen: i64 = 0;
    let mut j = 3;
    while j < a.len() {
        let opt = &a[j][..];
        let more = a.len() - 1 - j;
        if is(opt, "idx") {
            getidx = true;
        } else if is(opt, "len") {
            getlen = true;
        } else if is(opt, "withmatchlen") {
            withmatchlen = true;
        } else if is(opt, "minmatchlen") && more > 0 {
            match int_arg(&a[j + 1]) {
                Ok(v) => minmatchlen = v.max(0),
                Err(r) => return r,
            }
            j += 1;
        } else {
            return syntax_error();
        }
        j += 1;
    }
    if getidx && getlen {
        return Reply::error("ERR If you want both the length and indexes, please just use IDX.");
    }
    if (sa.len() as u64 + 1) * (sb.len() as u64 + 1) * 4 > MAX_STRING_LEN {
        return Reply::error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    lcs_reply(&sa, &sb, getlen, getidx, withmatchlen, minmatchlen as u64)
}

/// The LCS reply, computed exactly like Redis's `lcsCommand` (same table walk, same ranges).
fn lcs_reply(
    a: &[u8],
    b: &[u8],
    getlen: bool,
    getidx: bool,
    withmatchlen: bool,
    minmatchlen: u64,
) -> Reply {
    let (alen, blen) = (a.len(), b.len());
    let w = blen + 1;
    let cells = (alen + 1) * w;
    let mut dp: Vec<u32> = Vec::new();
    if dp.try_reserve_exact(cells).is_err() {
        return Reply::error("ERR Insufficient memory, failed allocating transient memory for LCS");
    }
    dp.resize(cells, 0);
    for i in 1..=alen {
        for j in 1..=blen {
            dp[i * w + j] = if a[i - 1] == b[j - 1] {
                dp[(i - 1) * w + j - 1] + 1
            } else {
                dp[(i - 1) * w + j].max(dp[i * w + j - 1])
            };
        }
    }
    let total = dp[alen * w + blen];
    if getlen && !getidx {
        return Reply::Integer(i64::from(total));
    }
    let mut idx = total as usize;
    let mut result = vec![0u8; idx];
    let mut matches = Vec::new();
    let (mut arange_start, mut arange_end, mut brange_start, mut brange_end) = (alen, 0, 0, 0);
    let (mut i, mut j) = (alen, blen);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if arange_start == alen {
                arange_start = i - 1;
                arange_end = i - 1;
                brange_start = j - 1;
                brange_end = j - 1;
            } else if arange_start == i && brange_start == j {
                arange_start -= 1;
                brange_start -= 1;
            } else {
                emit = true;
            }
            if arange_start == 0 || brange_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            let lcs1 = dp[(i - 1) * w + j];
            let lcs2 = dp[i * w + j - 1];
            if lcs1 > lcs2 {
                i -= 1;
            } else {
                j -= 1;
            }
            if arange_start != alen {
                emit = true;
            }
        }
        let match_len = (arange_end as u64)
            .wrapping_sub(arange_start as u64)
            .wrapping_add(1);
        if emit {
            if (minmatchlen == 0 || match_len >= minmatchlen) && getidx {
                let mut entry = vec![
                    Reply::Array(vec![
                        Reply::Integer(arange_start as i64),
                        Reply::Integer(arange_end as i64),
                    ]),
                    Reply::Array(vec![
                        Reply::Integer(brange_start as i64),
                        Reply::Integer(brange_end as i64),
                    ]),
                ];
                if withmatchlen {
                    entry.push(Reply::Integer(match_len as i64));
                }
                matches.push(Reply::Array(entry));
            }
            arange_start = alen;
        }
    }
    if getidx {
        Reply::Map(vec![
            (Reply::bulk("matches"), Reply::Array(matches)),
            (Reply::bulk("len"), Reply::Integer(i64::from(total))),
        ])
    } else {
        Reply::Bulk(Bytes::from(result))
    }
}
