//! The one canonical form of an email address, in which every address is stored and compared
//! (invitations, accept, auto-join, member lists, uniqueness).
//!
//! The domain goes through IDNA (UTS #46) to its ASCII form, so `Bücher.example` and
//! `xn--bcher-kva.example` are one domain, as they are to DNS and to every mail server. The
//! local part belongs to the receiving server, which may treat any two distinct characters as
//! two mailboxes: only ASCII letters are lower-cased (what every mail system in practice
//! ignores), every other character is kept exactly. Full Unicode case folding would merge
//! addresses that are not the same person's: KELVIN SIGN `K` folds to `k`, so an invitation for
//! `karl@…` could be accepted by whoever verified `Karl@…` with the Kelvin sign.
//!
//! Rows written before this form existed were lower-cased with full Unicode lowering; the
//! original case of their local part is gone, so they are left as they are.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use super::validate::{MAX_EMAIL_CHARS, truncate};

/// Characters a local part may hold besides letters and digits (RFC 5322 `atext` and dots).
const LOCAL_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";

/// Checks an email address and returns it in canonical form: trimmed, the local part with only
/// its ASCII letters lower-cased, the domain in IDNA ASCII form, lower-case. The error is a
/// sentence for a field violation.
pub fn canonical_email(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is required".into());
    }
    if value.chars().count() > MAX_EMAIL_CHARS {
        return Err(format!("must be at most {MAX_EMAIL_CHARS} characters"));
    }
    let not_an_address = || format!("{:?} is not an email address", truncate(value));
    let Some((local, domain)) = value.split_once('@') else {
        return Err(not_an_address());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || LOCAL_SPECIALS.contains(c));
    if !local_ok {
        return Err(not_an_address());
    }
    let domain = canonical_domain(domain).map_err(|why| {
        format!(
            "{:?} is not an email address: the domain {why}",
            truncate(value)
        )
    })?;
    let email = format!("{}@{domain}", local.to_ascii_lowercase());
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(format!("must be at most {MAX_EMAIL_CHARS} characters"));
    }
    Ok(email)
}

/// A domain name in canonical form: mapped to ASCII by IDNA (UTS #46, nontransitional, STD3
/// rules, DNS lengths), lower-case, at least two labels, no leading or trailing hyphen in a
/// label. The error completes the sentence "the domain …" (and is a field violation's text).
pub fn canonical_domain(domain: &str) -> Result<String, String> {
    let ascii = Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .map_err(|_| "is not a valid domain name (IDNA, UTS #46)".to_string())?;
    if ascii.split('.').count() < 2 {
        return Err("needs at least two labels, such as acme.com".into());
    }
    Ok(ascii.into_owned())
}

/// The domain of an address in canonical form.
pub fn domain_of(email: &str) -> Option<&str> {
    email.rsplit_once('@').map(|(_, domain)| domain)
}

/// A free-text query as it is matched against canonical addresses: ASCII letters lower-cased,
/// and after an `@`, a domain given in Unicode turned into its ASCII form (when it is one).
/// Nothing else is folded, so a query never matches an address the canonical form keeps apart.
pub fn search_form(query: &str) -> String {
    match query.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => {
            let domain =
                idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_ascii_lowercase());
            format!("{}@{domain}", local.to_ascii_lowercase())
        }
        _ => query.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_case_folds_and_nothing_else_does() {
        assert_eq!(
            canonical_email("  Karl@Example.COM ").unwrap(),
            "karl@example.com"
        );
        // KELVIN SIGN, Cyrillic а, full-width letters: kept, so distinct from their look-alikes.
        assert_eq!(
            canonical_email("\u{212A}arl@example.com").unwrap(),
            "\u{212A}arl@example.com"
        );
        assert_eq!(
            canonical_email("\u{430}dmin@example.com").unwrap(),
            "\u{430}dmin@example.com"
        );
        assert_eq!(
            canonical_email("\u{FF21}nn@example.com").unwrap(),
            "\u{FF21}nn@example.com"
        );
        assert_eq!(
            canonical_email("ÄNN@example.com").unwrap(),
            "Änn@example.com"
        );
    }

    #[test]
    fn domains_take_their_idna_ascii_form() {
        assert_eq!(
            canonical_email("ann@Bücher.Example").unwrap(),
            "ann@xn--bcher-kva.example"
        );
        assert_eq!(
            canonical_email("ann@XN--BCHER-KVA.example").unwrap(),
            "ann@xn--bcher-kva.example"
        );
        assert_eq!(
            canonical_domain("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        for bad in [
            "ann@xn--zz.example",
            "ann@exa_mple.com",
            "ann@-acme.com",
            "ann@acme..com",
            "ann@acme.com.",
            "ann@example",
            "ann@ex ample.com",
        ] {
            assert!(canonical_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_addresses() {
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "a b@example.com",
            "ann@@example.com",
            ".ann@example.com",
            "a..nn@example.com",
        ] {
            assert!(canonical_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_fold_like_addresses() {
        assert_eq!(search_form("Karl"), "karl");
        assert_eq!(search_form("\u{212A}arl"), "\u{212A}arl");
        assert_eq!(search_form("@Bücher.example"), "@xn--bcher-kva.example");
        assert_eq!(domain_of("ann@acme.com"), Some("acme.com"));
    }
}
