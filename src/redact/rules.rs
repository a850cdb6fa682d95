//! Key-name rules: normalisation and matching of header names, query parameter
//! names and JSON keys.

/// Header names whose values are always censored (lowercase, as `http` stores them).
pub(crate) const DEFAULT_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-access-token",
    "x-refresh-token",
    "x-id-token",
    "x-session-id",
    "x-session-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "x-vault-token",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-slack-signature",
    "x-webhook-signature",
];

/// Key names matched exactly after normalisation (see [`normalize`]).
pub(crate) const DEFAULT_KEYS: &[&str] = &[
    "pwd",
    "pass",
    "pin",
    "otp",
    "totp",
    "mfacode",
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "authtoken",
    "bearertoken",
    "sessiontoken",
    "securitytoken",
    "csrftoken",
    "xsrftoken",
    "csrf",
    "xsrf",
    "jwt",
    "auth",
    "bearer",
    "session",
    "sessionid",
    "sessid",
    "sid",
    "jsessionid",
    "phpsessid",
    "cookie",
    "setcookie",
    "cookies",
    "ssn",
    "socialsecuritynumber",
    "cardnumber",
    "ccnumber",
    "creditcard",
    "creditcardnumber",
    "cardno",
    "pan",
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "securitycode",
    "iban",
    "accountnumber",
    "routingnumber",
    "dsn",
    "connectionstring",
    "databaseurl",
    "signature",
];

/// Fragments: a key containing one of these (after normalisation) is sensitive.
pub(crate) const DEFAULT_FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "credential",
    "authorization",
];

/// Names that are sensitive only as query parameters (too common as JSON keys).
pub(crate) const DEFAULT_QUERY_PARAMS: &[&str] = &[
    "code",
    "sig",
    "xamzsignature",
    "xamzcredential",
    "xgoogsignature",
    "xgoogcredential",
];

/// Normalised names longer than this are matched through a heap buffer.
const INLINE: usize = 64;

/// Appends the normalised form of `name` to `out`: ASCII lowercased, `-` and `_`
/// dropped. Other bytes (non-ASCII included) are kept as they are.
pub(crate) fn normalize_into(name: &[u8], out: &mut Vec<u8>) {
    out.extend(
        name.iter()
            .filter(|&&b| b != b'-' && b != b'_')
            .map(u8::to_ascii_lowercase),
    );
}

/// The normalised form of a rule name.
pub(crate) fn normalize(name: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len());
    normalize_into(name.as_bytes(), &mut out);
    out.into_boxed_slice()
}

/// Compiled key rules.
#[derive(Clone, Debug)]
pub(crate) struct KeyRules {
    /// Exact names, bucketed by length (index = length, last bucket = longer).
    exact: Vec<Vec<Box<[u8]>>>,
    fragments: Vec<Box<[u8]>>,
    shortest_fragment: usize,
    /// First bytes of `fragments`: most positions of a key are rejected by one look-up.
    fragment_first: Vec<bool>,
}

impl KeyRules {
    pub(crate) fn new<'n>(
        exact: impl IntoIterator<Item = &'n [u8]>,
        fragments: impl IntoIterator<Item = &'n [u8]>,
    ) -> Self {
        let mut buckets: Vec<Vec<Box<[u8]>>> = vec![Vec::new(); INLINE + 2];
        for name in exact {
            if name.is_empty() {
                continue;
            }
            let bucket = name.len().min(INLINE + 1);
            if !buckets[bucket].iter().any(|n| **n == *name) {
                buckets[bucket].push(name.into());
            }
        }
        let mut frags: Vec<Box<[u8]>> = Vec::new();
        for fragment in fragments {
            if !fragment.is_empty() && !frags.iter().any(|f| **f == *fragment) {
                frags.push(fragment.into());
            }
        }
        let shortest_fragment = frags.iter().map(|f| f.len()).min().unwrap_or(usize::MAX);
        let mut fragment_first = vec![false; 256];
        for f in &frags {
            fragment_first[usize::from(f[0])] = true;
        }
        Self {
            exact: buckets,
            fragments: frags,
            shortest_fragment,
            fragment_first,
        }
    }

    /// Whether an already normalised name matches.
    pub(crate) fn matches_normalized(&self, name: &[u8]) -> bool {
        if name.is_empty() {
            return false;
        }
        let bucket = name.len().min(INLINE + 1);
        if self.exact[bucket]
            .iter()
            .any(|n| n[0] == name[0] && **n == *name)
        {
            return true;
        }
        if name.len() < self.shortest_fragment {
            return false;
        }
        (0..=name.len() - self.shortest_fragment).any(|i| {
            self.fragment_first[usize::from(name[i])]
                && self
                    .fragments
                    .iter()
                    .any(|f| f[0] == name[i] && name[i..].starts_with(f))
        })
    }

    /// Whether a raw name matches (normalising it on the stack when short).
    pub(crate) fn matches(&self, name: &[u8]) -> bool {
        if name.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            let mut len = 0;
            for &b in name {
                if b != b'-' && b != b'_' {
                    buf[len] = b.to_ascii_lowercase();
                    len += 1;
                }
            }
            self.matches_normalized(&buf[..len])
        } else {
            let mut buf = Vec::with_capacity(name.len());
            normalize_into(name, &mut buf);
            self.matches_normalized(&buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> KeyRules {
        KeyRules::new(
            DEFAULT_KEYS.iter().map(|k| k.as_bytes()),
            DEFAULT_FRAGMENTS.iter().map(|k| k.as_bytes()),
        )
    }

    #[test]
    fn spellings_match() {
        let rules = defaults();
        for key in [
            "password",
            "Pass-Word",
            "PASSWORD",
            "new_password",
            "API_KEY",
            "apiKey",
            "api-key",
            "x-api-key",
            "client_secret",
            "Access_Token",
            "card_number",
            "CVV",
            "ssn",
            "Authorization",
            "session",
            "set-cookie",
            "private_key",
        ] {
            assert!(rules.matches(key.as_bytes()), "{key}");
        }
        for key in ["name", "email", "id", "user", "passage", "count", "", "-_-"] {
            assert!(!rules.matches(key.as_bytes()), "{key}");
        }
    }

    #[test]
    fn long_names_match_through_the_heap() {
        let rules = defaults();
        let long = format!("{}password", "x".repeat(200));
        assert!(rules.matches(long.as_bytes()));
        assert!(!rules.matches("y".repeat(300).as_bytes()));
    }
}
