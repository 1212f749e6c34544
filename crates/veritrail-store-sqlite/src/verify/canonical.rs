/// Deeper nesting is left to the reference implementation.
const MAX_DEPTH: usize = 32;
/// Integers up to this magnitude print as themselves in canonical JSON.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Top-level fields of a canonical record.
#[derive(Debug, Default)]
pub(super) struct Fields<'a> {
    pub(super) seq: Option<u64>,
    pub(super) tenant: Option<&'a str>,
    pub(super) id: Option<&'a str>,
}

/// `Some` if `bytes` are certainly a canonical JSON object whose `seq` (if any) is a
/// non-negative integer and `tenant` and `id` (if any) are strings without escapes.
pub(super) fn check_record(bytes: &[u8]) -> Option<Fields<'_>> {
    let mut scanner = Scanner { bytes, pos: 0 };
    let mut fields = Fields::default();
    if scanner.peek()? != b'{' {
        return None;
    }
    scanner.object(0, Some(&mut fields))?;
    (scanner.pos == bytes.len()).then_some(fields)
}

/// Whether `bytes` are certainly canonical JSON (`None`: not sure).
#[cfg(test)]
pub(super) fn check(bytes: &[u8]) -> Option<()> {
    let mut scanner = Scanner { bytes, pos: 0 };
    scanner.value(0)?;
    (scanner.pos == bytes.len()).then_some(())
}

/// What a value was, as far as the top-level fields care.
enum Scanned<'a> {
    NonNegativeInteger(u64),
    /// A string without escapes: its UTF-8 bytes.
    PlainString(&'a [u8]),
    Other,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn value(&mut self, depth: usize) -> Option<Scanned<'a>> {
        match self.peek()? {
            b'{' => self.object(depth + 1, None),
            b'[' => self.array(depth + 1),
            b'"' => {
                let string = self.string()?;
                Some(if string.escaped { Scanned::Other } else { Scanned::PlainString(string.raw) })
            }
            b'-' | b'0'..=b'9' => self.integer(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    fn literal(&mut self, literal: &[u8]) -> Option<Scanned<'a>> {
        let end = self.pos.checked_add(literal.len())?;
        if self.bytes.get(self.pos..end)? != literal {
            return None;
        }
        self.pos = end;
        Some(Scanned::Other)
    }

    /// An object whose member names are ASCII without escapes, in strictly increasing
    /// byte order (which is UTF-16 order for ASCII, and rules out duplicates). At the top
    /// level, captures the record fields.
    fn object(&mut self, depth: usize, mut fields: Option<&mut Fields<'a>>) -> Option<Scanned<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1; // '{'
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Scanned::Other);
        }
        let mut previous: Option<&[u8]> = None;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let name = self.string()?;
            if name.escaped || !name.ascii {
                return None;
            }
            let name = name.raw;
            if previous.is_some_and(|previous| previous >= name) {
                return None;
            }
            previous = Some(name);
            if self.next()? != b':' {
                return None;
            }
            let value = self.value(depth)?;
            if let Some(fields) = fields.as_deref_mut() {
                match (name, value) {
                    (b"seq", Scanned::NonNegativeInteger(seq)) => fields.seq = Some(seq),
                    (b"tenant", Scanned::PlainString(tenant)) => fields.tenant = std::str::from_utf8(tenant).ok(),
                    (b"id", Scanned::PlainString(id)) => fields.id = std::str::from_utf8(id).ok(),
                    (b"seq" | b"tenant" | b"id", _) => return None,
                    _ => {}
                }
            }
            match self.next()? {
                b',' => {}
                b'}' => return Some(Scanned::Other),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Scanned<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1; // '['
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(Scanned::Other);
        }
        loop {
            self.value(depth)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(Scanned::Other),
                _ => return None,
            }
        }
    }

    /// A string in canonical form: UTF-8, no raw control character, and only the escapes
    /// RFC 8785 writes (`\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, and `\u00xx` in
    /// lowercase hex for the other control characters).
    fn string(&mut self) -> Option<ScannedString<'a>> {
        let bytes = self.bytes;
        let start = self.pos + 1; // after '"'
        let mut pos = start;
        let mut escaped = false;
        // The OR of every byte: its high bit tells whether the string is all ASCII.
        let mut high_bits = 0u8;
        loop {
            while let Some(&word) = bytes.get(pos..).and_then(|rest| rest.first_chunk::<8>()) {
                if needs_attention(u64::from_le_bytes(word)) {
                    break;
                }
                pos += 8;
            }
            let byte = *bytes.get(pos)?;
            pos += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos = pos;
                    self.escape()?;
                    pos = self.pos;
                }
                0x00..=0x1f => return None,
                _ => high_bits |= byte,
            }
        }
        self.pos = pos;
        let raw = &bytes[start..pos - 1];
        let ascii = high_bits < 0x80;
        if !ascii {
            std::str::from_utf8(raw).ok()?;
        }
        Some(ScannedString { raw, escaped, ascii })
    }

    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => Some(()),
            b'u' => {
                let end = self.pos.checked_add(4)?;
                let &[b'0', b'0', high, low] = self.bytes.get(self.pos..end)? else {
                    return None;
                };
                let low = match low {
                    b'0'..=b'9' => low - b'0',
                    b'a'..=b'f' => low - b'a' + 10,
                    _ => return None,
                };
                let code = match high {
                    b'0' => low,
                    b'1' => 0x10 + low,
                    _ => return None,
                };
                // These have short forms.
                if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return None;
                }
                self.pos = end;
                Some(())
            }
            _ => None,
        }
    }

    /// An integer without fraction or exponent, within ±2^53, in shortest form.
    fn integer(&mut self) -> Option<Scanned<'a>> {
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => {
                while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
            _ => return None,
        }
        // A fraction, an exponent or a leading zero: not for this check.
        if matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) {
            return None;
        }
        let digits = &self.bytes[start..self.pos];
        if digits.len() > 16 {
            return None;
        }
        let magnitude = digits.iter().fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
        match (negative, magnitude) {
            (_, magnitude) if magnitude > MAX_EXACT_INTEGER => None,
            (true, 0) => None,
            (true, _) => Some(Scanned::Other),
            (false, magnitude) => Some(Scanned::NonNegativeInteger(magnitude)),
        }
    }
}

/// Whether any of 8 bytes is a quote, a backslash, a control character or not ASCII (may
/// say yes for bytes after one that is: the caller then looks at them one by one).
fn needs_attention(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    // The classic "has a zero byte" and "has a byte less than n" bit tricks.
    let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGH_BITS != 0;
    let quote = has_zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS != 0;
    quote || backslash || control || word & HIGH_BITS != 0
}

struct ScannedString<'a> {
    /// The bytes between the quotes (escapes not decoded), valid UTF-8.
    raw: &'a [u8],
    escaped: bool,
    ascii: bool,
}
