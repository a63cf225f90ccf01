//! The dashboard's session: a cookie the browser sends instead of the bearer token, derived from the token
//! (HMAC-SHA256 keyed by the token over the expiry time), so the token itself never sits in the browser,
//! a session ends by itself after [`SESSION_SECS`], and changing the token ends every session at once.
//! The server keeps no session table: a cookie is valid when its MAC is right and its expiry is ahead.

use ring::hmac;

/// The cookie's name.
pub(crate) const COOKIE: &str = "meridian_session";
/// How long a login lasts.
pub(crate) const SESSION_SECS: u64 = 12 * 3600;
/// What the MAC covers besides the expiry: a version, so a future format cannot be confused with this one.
const CONTEXT: &[u8] = b"meridian dashboard session v1|";

fn mac(token: &str, expires_s: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    let message = [CONTEXT, expires_s.to_string().as_bytes()].concat();
    hex(hmac::sign(&key, &message).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A session value for `token`, valid until `now_s + SESSION_SECS`.
pub(crate) fn issue(token: &str, now_s: u64) -> String {
    let expires = now_s + SESSION_SECS;
    format!("{expires}.{}", mac(token, expires))
}

/// Whether `value` is a session of `token` still valid at `now_s`.
pub(crate) fn valid(token: &str, value: &str, now_s: u64) -> bool {
    let Some((expires, given)) = value.split_once('.') else {
        return false;
    };
    let Ok(expires_s) = expires.parse::<u64>() else {
        return false;
    };
    if expires_s <= now_s || expires_s > now_s + SESSION_SECS {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    let Some(tag) = unhex(given) else {
        return false;
    };
    // ring compares in constant time.
    hmac::verify(&key, &[CONTEXT, expires.as_bytes()].concat(), &tag).is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The session cookie's value in a `Cookie` header, if there is one.
pub(crate) fn from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
}

/// `Set-Cookie` for a new session: HttpOnly (scripts cannot read it), SameSite=Strict (other sites
/// cannot make the browser send it), Secure (never sent over plain HTTP but to a loopback address, which
/// browsers treat as a secure context: `Connection::keeps_secure_cookies`), for the whole origin.
pub(crate) fn set_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; Path=/; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict; Secure")
}

/// `Set-Cookie` that ends the session (with the same attributes, or the browser would keep the old one).
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn a_session_is_valid_for_its_token_until_it_expires() {
        let s = issue(TOKEN, 1000);
        assert!(valid(TOKEN, &s, 1000));
        assert!(valid(TOKEN, &s, 1000 + SESSION_SECS - 1));
        assert!(!valid(TOKEN, &s, 1000 + SESSION_SECS));
        assert!(!valid("another-token-0123456789", &s, 1000));
    }

    #[test]
    fn a_forged_or_mangled_session_is_refused() {
        let s = issue(TOKEN, 1000);
        let (exp, tag) = s.split_once('.').unwrap();
        // A later expiry with the old MAC.
        let later: u64 = exp.parse::<u64>().unwrap() + 10;
        assert!(!valid(TOKEN, &format!("{later}.{tag}"), 1000));
        // An expiry too far ahead (even with a right MAC, which only the token holder can make).
        let far = 1000 + SESSION_SECS * 2;
        assert!(!valid(TOKEN, &format!("{far}.{}", mac(TOKEN, far)), 1000));
        for bad in ["", ".", "x.y", "123", "123.zz", &format!("{exp}.{}", &tag[1..])] {
            assert!(!valid(TOKEN, bad, 1000), "{bad:?}");
        }
    }

    #[test]
    fn cookie_header_parsing() {
        assert_eq!(
            from_cookie_header("a=b; meridian_session=12.ab; c=d"),
            Some("12.ab")
        );
        assert_eq!(from_cookie_header("a=b"), None);
        assert!(set_cookie("v").contains("HttpOnly; SameSite=Strict; Secure"));
        assert!(clear_cookie().contains("Max-Age=0; HttpOnly; SameSite=Strict; Secure"));
    }
}
