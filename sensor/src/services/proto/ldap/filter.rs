//! Search filters rendered as RFC 4515 strings (`(&(objectClass=user)(sAMAccountName=adm*))`),
//! the form analysts read and `ldapsearch` takes. Values are escaped as the RFC says (`*`, `(`,
//! `)`, `\`, NUL and non-UTF-8 bytes as `\xx`). The decoder's depth is bounded before this runs
//! ([`super::ber::nesting_ok`]), so the recursion here is too; the output is cut at
//! [`MAX_FILTER`] characters.

use std::fmt::Write as _;

use rasn_ldap::{Filter, MatchingRuleAssertion, SubstringChoice};

/// Longest rendering kept.
pub const MAX_FILTER: usize = 4096;

/// `filter` as an RFC 4515 string, at most [`MAX_FILTER`] bytes (cut on a character boundary).
#[must_use]
pub fn render(filter: &Filter) -> String {
    let mut out = String::new();
    write_filter(&mut out, filter);
    if out.len() > MAX_FILTER {
        let mut cut = MAX_FILTER;
        while !out.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        out.truncate(cut);
    }
    out
}

fn write_filter(out: &mut String, filter: &Filter) {
    if out.len() > MAX_FILTER {
        return;
    }
    out.push('(');
    match filter {
        Filter::And(set) | Filter::Or(set) => {
            out.push(if matches!(filter, Filter::And(_)) {
                '&'
            } else {
                '|'
            });
            for f in set.iter() {
                write_filter(out, f);
            }
        }
        Filter::Not(inner) => {
            out.push('!');
            write_filter(out, inner);
        }
        Filter::EqualityMatch(ava) => {
            assertion(out, &ava.attribute_desc, "=", &ava.assertion_value)
        }
        Filter::GreaterOrEqual(ava) => {
            assertion(out, &ava.attribute_desc, ">=", &ava.assertion_value);
        }
        Filter::LessOrEqual(ava) => assertion(out, &ava.attribute_desc, "<=", &ava.assertion_value),
        Filter::ApproxMatch(ava) => assertion(out, &ava.attribute_desc, "~=", &ava.assertion_value),
        Filter::Present(attr) => {
            out.push_str(attr);
            out.push_str("=*");
        }
        Filter::Substrings(sub) => {
            out.push_str(&sub.r#type);
            out.push('=');
            for part in sub.substrings.iter() {
                match part {
                    SubstringChoice::Initial(v) => escape(out, v),
                    SubstringChoice::Any(v) | SubstringChoice::Final(v) => {
                        out.push('*');
                        escape(out, v);
                    }
                    _ => out.push('*'),
                }
            }
            if !matches!(sub.substrings.last(), Some(SubstringChoice::Final(_))) {
                out.push('*');
            }
        }
        Filter::ExtensibleMatch(rule) => extensible(out, rule),
        _ => out.push('?'),
    }
    out.push(')');
}

fn assertion(out: &mut String, attr: &str, op: &str, value: &[u8]) {
    out.push_str(attr);
    out.push_str(op);
    escape(out, value);
}

fn extensible(out: &mut String, rule: &MatchingRuleAssertion) {
    if let Some(t) = &rule.r#type {
        out.push_str(t);
    }
    if rule.dn_attributes {
        out.push_str(":dn");
    }
    if let Some(m) = &rule.matching_rule {
        out.push(':');
        out.push_str(m);
    }
    out.push_str(":=");
    escape(out, &rule.match_value);
}

/// Appends `value` escaped per RFC 4515: the special characters, NUL, and bytes that are not
/// UTF-8 as `\xx`.
fn escape(out: &mut String, value: &[u8]) {
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '*' | '(' | ')' | '\\' | '\0' => {
                    let _ = write!(out, "\\{:02x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rasn_ldap::{
        AttributeValueAssertion, Filter, MatchingRuleAssertion, SubstringChoice, SubstringFilter,
    };

    use super::{MAX_FILTER, render};

    fn eq(a: &str, v: &[u8]) -> Filter {
        Filter::EqualityMatch(AttributeValueAssertion::new(
            a.into(),
            Bytes::copy_from_slice(v).into(),
        ))
    }

    #[test]
    fn renders_rfc_4515() {
        let f = Filter::And(
            vec![
                Filter::Present("objectClass".into()),
                Filter::Not(Box::new(eq("cn", b"a*b(c)\\\0"))),
                Filter::Or(vec![eq("x", &[0xff, b'y'])].into()),
            ]
            .into(),
        );
        assert_eq!(
            render(&f),
            "(&(objectClass=*)(!(cn=a\\2ab\\28c\\29\\5c\\00))(|(x=\\ffy)))"
        );
        let sub = |parts: Vec<SubstringChoice>| {
            Filter::Substrings(SubstringFilter::new("sAMAccountName".into(), parts))
        };
        let b =
            |s: &str| -> rasn::types::OctetString { Bytes::copy_from_slice(s.as_bytes()).into() };
        assert_eq!(
            render(&sub(vec![SubstringChoice::Initial(b("adm"))])),
            "(sAMAccountName=adm*)"
        );
        assert_eq!(
            render(&sub(vec![
                SubstringChoice::Initial(b("a")),
                SubstringChoice::Any(b("b")),
                SubstringChoice::Final(b("c"))
            ])),
            "(sAMAccountName=a*b*c)"
        );
        assert_eq!(
            render(&sub(vec![SubstringChoice::Any(b("svc"))])),
            "(sAMAccountName=*svc*)"
        );
        let ge = Filter::GreaterOrEqual(AttributeValueAssertion::new("n".into(), b("5")));
        assert_eq!(render(&ge), "(n>=5)");
        let ext = Filter::ExtensibleMatch(MatchingRuleAssertion::new(
            Some("1.2.840.113556.1.4.803".into()),
            Some("userAccountControl".into()),
            b("2"),
            false,
        ));
        assert_eq!(
            render(&ext),
            "(userAccountControl:1.2.840.113556.1.4.803:=2)"
        );
    }

    #[test]
    fn long_filters_are_cut() {
        let many: Vec<Filter> = (0..2000)
            .map(|i| eq("cn", format!("{i}").as_bytes()))
            .collect();
        let out = render(&Filter::Or(many.into()));
        assert_eq!(out.len(), MAX_FILTER);
        assert!(out.starts_with("(|(cn=0)(cn=1)"));
    }
}
