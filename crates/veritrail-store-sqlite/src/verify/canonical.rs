//! The canonical-form check of sealed records, in one pass over the bytes and without
//! allocation: it runs once per record of a full verification, so it is written for speed.
//!
//! Two facts make it cheap. Canonical JSON holds no raw control character anywhere (there is no
//! whitespace between tokens, and strings escape them), so one word-at-a-time sweep over the
//! whole record settles that, and whether it is all ASCII, before parsing; in an all-ASCII
//! record, strings then only need their next quote or backslash found, eight bytes at a time.

/// Deeper nesting is left to the reference implementation.
const MAX_DEPTH: usize = 32;
/// Integers up to this magnitude print as themselves in canonical JSON.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

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
    let mut quotes = [0; MASKED_BYTES / 64];
    let mut scanner = Scanner::new(bytes, &mut quotes)?;
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
    let mut quotes = [0; MASKED_BYTES / 64];
    let mut scanner = Scanner::new(bytes, &mut quotes)?;
    scanner.value(0)?;
    (scanner.pos == bytes.len()).then_some(())
}

/// Whether a word holds a zero byte, as a mask whose lowest set bit marks the first one (bits
/// above it may be wrong: the classic "has a zero byte" trick borrows across bytes).
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGH_BITS
}

/// Records shorter than this get their quotes located in one sweep ([`Sweep::quotes`]).
const MASKED_BYTES: usize = 4096;

/// Whether each byte of a word is zero, exactly, in the high bit of each byte.
fn exact_zero_bytes(word: u64) -> u64 {
    !(((word & !HIGH_BITS).wrapping_add(!HIGH_BITS)) | word) & HIGH_BITS
}

/// The high bits of the eight bytes of a word, as eight bits (byte `i` to bit `i`).
fn gather(high_bits: u64) -> u64 {
    // Shifts rather than the usual multiplication, which SSE2 has no instruction for.
    let mut bits = high_bits >> 7;
    bits |= bits >> 7;
    bits |= bits >> 14;
    bits |= bits >> 28;
    bits & 0xff
}

/// What one pass over a whole record tells.
struct Sweep {
    /// Every byte is ASCII.
    ascii: bool,
    /// Some byte is a backslash (some string has an escape).
    backslash: bool,
}

/// `None` if `bytes` hold a control character (never raw in canonical JSON). Else whether they
/// are all ASCII and hold a backslash, with, if they are shorter than [`MASKED_BYTES`], a bit
/// set in `quotes` for every quote (bit `i % 64` of word `i / 64` for byte `i`).
fn sweep(bytes: &[u8], quotes: &mut [u64; MASKED_BYTES / 64]) -> Option<Sweep> {
    let (mut control, mut high, mut backslash) = (0u64, 0u64, 0u64);
    let mut word = |word: &[u8; 8]| {
        let word = u64::from_le_bytes(*word);
        // A byte below 0x20 minus 0x20 borrows into its high bit; bytes >= 0x80 are excluded by
        // `!word` (and collected in `high`). Borrows only make bits above a true hit wrong.
        control |= word.wrapping_sub(ONES * 0x20) & !word;
        high |= word;
        backslash |= zero_bytes(word ^ (ONES * u64::from(b'\\')));
        gather(exact_zero_bytes(word ^ (ONES * u64::from(b'"'))))
    };
    let (blocks, rest) = bytes.as_chunks::<64>();
    let (words, tail) = rest.as_chunks::<8>();
    // The last few bytes padded with spaces, which are nothing this looks for.
    let mut last = [b' '; 8];
    last[..tail.len()].copy_from_slice(tail);
    let masked = bytes.len() < MASKED_BYTES;
    for (i, block) in blocks.iter().enumerate() {
        let (block, _) = block.as_chunks::<8>();
        let mut bits = 0;
        for (j, w) in block.iter().enumerate() {
            bits |= word(w) << (8 * j);
        }
        if masked {
            quotes[i] = bits;
        }
    }
    let mut bits = 0;
    for (j, w) in words.iter().chain([&last]).enumerate() {
        bits |= word(w) << (8 * j);
    }
    if masked {
        quotes[blocks.len()] = bits;
    }
    if control & HIGH_BITS != 0 {
        return None;
    }
    Some(Sweep { ascii: high & HIGH_BITS == 0, backslash: backslash != 0 })
}

/// What a value was, as far as the top-level fields care.
enum Scanned<'a> {
    NonNegativeInteger(u64),
    /// A string without escapes: its UTF-8 bytes.
    PlainString(&'a [u8]),
    Other,
}

struct Scanner<'a, 'q> {
    bytes: &'a [u8],
    pos: usize,
    /// Where the quotes are, when [`sweep`] located them and no string has an escape.
    quotes: Option<&'q [u64]>,
    /// Every byte is ASCII (else the whole input was checked to be UTF-8, and member names are
    /// checked to be ASCII one by one).
    ascii: bool,
}

impl<'a, 'q> Scanner<'a, 'q> {
    /// `None` if `bytes` cannot be canonical JSON at all (a raw control character, invalid UTF-8).
    fn new(bytes: &'a [u8], quotes: &'q mut [u64; MASKED_BYTES / 64]) -> Option<Self> {
        let Sweep { ascii, backslash } = sweep(bytes, quotes)?;
        let quotes = (!backslash && bytes.len() < MASKED_BYTES).then(|| &quotes[..bytes.len().div_ceil(64)]);
        if !ascii {
            // Strings are delimited by ASCII quotes, which never occur inside a UTF-8 sequence,
            // so valid UTF-8 as a whole means every string is valid UTF-8.
            std::str::from_utf8(bytes).ok()?;
        }
        Some(Self { bytes, pos: 0, quotes, ascii })
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    // Inlined into `object` and `array` (which are not), like `string`: a call per member was
    // a fifth of the check.
    #[inline(always)]
    fn value(&mut self, depth: usize) -> Option<Scanned<'a>> {
        match self.peek()? {
            b'"' => {
                let (raw, escaped) = self.string()?;
                Some(if escaped { Scanned::Other } else { Scanned::PlainString(raw) })
            }
            b'{' => self.object(depth + 1, None),
            b'[' => self.array(depth + 1),
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
    #[inline(never)]
    fn object(&mut self, depth: usize, mut fields: Option<&mut Fields<'a>>) -> Option<Scanned<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1; // '{'
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Scanned::Other);
        }
        // The previous member name, and its first eight bytes as a big-endian number.
        let mut previous: Option<(&[u8], u64)> = None;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let (name, escaped) = self.string()?;
            if escaped || (!self.ascii && !name.is_ascii()) {
                return None;
            }
            let head = head(self.bytes, self.pos - 1 - name.len(), name.len());
            if let Some((previous, previous_head)) = previous {
                // Byte order (names hold no NUL byte, so zero padding sorts a prefix first).
                let ascending = previous_head < head
                    || (previous_head == head
                        && previous.get(8..).unwrap_or_default() < name.get(8..).unwrap_or_default());
                if !ascending {
                    return None;
                }
            }
            previous = Some((name, head));
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

    #[inline(never)]
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

    /// A string in canonical form, the scanner on its opening quote: only the escapes RFC 8785
    /// writes (`\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, and `\u00xx` in lowercase hex for the
    /// other control characters). Control characters and UTF-8 were settled by [`sweep`].
    /// Returns the bytes between the quotes (escapes not decoded) and whether it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let bytes = self.bytes;
        let start = self.pos + 1;
        if let Some(quotes) = self.quotes {
            // No escapes anywhere: the string ends at the next quote.
            let mut word = start / 64;
            let mut bits = *quotes.get(word)? & (u64::MAX << (start % 64));
            while bits == 0 {
                word += 1;
                bits = *quotes.get(word)?;
            }
            let end = word * 64 + bits.trailing_zeros() as usize;
            self.pos = end + 1;
            return Some((bytes.get(start..end)?, false));
        }
        let mut pos = start;
        let mut escaped = false;
        loop {
            // The next quote or backslash, eight bytes at a time.
            while let Some(word) = bytes.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
                let word = u64::from_le_bytes(*word);
                let found = zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\')));
                if found != 0 {
                    pos += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                pos += 8;
            }
            match *bytes.get(pos)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos = pos + 1;
                    self.escape()?;
                    pos = self.pos;
                }
                _ => pos += 1,
            }
        }
        self.pos = pos + 1;
        Some((&bytes[start..pos], escaped))
    }

    /// The escape after a backslash.
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
        let mut magnitude = 0u64;
        match self.next()? {
            b'0' => {}
            digit @ b'1'..=b'9' => {
                magnitude = u64::from(digit - b'0');
                while let Some(digit) = self.peek().filter(u8::is_ascii_digit) {
                    if self.pos - start >= 16 {
                        return None;
                    }
                    magnitude = magnitude * 10 + u64::from(digit - b'0');
                    self.pos += 1;
                }
            }
            _ => return None,
        }
        // A fraction, an exponent or a leading zero: not for this check.
        if matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) {
            return None;
        }
        match (negative, magnitude) {
            (_, magnitude) if magnitude > MAX_EXACT_INTEGER => None,
            (true, 0) => None,
            (true, _) => Some(Scanned::Other),
            (false, magnitude) => Some(Scanned::NonNegativeInteger(magnitude)),
        }
    }
}

/// The first eight bytes of the `len` bytes at `start` as a big-endian number, zero-padded.
fn head(bytes: &[u8], start: usize, len: usize) -> u64 {
    match bytes.get(start..).and_then(<[u8]>::first_chunk::<8>) {
        // Loaded whole (what follows a name in canonical JSON is at least `":` and a value).
        Some(word) if len >= 8 => u64::from_be_bytes(*word),
        Some(word) => u64::from_be_bytes(*word) & !(u64::MAX >> (len * 8)),
        None => bytes[start..start + len.min(8)]
            .iter()
            .enumerate()
            .fold(0, |head, (i, &byte)| head | u64::from(byte) << (56 - 8 * i)),
    }
}
