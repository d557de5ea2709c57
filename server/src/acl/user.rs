//! ACL users and selectors: applying rules (`ACL SETUSER` modifiers, ACL file lines) and
//! describing them back the way Redis 7.0.15 does (`ACL LIST`, `ACL GETUSER`, `ACL SAVE`).

use super::catalog::{catalog, Catalog, CATEGORIES};
use super::RuleError;
use crate::command::glob::glob_match;
use sha2::{Digest, Sha256};

/// Key pattern permission: reads (`%R~`).
pub const PERM_READ: u8 = 1;
/// Key pattern permission: writes (`%W~`).
pub const PERM_WRITE: u8 = 2;
/// Both (`~`).
pub const PERM_ALL: u8 = PERM_READ | PERM_WRITE;

/// One key pattern and what it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPattern {
    /// `PERM_*` bits.
    pub perms: u8,
    /// Glob pattern.
    pub pattern: Vec<u8>,
}

/// A set of permissions: the root one of a user, or a `(...)` selector.
#[derive(Clone, Debug)]
pub struct Selector {
    /// Commands allowed, one bit per catalog id.
    pub allowed: Vec<u64>,
    /// Redis's reserved "future commands" bit: set only by `+@all`/`allcommands`.
    pub future: bool,
    /// `ALLCOMMANDS`: skip the command check (cleared by any removal).
    pub allcommands: bool,
    /// `~*`/`allkeys`.
    pub allkeys: bool,
    /// `&*`/`allchannels`.
    pub allchannels: bool,
    /// Key patterns in the order added.
    pub patterns: Vec<KeyPattern>,
    /// Channel patterns in the order added.
    pub channels: Vec<Vec<u8>>,
    /// Allowed first arguments of otherwise denied commands (`+select|0`), by command id.
    pub firstargs: Vec<(usize, Vec<Vec<u8>>)>,
}

impl Selector {
    /// An empty selector (nothing allowed, `acl-pubsub-default` is `resetchannels`).
    pub fn new() -> Selector {
        Selector {
            allowed: vec![0; catalog().len().div_ceil(64)],
            future: false,
            allcommands: false,
            allkeys: false,
            allchannels: false,
            patterns: Vec::new(),
            channels: Vec::new(),
            firstargs: Vec::new(),
        }
    }

    /// True if command `id` is allowed by its bit.
    pub fn bit(&self, id: usize) -> bool {
        self.allowed[id / 64] & (1 << (id % 64)) != 0
    }

    fn set_bit(&mut self, id: usize, on: bool) {
        if on {
            self.allowed[id / 64] |= 1 << (id % 64);
        } else {
            self.allowed[id / 64] &= !(1 << (id % 64));
            self.allcommands = false;
        }
    }

    /// Allowed first arguments of command `id`.
    pub fn firstargs_of(&self, id: usize) -> Option<&[Vec<u8>]> {
        self.firstargs
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.as_slice())
    }

    /// Redis's `ACLChangeSelectorPerm`: a container's subcommands follow it.
    fn change_perm(&mut self, cat: &Catalog, id: usize, allow: bool) {
        self.set_bit(id, allow);
        self.firstargs.retain(|(i, _)| *i != id);
        for &s in &cat.cmds[id].subs {
            self.set_bit(s, allow);
        }
    }

    fn set_category(&mut self, cat: &Catalog, bit: u32, allow: bool) {
        for id in 0..cat.len() {
            if cat.cmds[id].cats & bit != 0 {
                self.change_perm(cat, id, allow);
            }
        }
    }

    fn set_all(&mut self, allow: bool) {
        let fill = if allow { u64::MAX } else { 0 };
        self.allowed.iter_mut().for_each(|w| *w = fill);
        self.future = allow;
        self.allcommands = allow;
        self.firstargs.clear();
    }

    /// Applies one selector rule (Redis's `ACLSetSelector`).
    pub fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let cat = catalog();
        if op.is_empty() {
            // `""` inside a selector: Redis's `op[0]` is the terminating NUL.
            return Err(RuleError::Syntax);
        }
        let is = |w: &str| op.eq_ignore_ascii_case(w.as_bytes());
        if is("allkeys") || is("~*") {
            self.allkeys = true;
            self.patterns.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.patterns.clear();
        } else if is("allchannels") || is("&*") {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.set_all(true);
        } else if is("nocommands") || is("-@all") {
            self.set_all(false);
        } else if op[0] == b'~' || op[0] == b'%' {
            if self.allkeys {
                return Err(RuleError::KeyAfterAll);
            }
            let (perms, offset) = key_perms(op)?;
            let pat = &op[offset..];
            if has_spaces(pat) {
                return Err(RuleError::Syntax);
            }
            match self.patterns.iter_mut().find(|p| p.pattern == pat) {
                Some(p) => p.perms |= perms,
                None => self.patterns.push(KeyPattern {
                    perms,
                    pattern: pat.to_vec(),
                }),
            }
        } else if op[0] == b'&' {
            if self.allchannels {
                return Err(RuleError::ChannelAfterAll);
            }
            let pat = &op[1..];
            if has_spaces(pat) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c == pat) {
                self.channels.push(pat.to_vec());
            }
        } else if (op[0] == b'+' || op[0] == b'-') && op.get(1) == Some(&b'@') {
            let bit = super::catalog::category_bit(&op[2..]).ok_or(RuleError::Unknown)?;
            self.set_category(cat, bit, op[0] == b'+');
        } else if op[0] == b'+' {
            let name = &op[1..];
            match name.iter().rposition(|&b| b == b'|') {
                None => {
                    let id = cat.lookup(name).ok_or(RuleError::Unknown)?;
                    self.change_perm(cat, id, true);
                }
                Some(p) => {
                    let id = cat.lookup(&name[..p]).ok_or(RuleError::Unknown)?;
                    if cat.cmds[id].parent.is_some() {
                        return Err(RuleError::FirstArgOfSub);
                    }
                    let sub = &name[p + 1..];
                    if sub.is_empty() {
                        return Err(RuleError::Syntax);
                    }
                    if !cat.cmds[id].subs.is_empty() {
                        let sid = cat.lookup(name).ok_or(RuleError::Unknown)?;
                        self.change_perm(cat, sid, true);
                    } else {
                        // A first argument of a plain command (`+select|0`).
                        match self.firstargs.iter_mut().find(|(i, _)| *i == id) {
                            Some((_, v)) => {
                                if !v.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                                    v.push(sub.to_vec());
                                }
                            }
                            None => self.firstargs.push((id, vec![sub.to_vec()])),
                        }
                    }
                }
            }
        } else if op[0] == b'-' {
            let id = cat.lookup(&op[1..]).ok_or(RuleError::Unknown)?;
            self.change_perm(cat, id, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    /// True if `key` may be accessed with `perms` (`PERM_*`) by this selector.
    pub fn key_allowed(&self, key: &[u8], perms: u8) -> bool {
        self.allkeys
            || self
                .patterns
                .iter()
                .any(|p| p.perms & perms == perms && glob_match(&p.pattern, key, false))
    }

    /// True if `channel` may be used; a pattern (PSUBSCRIBE) must equal an ACL pattern.
    pub fn channel_allowed(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.allchannels
            || self.channels.iter().any(|p| {
                if is_pattern {
                    p == channel
                } else {
                    glob_match(p, channel, false)
                }
            })
    }

    /// The command rules as Redis writes them: `+@all`/`-@all`, the categories that fit best,
    /// then single commands (Redis's `ACLDescribeSelectorCommandRules`).
    pub fn describe_commands(&self) -> String {
        let cat = catalog();
        let additive = !self.future;
        let mut rules = String::from(if additive { "-@all " } else { "+@all " });
        let mut fake = Selector::new();
        fake.set_all(!additive);
        let mut temp = self.clone();
        let mut applied = [false; 32];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (u64::MAX, 0u64);
            for (j, _) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (mut on, mut off) = (0u64, 0u64);
                for (id, c) in cat.cmds.iter().enumerate() {
                    if c.cats & (1 << j) != 0 {
                        if temp.bit(id) {
                            on += 1;
                        } else {
                            off += 1;
                        }
                    }
                }
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(j) = best else { break };
            fake.set_category(cat, 1 << j, additive);
            temp.set_category(cat, 1 << j, !additive);
            rules.push_str(if additive { "+@" } else { "-@" });
            rules.push_str(CATEGORIES[j]);
            rules.push(' ');
            applied[j] = true;
        }
        // Single commands, parents before their subcommands (Redis walks its dict).
        for (id, c) in cat.cmds.iter().enumerate() {
            if c.parent.is_some() {
                continue;
            }
            self.describe_single(cat, id, &mut fake, &mut rules);
            for &s in &c.subs {
                self.describe_single(cat, s, &mut fake, &mut rules);
            }
        }
        rules.pop();
        rules
    }

    fn describe_single(&self, cat: &Catalog, id: usize, fake: &mut Selector, rules: &mut String) {
        let user = self.bit(id);
        if user != fake.bit(id) {
            rules.push(if user { '+' } else { '-' });
            rules.push_str(cat.cmds[id].name);
            rules.push(' ');
            fake.change_perm(cat, id, user);
        }
        if !user {
            if let Some(args) = self.firstargs_of(id) {
                for a in args {
                    rules.push('+');
                    rules.push_str(cat.cmds[id].name);
                    rules.push('|');
                    rules.push_str(&String::from_utf8_lossy(a));
                    rules.push(' ');
                }
            }
        }
    }

    /// The key patterns as `ACL GETUSER` shows them (`~*`, or `~a %R~b`).
    pub fn describe_keys(&self) -> String {
        if self.allkeys {
            return "~*".into();
        }
        let parts: Vec<String> = self.patterns.iter().map(pattern_string).collect();
        parts.join(" ")
    }

    /// The channel patterns as `ACL GETUSER` shows them (`&*`, or `&a &b`).
    pub fn describe_channels(&self) -> String {
        if self.allchannels {
            return "&*".into();
        }
        let parts: Vec<String> = self
            .channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect();
        parts.join(" ")
    }

    /// The whole selector as `ACL LIST` shows it (Redis's `ACLDescribeSelector`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if self.allkeys {
            s.push_str("~* ");
        } else {
            for p in &self.patterns {
                s.push_str(&pattern_string(p));
                s.push(' ');
            }
        }
        if self.allchannels {
            s.push_str("&* ");
        } else {
            s.push_str("resetchannels ");
            for c in &self.channels {
                s.push('&');
                s.push_str(&String::from_utf8_lossy(c));
                s.push(' ');
            }
        }
        s.push_str(&self.describe_commands());
        s
    }
}

impl Default for Selector {
    fn default() -> Selector {
        Selector::new()
    }
}

fn pattern_string(p: &KeyPattern) -> String {
    let prefix = match p.perms {
        PERM_READ => "%R~",
        PERM_WRITE => "%W~",
        _ => "~",
    };
    format!("{prefix}{}", String::from_utf8_lossy(&p.pattern))
}

/// Parses the `%RW~` / `~` prefix: the permissions and where the pattern starts.
fn key_perms(op: &[u8]) -> Result<(u8, usize), RuleError> {
    if op[0] == b'~' {
        return Ok((PERM_ALL, 1));
    }
    let mut perms = 0;
    let mut offset = 1;
    while offset < op.len() {
        let c = op[offset];
        if c.eq_ignore_ascii_case(&b'r') && perms & PERM_READ == 0 {
            perms |= PERM_READ;
        } else if c.eq_ignore_ascii_case(&b'w') && perms & PERM_WRITE == 0 {
            perms |= PERM_WRITE;
        } else if c == b'~' {
            offset += 1;
            break;
        } else {
            return Err(RuleError::Syntax);
        }
        offset += 1;
    }
    Ok((perms, offset))
}

/// Redis's `ACLStringHasSpaces`: whitespace or NUL.
pub fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|&c| c == 0 || c == b' ' || (b'\t'..=b'\r').contains(&c))
}

/// Lower-case hex SHA-256 of a password, as Redis stores it.
pub fn hash_password(pass: &[u8]) -> String {
    Sha256::digest(pass)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// `skip-sanitize-payload` / `sanitize-payload` (neither until set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sanitize {
    /// Neither flag.
    Unset,
    /// `skip-sanitize-payload`.
    Skip,
    /// `sanitize-payload`.
    Yes,
}

/// One ACL user.
#[derive(Clone, Debug)]
pub struct User {
    /// Name.
    pub name: Vec<u8>,
    /// `on` (else `off`).
    pub enabled: bool,
    /// `nopass`: any password works.
    pub nopass: bool,
    /// Payload sanitization flag.
    pub sanitize: Sanitize,
    /// SHA-256 hex of each password, in the order added.
    pub passwords: Vec<String>,
    /// The root selector first, then `(...)` selectors.
    pub selectors: Vec<Selector>,
}

impl User {
    /// A new user as `ACL SETUSER name` creates it: off, no passwords, nothing allowed.
    pub fn new(name: &[u8]) -> User {
        User {
            name: name.to_vec(),
            enabled: false,
            nopass: false,
            sanitize: Sanitize::Unset,
            passwords: Vec::new(),
            selectors: vec![Selector::new()],
        }
    }

    /// The `default` user: `+@all ~* &* on nopass`.
    pub fn default_user() -> User {
        let mut u = User::new(b"default");
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            // These fixed rules are valid.
            let _ = u.apply(op.as_bytes());
        }
        u
    }

    /// Applies one rule (Redis's `ACLSetUser`).
    pub fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if op.is_empty() {
            return Ok(());
        }
        let is = |w: &str| op.eq_ignore_ascii_case(w.as_bytes());
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("skip-sanitize-payload") {
            self.sanitize = Sanitize::Skip;
        } else if is("sanitize-payload") {
            self.sanitize = Sanitize::Yes;
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if op[0] == b'>' || op[0] == b'#' {
            let hash = if op[0] == b'>' {
                hash_password(&op[1..])
            } else if valid_hash(&op[1..]) {
                String::from_utf8_lossy(&op[1..]).into_owned()
            } else {
                return Err(RuleError::BadHash);
            };
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.nopass = false;
        } else if op[0] == b'<' || op[0] == b'!' {
            let hash = if op[0] == b'<' {
                hash_password(&op[1..])
            } else if valid_hash(&op[1..]) {
                String::from_utf8_lossy(&op[1..]).into_owned()
            } else {
                return Err(RuleError::BadHash);
            };
            let before = self.passwords.len();
            self.passwords.retain(|p| *p != hash);
            if self.passwords.len() == before {
                return Err(RuleError::NoSuchPassword);
            }
        } else if op[0] == b'(' && op[op.len() - 1] == b')' {
            let mut s = Selector::new();
            for part in split_args(&op[1..op.len() - 1]) {
                s.apply(&part)?;
            }
            self.selectors.push(s);
        } else if is("clearselectors") {
            self.selectors.truncate(1);
        } else if is("reset") {
            for r in [
                "resetpass",
                "resetkeys",
                "resetchannels",
                "off",
                "sanitize-payload",
                "clearselectors",
                "-@all",
            ] {
                self.apply(r.as_bytes())?;
            }
        } else {
            self.selectors[0].apply(op)?;
        }
        Ok(())
    }

    /// Everything after `user <name> ` in `ACL LIST` (Redis's `ACLDescribeUser`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for f in self.flags() {
            s.push_str(f);
            s.push(' ');
        }
        for p in &self.passwords {
            s.push('#');
            s.push_str(p);
            s.push(' ');
        }
        for (i, sel) in self.selectors.iter().enumerate() {
            if i == 0 {
                s.push_str(&sel.describe());
            } else {
                s.push_str(&format!(" ({})", sel.describe()));
            }
        }
        s
    }

    /// The flags in Redis's order.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize {
            Sanitize::Skip => f.push("skip-sanitize-payload"),
            Sanitize::Yes => f.push("sanitize-payload"),
            Sanitize::Unset => {}
        }
        f
    }

    /// True if `pass` opens this user (enabled, and nopass or a matching hash), in constant
    /// time over the stored hashes.
    pub fn password_ok(&self, pass: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let h = hash_password(pass);
        let mut ok = subtle::Choice::from(0);
        for p in &self.passwords {
            ok |= p.as_bytes().ct_eq(h.as_bytes());
        }
        ok.into()
    }

    /// True if nothing is restricted (every command, key and channel).
    pub fn unrestricted(&self) -> bool {
        let r = &self.selectors[0];
        r.allcommands && r.allkeys && r.allchannels
    }
}

/// Redis's `sdssplitargs` for selector bodies: spaces separate, quotes group.
pub fn split_args(s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut quote: Option<u8> = None;
    for &c in s {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.get_or_insert_with(Vec::new).push(c),
            None if c == b'"' || c == b'\'' => {
                quote = Some(c);
                cur.get_or_insert_with(Vec::new);
            }
            None if c.is_ascii_whitespace() => {
                if let Some(w) = cur.take() {
                    out.push(w);
                }
            }
            None => cur.get_or_insert_with(Vec::new).push(c),
        }
    }
    if let Some(w) = cur {
        out.push(w);
    }
    out
}

/// Redis's `ACLMergeSelectorArguments`: joins a `(` ... `)` selector spread over several
/// arguments. `Err(i)` names the argument whose parenthesis is never closed.
pub fn merge_selector_args(args: &[&[u8]]) -> Result<Vec<Vec<u8>>, usize> {
    let mut out = Vec::new();
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (j, op) in args.iter().enumerate() {
        if let Some((start, mut sel)) = open.take() {
            sel.push(b' ');
            sel.extend_from_slice(op);
            if op.last() == Some(&b')') {
                out.push(sel);
            } else {
                open = Some((start, sel));
            }
            continue;
        }
        if op.first() == Some(&b'(') && op.last() != Some(&b')') {
            open = Some((j, op.to_vec()));
            continue;
        }
        out.push(op.to_vec());
    }
    match open {
        Some((start, _)) => Err(start),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut u = User::new(b"u");
        for r in rules {
            u.apply(r.as_bytes()).expect(r);
        }
        u
    }

    #[test]
    fn new_and_default_users_describe_like_redis() {
        assert_eq!(User::new(b"a").describe(), "off resetchannels -@all");
        assert_eq!(User::default_user().describe(), "on nopass ~* &* +@all");
    }

    #[test]
    fn rules_round_trip_through_the_description() {
        let u = user(&[
            "on",
            ">pw",
            "~k*",
            "%R~r*",
            "+get",
            "+@hash",
            "-hset",
            "&ch*",
            "+client|list",
            "+select|0",
        ]);
        let d = u.describe();
        assert!(d.starts_with(
            "on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~k* %R~r* resetchannels &ch* -@all +@hash "
        ), "{d}");
        for part in ["+get", "-hset", "+client|list", "+select|0"] {
            assert!(d.split(' ').any(|w| w == part), "{part} in {d}");
        }
        // Applying the description to a fresh user gives the same description.
        let mut again = User::new(b"u");
        for op in d.split(' ') {
            again.apply(op.as_bytes()).expect(op);
        }
        assert_eq!(again.describe(), d);
        assert_eq!(again.selectors[0].allowed, u.selectors[0].allowed);
    }

    #[test]
    fn subtracting_from_all_keeps_future_commands() {
        let u = user(&["+@all", "-get", "-@dangerous"]);
        let d = u.selectors[0].describe_commands();
        assert!(d.starts_with("+@all -@dangerous"), "{d}");
        assert!(d.contains("-get"));
    }

    #[test]
    fn rule_errors() {
        let mut u = User::new(b"u");
        assert_eq!(u.apply(b"+nosuch"), Err(RuleError::Unknown));
        assert_eq!(u.apply(b"+@nosuch"), Err(RuleError::Unknown));
        assert_eq!(u.apply(b"bogus"), Err(RuleError::Syntax));
        assert_eq!(u.apply(b"#abc"), Err(RuleError::BadHash));
        assert_eq!(u.apply(b"<nope"), Err(RuleError::NoSuchPassword));
        assert_eq!(u.apply(b"+client|list|x"), Err(RuleError::FirstArgOfSub));
        assert_eq!(u.apply(b"+select|"), Err(RuleError::Syntax));
        assert_eq!(u.apply(b"%X~a"), Err(RuleError::Syntax));
        u.apply(b"allkeys").expect("allkeys");
        assert_eq!(u.apply(b"~a"), Err(RuleError::KeyAfterAll));
        u.apply(b"allchannels").expect("allchannels");
        assert_eq!(u.apply(b"&a"), Err(RuleError::ChannelAfterAll));
    }

    #[test]
    fn key_and_channel_patterns() {
        let u = user(&["~k*", "%R~r*", "%W~w*", "&news.*"]);
        let s = &u.selectors[0];
        assert!(s.key_allowed(b"key", PERM_ALL));
        assert!(s.key_allowed(b"rkey", PERM_READ));
        assert!(!s.key_allowed(b"rkey", PERM_WRITE));
        assert!(s.key_allowed(b"wkey", PERM_WRITE));
        assert!(!s.key_allowed(b"wkey", PERM_ALL));
        assert!(!s.key_allowed(b"other", PERM_READ));
        assert!(s.channel_allowed(b"news.sport", false));
        assert!(!s.channel_allowed(b"news.*x", true));
        assert!(s.channel_allowed(b"news.*", true));
        // Adding the same pattern again merges permissions.
        let u = user(&["%R~a", "%W~a"]);
        assert_eq!(u.selectors[0].describe_keys(), "~a");
    }

    #[test]
    fn passwords_are_sha256_and_checked() {
        let u = user(&["on", ">secret"]);
        assert_eq!(
            u.passwords,
            vec!["2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b".to_string()]
        );
        assert!(u.password_ok(b"secret"));
        assert!(!u.password_ok(b"Secret"));
        let off = user(&[">secret"]);
        assert!(!off.password_ok(b"secret"));
        let mut u = user(&["on", ">a", ">b"]);
        u.apply(b"<a").expect("remove");
        assert!(!u.password_ok(b"a"));
        assert!(u.password_ok(b"b"));
    }

    #[test]
    fn selectors_and_merging() {
        let args: Vec<&[u8]> = vec![b"on", b"(~a*", b"+get)", b"(+set ~b*)"];
        let merged = merge_selector_args(&args).expect("merged");
        assert_eq!(merged[1], b"(~a* +get)".to_vec());
        let args: Vec<&[u8]> = vec![b"on", b"(~a*"];
        assert_eq!(merge_selector_args(&args), Err(1));
        let mut u = User::new(b"u");
        for m in &merged {
            u.apply(m).expect("rule");
        }
        assert_eq!(u.selectors.len(), 3);
        assert_eq!(
            u.describe(),
            "on resetchannels -@all (~a* resetchannels -@all +get) (~b* resetchannels -@all +set)"
        );
    }
}
