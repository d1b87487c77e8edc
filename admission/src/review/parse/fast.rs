//! The fast path of [`super::parse`]: a hand-written reader for reviews as the API server writes
//! them, filling the same [`State`] as the serde reader with the same stopping rule.
//!
//! serde_json spends most of its time per token, not per byte, and the part of a review a decision
//! reads (~1.3 KB before `object.spec`) is all small tokens. This reader does the same work with
//! no indirection and skips strings eight bytes at a time. It reads strictly: anything it does not
//! expect (bad syntax, a duplicate field serde would refuse, a non-object `spec`, nesting beyond
//! [`MAX_DEPTH`], a number where a string belongs) gives up with [`Halt::Fallback`], and the serde
//! reader reads the body from the start and decides, and words any error, exactly as before. The
//! tests compare both readers over many bodies and every truncation of them.

use std::borrow::Cow;

use kelos_hooks_shared::json_scan::{ascii_string_stop, string_stop, string_stop_candidates};

use super::{Progress, Side, State};
use crate::review::json_str::{unescape, unicode_escape};
use kelos_hooks_shared::validation::ParsedJson;

use crate::review::{
    GroupVersionKind, JsonStr, Metadata, Object, OnCompletionJson, Spec, StrMap, UserInfo,
};

/// Why reading ended before the body did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Halt {
    /// Everything the decision needs was read.
    Done,
    /// Outside what this reader handles: the serde reader takes over.
    Fallback,
}

type R<T> = Result<T, Halt>;

/// Deepest nesting read here (serde_json's own limit is 128).
const MAX_DEPTH: usize = 100;

/// A cursor over the body.
pub(super) struct Lexer<'a> {
    b: &'a [u8],
    /// Bytes consumed so far.
    pub(super) pos: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(b: &'a [u8]) -> Self {
        Lexer { b, pos: 0 }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> R<u8> {
        self.ws();
        self.b.get(self.pos).copied().ok_or(Halt::Fallback)
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> R<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn expect(&mut self, byte: u8) -> R<()> {
        if self.next()? == byte {
            Ok(())
        } else {
            Err(Halt::Fallback)
        }
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self
            .b
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Halt::Fallback)
        }
    }

    /// Consumes `null` if it comes next.
    fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// A string value: borrowed from the body; with escapes, checked but not yet decoded.
    #[inline]
    fn json_str(&mut self) -> R<JsonStr<'a>> {
        self.expect(b'"')?;
        let start = self.pos;
        let stop = string_stop(self.b, start).ok_or(Halt::Fallback)?;
        if self.b.get(stop) == Some(&b'"') {
            self.pos = stop + 1;
            let raw = self.b.get(start..stop).ok_or(Halt::Fallback)?;
            return std::str::from_utf8(raw)
                .map(|s| JsonStr::Plain(Cow::Borrowed(s)))
                .map_err(|_| Halt::Fallback);
        }
        self.escaped_str(start, stop)
    }

    /// The rest of [`Lexer::json_str`] for a string whose plain run from `start` ends at `stop`
    /// with an escape (or a bad byte).
    #[cold]
    fn escaped_str(&mut self, start: usize, stop: usize) -> R<JsonStr<'a>> {
        let end = self.string_end::<true>(stop)?;
        self.pos = end + 1;
        let raw = self.b.get(start..end).ok_or(Halt::Fallback)?;
        let raw = std::str::from_utf8(raw).map_err(|_| Halt::Fallback)?;
        Ok(JsonStr::escaped(raw))
    }

    /// A string, decoded; borrowed from the body unless it holds escapes.
    #[inline]
    fn string(&mut self) -> R<Cow<'a, str>> {
        match self.json_str()? {
            JsonStr::Plain(s) => Ok(s),
            JsonStr::Escaped { raw, .. } => unescape(raw).map(Cow::Owned).ok_or(Halt::Fallback),
        }
    }

    /// An object key, for matching against field names: a plain ASCII key is borrowed as bytes
    /// (no UTF-8 check needed, nearly every key); any other is decoded as [`Lexer::string`] does.
    #[inline]
    fn key(&mut self) -> R<Cow<'a, [u8]>> {
        if self.b.get(self.pos) == Some(&b'"') {
            let start = self.pos + 1;
            let stop = ascii_string_stop(self.b, start).ok_or(Halt::Fallback)?;
            if self.b.get(stop) == Some(&b'"') {
                self.pos = stop + 1;
                return self
                    .b
                    .get(start..stop)
                    .map(Cow::Borrowed)
                    .ok_or(Halt::Fallback);
            }
        }
        Ok(match self.string()? {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        })
    }

    /// A string skipped: escapes checked, nothing decoded.
    #[inline]
    fn skip_string(&mut self) -> R<()> {
        self.expect(b'"')?;
        // Most strings have no escape: their first stop is the closing quote.
        let stop = string_stop(self.b, self.pos).ok_or(Halt::Fallback)?;
        let end = if self.b.get(stop) == Some(&b'"') {
            stop
        } else {
            self.string_end::<false>(stop)?
        };
        self.pos = end + 1;
        Ok(())
    }

    /// The index of the closing quote of the string whose text runs on from `from`. Escapes are
    /// checked as serde_json checks them: when the value is decoded (`DECODE`) a `\u` escape must
    /// make a character (surrogates paired), when it is skipped any four hex digits do. A bad
    /// escape or a control character: [`Halt::Fallback`] (serde_json refuses them, and words why).
    ///
    /// Eight bytes are loaded at a time and every stop among them is handled before the next load:
    /// JSON kept in an annotation has an escaped quote every few bytes.
    fn string_end<const DECODE: bool>(&self, from: usize) -> R<usize> {
        let mut i = from;
        loop {
            let Some(mut stops) = string_stop_candidates(self.b, i) else {
                // The last few bytes: one exact stop at a time.
                let at = string_stop(self.b, i).ok_or(Halt::Fallback)?;
                match self.after_stop::<DECODE>(at)? {
                    None => return Ok(at),
                    Some(next) => i = next,
                }
                continue;
            };
            loop {
                if stops == 0 {
                    i += 8;
                    break;
                }
                let at = i + stops.trailing_zeros() as usize / 8;
                match self.after_stop::<DECODE>(at)? {
                    None => return Ok(at),
                    Some(next) if next >= i + 8 => {
                        i = next;
                        break;
                    }
                    // Candidates before `next` are done with (or inside the escape).
                    Some(next) => stops &= u64::MAX << ((next - i) * 8),
                }
            }
        }
    }

    /// The byte at `at`, a candidate stop inside a string: `None` for the closing quote, else
    /// where the string's text resumes (after an escape, or right after a byte that is no stop).
    #[inline(always)]
    fn after_stop<const DECODE: bool>(&self, at: usize) -> R<Option<usize>> {
        match *self.b.get(at).ok_or(Halt::Fallback)? {
            b'"' => Ok(None),
            b'\\' => match self.b.get(at + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(Some(at + 2)),
                _ => self.unicode_escape_end::<DECODE>(at + 1).map(Some),
            },
            b if b < 0x20 => Err(Halt::Fallback),
            _ => Ok(Some(at + 1)),
        }
    }

    /// The end of the `\u` escape whose `u` is at `at` (anything else there is a bad escape).
    #[cold]
    fn unicode_escape_end<const DECODE: bool>(&self, at: usize) -> R<usize> {
        if self.b.get(at) != Some(&b'u') {
            return Err(Halt::Fallback);
        }
        if DECODE {
            let (_, used) = unicode_escape(self.b, at + 1).ok_or(Halt::Fallback)?;
            return Ok(at + 1 + used);
        }
        let digits = self.b.get(at + 1..at + 5).ok_or(Halt::Fallback)?;
        if digits.iter().all(u8::is_ascii_hexdigit) {
            Ok(at + 5)
        } else {
            Err(Halt::Fallback)
        }
    }

    /// A number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn skip_number(&mut self) -> R<()> {
        let digits = |lx: &mut Self| {
            let start = lx.pos;
            while lx.b.get(lx.pos).is_some_and(u8::is_ascii_digit) {
                lx.pos += 1;
            }
            if lx.pos == start {
                Err(Halt::Fallback)
            } else {
                Ok(())
            }
        };
        if self.b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        if self.b.get(self.pos) == Some(&b'0') {
            self.pos += 1;
        } else {
            digits(self)?;
        }
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            digits(self)?;
        }
        if matches!(self.b.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.b.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            digits(self)?;
        }
        // serde_json refuses a number glued to a letter or digit (`01`, `1x`) at the next token.
        match self.b.get(self.pos) {
            Some(b) if b.is_ascii_alphanumeric() || *b == b'.' => Err(Halt::Fallback),
            _ => Ok(()),
        }
    }

    /// Any value, skipped.
    fn skip(&mut self, depth: usize) -> R<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            // Keys of a skipped object are skipped too (serde ignores them likewise).
            b'{' => self.members(depth, b'}', |lx| {
                lx.skip_string()?;
                lx.expect(b':')?;
                lx.skip(depth + 1)
            }),
            b'[' => self.members(depth, b']', |lx| lx.skip(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => Err(Halt::Fallback),
        }
    }

    fn enter(&self, depth: usize) -> R<()> {
        if depth >= MAX_DEPTH {
            Err(Halt::Fallback)
        } else {
            Ok(())
        }
    }

    /// An array (`close` = `]`) or object (`}`) at the cursor: `member` reads each item or
    /// `key: value` pair; the separators and brackets are read here.
    fn members(
        &mut self,
        depth: usize,
        close: u8,
        mut member: impl FnMut(&mut Self) -> R<()>,
    ) -> R<()> {
        self.enter(depth)?;
        self.expect(if close == b']' { b'[' } else { b'{' })?;
        if self.peek()? == close {
            self.pos += 1;
            return Ok(());
        }
        loop {
            member(self)?;
            match self.next()? {
                b',' => {}
                b if b == close => return Ok(()),
                _ => return Err(Halt::Fallback),
            }
        }
    }

    /// An object: `entry` is called with each key (see [`Lexer::key`]), the cursor on its value,
    /// which it consumes. A [`Halt`] from `entry` ends reading at once.
    fn object(
        &mut self,
        depth: usize,
        mut entry: impl FnMut(&mut Self, Cow<'a, [u8]>) -> R<()>,
    ) -> R<()> {
        self.members(depth, b'}', |lx| {
            lx.ws();
            let key = lx.key()?;
            lx.expect(b':')?;
            entry(lx, key)
        })
    }

    /// `null` → `None`, else a string.
    fn opt_string(&mut self) -> R<Option<Cow<'a, str>>> {
        if self.null()? {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    /// `null` → `None`, else a boolean.
    fn opt_bool(&mut self) -> R<Option<bool>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            _ => Err(Halt::Fallback),
        }
    }

    /// `spec.onCompletion`: parsed for validation in this same pass when it is in the plain
    /// form (it nearly always is), else skipped and kept as text.
    fn on_completion(&mut self) -> R<OnCompletionJson<'a>> {
        self.ws();
        let start = self.pos;
        let rest = self.b.get(start..).ok_or(Halt::Fallback)?;
        // The scanner reads text: the valid UTF-8 from here on (it stops at the value's end).
        let valid = match std::str::from_utf8(rest) {
            Ok(text) => text,
            Err(e) => rest
                .get(..e.valid_up_to())
                .and_then(|v| std::str::from_utf8(v).ok())
                .ok_or(Halt::Fallback)?,
        };
        if let Some((parsed, len)) = ParsedJson::read_prefix(valid) {
            self.pos = start + len;
            return Ok(OnCompletionJson::Parsed(parsed));
        }
        self.skip(4)?;
        let text = self.b.get(start..self.pos).ok_or(Halt::Fallback)?;
        let text = std::str::from_utf8(text).map_err(|_| Halt::Fallback)?;
        Ok(OnCompletionJson::Text(text))
    }

    /// A field of a derived struct (serde refuses duplicates there): `seen` records it.
    fn once(seen: &mut u8, bit: u8) -> R<()> {
        if *seen & bit != 0 {
            return Err(Halt::Fallback);
        }
        *seen |= bit;
        Ok(())
    }
}

impl<'a> State<'a> {
    /// [`Halt::Done`] once complete, as the serde reader's `stop_if_complete`.
    fn check(&self) -> R<()> {
        if self.complete() {
            Err(Halt::Done)
        } else {
            Ok(())
        }
    }
}

/// Reads a whole review body into `st`: `Ok` when read to its end, [`Halt::Done`] when stopped
/// early (the lexer's `pos` tells where), [`Halt::Fallback`] when the serde reader must decide.
pub(super) fn review<'a>(lx: &mut Lexer<'a>, st: &mut State<'a>) -> R<()> {
    lx.object(0, |lx, key| {
        match &*key {
            b"apiVersion" => st.api_version = lx.opt_string()?,
            b"kind" => st.kind = lx.opt_string()?,
            b"request" => {
                if !lx.null()? {
                    st.has_request = true;
                    request(lx, st)?;
                }
            }
            _ => lx.skip(1)?,
        }
        st.check()
    })?;
    lx.ws();
    if lx.pos == lx.b.len() {
        Ok(())
    } else {
        Err(Halt::Fallback)
    }
}

fn request<'a>(lx: &mut Lexer<'a>, st: &mut State<'a>) -> R<()> {
    lx.object(1, |lx, key| {
        match &*key {
            b"uid" => st.uid = Some(lx.string()?),
            b"kind" => st.gvk = Some(gvk(lx)?),
            b"operation" => st.operation = Some(lx.string()?),
            b"userInfo" => st.user_info = Some(user_info(lx)?),
            b"dryRun" => st.dry_run = lx.opt_bool()?,
            b"namespace" => st.namespace = Some(lx.opt_string()?),
            b"object" => object(lx, st, Side::New)?,
            b"oldObject" if st.needs.old_metadata => object(lx, st, Side::Old)?,
            b"oldObject" => {
                lx.skip(2)?;
                st.old = Progress::DONE;
            }
            _ => lx.skip(2)?,
        }
        st.check()
    })
}

fn gvk<'a>(lx: &mut Lexer<'a>) -> R<GroupVersionKind<'a>> {
    let mut out = GroupVersionKind::default();
    let mut seen = 0;
    lx.object(2, |lx, key| {
        match &*key {
            b"group" => {
                Lexer::once(&mut seen, 1)?;
                out.group = lx.string()?;
            }
            b"version" => {
                Lexer::once(&mut seen, 2)?;
                out.version = lx.string()?;
            }
            b"kind" => {
                Lexer::once(&mut seen, 4)?;
                out.kind = lx.string()?;
            }
            _ => lx.skip(3)?,
        }
        Ok(())
    })?;
    Ok(out)
}

fn user_info<'a>(lx: &mut Lexer<'a>) -> R<UserInfo<'a>> {
    let mut out = UserInfo::default();
    if lx.null()? {
        return Ok(out);
    }
    let mut seen = 0;
    lx.object(2, |lx, key| {
        if *key == *b"username" {
            Lexer::once(&mut seen, 1)?;
            out.username = lx.opt_string()?;
        } else {
            lx.skip(3)?;
        }
        Ok(())
    })?;
    Ok(out)
}

/// `object` or `oldObject`, written into the state as it is read so reading can stop inside it.
fn object<'a>(lx: &mut Lexer<'a>, st: &mut State<'a>, side: Side) -> R<()> {
    if lx.null()? {
        *st.slot(side) = None;
        *st.progress(side) = Progress::DONE;
        return Ok(());
    }
    *st.slot(side) = Some(Object::default());
    let read_spec = st.needs.spec && side == Side::New;
    lx.object(2, |lx, key| {
        match &*key {
            b"metadata" => {
                let m = metadata(lx)?;
                if let Some(o) = st.slot(side) {
                    o.metadata = m;
                }
                st.progress(side).metadata = true;
            }
            b"spec" if read_spec => {
                let spec = spec(lx, st)?;
                if let Some(o) = st.slot(side) {
                    o.spec = spec;
                }
                st.progress(side).spec = true;
            }
            _ => lx.skip(3)?,
        }
        st.check()
    })?;
    *st.progress(side) = Progress::DONE;
    Ok(())
}

fn metadata<'a>(lx: &mut Lexer<'a>) -> R<Metadata<'a>> {
    let mut m = Metadata::default();
    if lx.null()? {
        return Ok(m);
    }
    let mut seen = 0;
    lx.object(3, |lx, key| {
        match &*key {
            b"name" => {
                Lexer::once(&mut seen, 1)?;
                m.name = lx.opt_string()?;
            }
            b"generateName" => {
                Lexer::once(&mut seen, 2)?;
                m.generate_name = lx.opt_string()?;
            }
            b"namespace" => {
                Lexer::once(&mut seen, 4)?;
                m.namespace = lx.opt_string()?;
            }
            b"labels" => {
                Lexer::once(&mut seen, 8)?;
                m.labels = string_map(lx)?;
            }
            b"annotations" => {
                Lexer::once(&mut seen, 16)?;
                m.annotations = string_map(lx)?;
            }
            _ => lx.skip(4)?,
        }
        Ok(())
    })?;
    Ok(m)
}

/// Labels or annotations: `null` → `None`; a later duplicate key wins, as in a serde map.
fn string_map<'a>(lx: &mut Lexer<'a>) -> R<Option<StrMap<'a>>> {
    if lx.null()? {
        return Ok(None);
    }
    let mut map = StrMap::new();
    lx.members(4, b'}', |lx| {
        // Keys are kept, so decoded (unlike field names, see `Lexer::key`).
        let key = lx.string()?;
        lx.expect(b':')?;
        map.insert(key, lx.json_str()?);
        Ok(())
    })?;
    Ok(Some(map))
}

/// A TaskSpawner's `spec`: `onCompletion` kept as text; stops right after it when complete.
fn spec<'a>(lx: &mut Lexer<'a>, st: &mut State<'a>) -> R<Spec<'a>> {
    if lx.null()? {
        return Ok(Spec::Absent);
    }
    if lx.peek()? != b'{' {
        // The serde reader names the JSON type.
        return Err(Halt::Fallback);
    }
    // Written into the state first: reading may stop inside.
    if let Some(o) = st.slot(Side::New) {
        o.spec = Spec::Object {
            on_completion: None,
        };
    }
    lx.object(3, |lx, key| {
        if *key == *b"onCompletion" {
            let on_completion = if lx.null()? {
                None
            } else {
                Some(lx.on_completion()?)
            };
            if let Some(o) = st.slot(Side::New) {
                o.spec = Spec::Object { on_completion };
            }
            st.new.spec = true;
            st.check()
        } else {
            lx.skip(4)
        }
    })?;
    match st.slot(Side::New) {
        Some(o) => Ok(std::mem::take(&mut o.spec)),
        None => Ok(Spec::Absent),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::super::{Needs, ParseError, State, read_with_serde};
    use super::*;
    use crate::fixtures;
    use crate::review::Request;

    const ALL: [Needs; 3] = [Needs::METADATA, Needs::METADATA_AND_OLD, Needs::SPEC];

    /// The serde reader alone, as `parse` was before the fast path.
    fn serde_only(body: &[u8], needs: Needs) -> Result<Request<'_>, ParseError> {
        let mut state = State::new(needs);
        let read = read_with_serde(body, &mut state)?;
        if state.stopped && body.trim_ascii_end().last() != Some(&b'}') {
            return Err(ParseError::Malformed(
                "truncated: the body does not end with `}`".to_owned(),
            ));
        }
        super::super::check_envelope(state.api_version.as_deref(), state.kind.as_deref())?;
        state.into_request(read)
    }

    /// Whether the fast path decided `body` itself (no fallback).
    fn fast_decides(body: &[u8], needs: Needs) -> bool {
        let mut state = State::new(needs);
        review(&mut Lexer::new(body), &mut state) != Err(Halt::Fallback)
    }

    /// Both readers give the same answer; positions may differ by the closing bytes serde peeks.
    fn same(body: &[u8], needs: Needs) {
        let (fast, slow) = (super::super::parse(body, needs), serde_only(body, needs));
        let show = |r: &Result<Request<'_>, ParseError>| match r {
            Ok(r) => format!(
                "{:?}",
                Request {
                    read: 0,
                    ..clone(r)
                }
            ),
            Err(e) => format!("{e:?}"),
        };
        assert_eq!(
            show(&fast),
            show(&slow),
            "{needs:?} on {:?}",
            String::from_utf8_lossy(body)
        );
        if let (Ok(f), Ok(s)) = (&fast, &slow) {
            assert!(
                f.read.abs_diff(s.read) <= 2,
                "read {} vs {}",
                f.read,
                s.read
            );
        }
    }

    /// A structural copy for comparing (Request holds borrowed data and is not Clone).
    fn clone<'a>(r: &Request<'a>) -> Request<'a> {
        let object = |o: &Option<Object<'a>>| {
            o.as_ref().map(|o| Object {
                metadata: Metadata {
                    name: o.metadata.name.clone(),
                    generate_name: o.metadata.generate_name.clone(),
                    namespace: o.metadata.namespace.clone(),
                    labels: o.metadata.labels.clone(),
                    annotations: o.metadata.annotations.clone(),
                },
                spec: match &o.spec {
                    Spec::Absent => Spec::Absent,
                    Spec::Object { on_completion } => Spec::Object {
                        on_completion: on_completion
                            .as_ref()
                            .map(|j| OnCompletionJson::Text(j.text())),
                    },
                    Spec::NotObject(k) => Spec::NotObject(k),
                },
            })
        };
        Request {
            uid: r.uid.clone(),
            kind: GroupVersionKind {
                group: r.kind.group.clone(),
                version: r.kind.version.clone(),
                kind: r.kind.kind.clone(),
            },
            operation: r.operation.clone(),
            user_info: UserInfo {
                username: r.user_info.username.clone(),
            },
            dry_run: r.dry_run,
            namespace: r.namespace.clone(),
            object: object(&r.object),
            old_object: object(&r.old_object),
            read: r.read,
        }
    }

    /// Reviews of every shape the endpoints see, in serde_json's order and the API server's.
    fn bodies() -> Vec<Vec<u8>> {
        let tricky = json!({
            "kelos.dev/source-url": "https://github.com/o/r/issues/1?q=\"x\"",
            "note": "é ✓ \u{1F600} tab\tnew\nline \\ slash/ \u{1}",
            "kelos.dev/on-completion": r#"{"hooks":[{"name":"a","webhook":{"url":"https://h.example.com/x"}}]}"#,
        });
        let mut out = vec![
            fixtures::task_create(fixtures::spawned_task(tricky.clone()), "kelos"),
            fixtures::task_create(fixtures::task(json!(null), json!(null)), "kelos"),
            fixtures::task_update(
                fixtures::spawned_task(json!({"kelos.dev/webhook-deliveries": "{}"})),
                fixtures::spawned_task(tricky),
                "system:serviceaccount:kelos-hooks:kelos-hooks-dispatcher",
            ),
            fixtures::spawner_review("CREATE", fixtures::valid_hooks()),
            fixtures::spawner_review("UPDATE", fixtures::valid_hooks()),
            fixtures::spawner_review("DELETE", json!(null)),
            fixtures::spawner_review(
                "CREATE",
                json!({"hooks": [{"name": "x", "phases": [1.5e3, -0, true, null, [], {}]}]}),
            ),
        ];
        let ordered: Vec<Vec<u8>> = out
            .iter()
            .map(|b| fixtures::in_api_server_order(b))
            .collect();
        out.extend(ordered);
        out
    }

    #[test]
    fn api_server_order_is_read_by_the_fast_path_and_stops_early() {
        for body in bodies().iter().skip(7) {
            for needs in ALL {
                assert!(
                    fast_decides(body, needs),
                    "{}",
                    String::from_utf8_lossy(body)
                );
                let r = super::super::parse(body, needs).unwrap();
                assert!(r.read < body.len(), "{needs:?}: read to the end");
                same(body, needs);
            }
        }
    }

    #[test]
    fn both_readers_agree_on_every_truncation() {
        for body in bodies() {
            for needs in ALL {
                // Every cut in the part the readers look at, a stride beyond it.
                let mut cut = 0;
                while cut < body.len() {
                    same(&body[..cut], needs);
                    cut += if cut < 2000 { 1 } else { 41 };
                }
            }
        }
    }

    #[test]
    fn both_readers_agree_on_every_corruption() {
        let replacements: &[&[u8]] = &[
            b"\"", b"\\", b"{", b"}", b"[", b"]", b",", b":", b"x", b"0", b"-", b".", b"e", b" ",
            b"\x01", b"\xff", b"\\u00", b"\\ud800", b"null", b"1e5", b"\"\"",
        ];
        for (n, body) in bodies().into_iter().enumerate() {
            // Dense over the part the readers look at in the API server's order (bodies 7..), in
            // steps of varying size elsewhere (a debug build runs this in CI).
            let step = |i: usize| match (n >= 7, i < 1600) {
                (true, true) => 1 + i % 5,
                _ => 17 + i % 23,
            };
            let mut i = 0;
            while i < body.len() {
                for r in replacements {
                    let mut changed = body[..i].to_vec();
                    changed.extend_from_slice(r);
                    changed.extend_from_slice(&body[i + 1..]);
                    for needs in ALL {
                        same(&changed, needs);
                    }
                }
                i += step(i);
            }
        }
    }

    #[test]
    fn odd_but_valid_json_is_read_the_same() {
        let cases = [
            r#" { "kind" : "AdmissionReview" , "apiVersion" : "admission.k8s.io/v1" , "request" : { "uid" : "u" , "kind" : { "group" : "kelos.dev" , "version" : "v1alpha2" , "kind" : "Task" } , "namespace" : "ns" , "operation" : "CREATE" , "userInfo" : { "username" : "a" } , "object" : { "metadata" : { "labels" : { "a" : "b" , "a" : "c" } } } } } "#,
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"\u0075","kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task","x":[1,-2.5E-3,{"y":[[]]}]},"namespace":null,"operation":"CREATE","userInfo":null,"object":{"metadata":{"name":"\ud83d\ude00"}}}}"#,
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":"g","group":"h"},"namespace":"n","operation":"CREATE","userInfo":{},"object":{}}}"#,
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{},"namespace":"n","operation":"CREATE","userInfo":{"username":"a","username":"b"},"object":{"metadata":{}}}}"#,
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{},"namespace":"n","operation":"CREATE","userInfo":{},"object":{"metadata":{"name":"a","name":"b"}}}}"#,
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{},"namespace":"n","operation":"CREATE","userInfo":{},"object":{"metadata":{},"spec":[1]}}}"#,
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{},"namespace":"n","operation":"CREATE","userInfo":{},"object":{"metadata":{},"spec":{"onCompletion":null,"onCompletion":{"hooks":[]}}}}}"#,
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{},"namespace":"n","operation":"UPDATE","userInfo":{},"object":{"metadata":{}},"object":{"metadata":{"name":"second"}},"oldObject":{"metadata":{"annotations":{"k":"v"}}}}}"#,
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{},"dryRun":true,"namespace":"n","operation":"UPDATE","userInfo":{},"object":{"metadata":{}},"oldObject":null}}"#,
            "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"u\",\"kind\":{},\"namespace\":\"n\",\"operation\":\"CREATE\",\"userInfo\":{},\"object\":{\"metadata\":{\"name\":\"a\u{7f}\u{80}\"}}}}",
            "[]",
            "{}",
            "null",
            "{\"request\":null}",
        ];
        for body in cases {
            for needs in ALL {
                same(body.as_bytes(), needs);
            }
        }
        let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        let body = format!(
            r#"{{"kind":"AdmissionReview","x":{deep},"apiVersion":"admission.k8s.io/v1"}}"#
        );
        same(body.as_bytes(), Needs::METADATA);
    }
}
