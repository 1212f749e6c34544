//! Masking of personal values for readers without the `pii:read` permission: enough shape to
//! recognise a value, not enough to learn it.

/// `jane.doe@acme.com` → `j***@a***.com`. Text without `@` is masked like [`text`].
pub fn email(value: &str) -> String {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return text(value);
    };
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    let (host, tld) = match domain.rsplit_once('.') {
        Some((host, tld)) => (host, format!(".{tld}")),
        None => (domain, String::new()),
    };
    format!("{}***@{}***{}", first(local), first(host), tld)
}

/// `203.0.113.7` → `203.0.113.x`; IPv6 keeps the first three groups (`2001:db8:85a3::x`);
/// anything else is masked like [`text`].
pub fn ip(value: &str) -> String {
    if let Ok(v4) = value.parse::<std::net::Ipv4Addr>() {
        let [a, b, c, _] = v4.octets();
        return format!("{a}.{b}.{c}.x");
    }
    if let Ok(v6) = value.parse::<std::net::Ipv6Addr>() {
        let s = v6.segments();
        return format!("{:x}:{:x}:{:x}::x", s[0], s[1], s[2]);
    }
    text(value)
}

/// Every word keeps its first character: `Jane Smith` → `J*** S***`.
pub fn text(value: &str) -> String {
    value
        .split_whitespace()
        .map(|word| format!("{}***", word.chars().next().unwrap_or('*')))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(email("jane.doe@acme.com"), "j***@a***.com");
        assert_eq!(email("x@localhost"), "x***@l***");
        assert_eq!(email("nope"), "n***");
        assert_eq!(ip("203.0.113.7"), "203.0.113.x");
        assert_eq!(ip("2001:db8:85a3::8a2e:370:7334"), "2001:db8:85a3::x");
        assert_eq!(ip("garbage here"), "g*** h***");
        assert_eq!(text("Jane Smith"), "J*** S***");
        assert_eq!(text("Émile"), "É***");
        assert_eq!(text(""), "");
    }
}
