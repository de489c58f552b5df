//! The names asked for: configured ones, or random host names that look like a Windows LAN's
//! (`FILESRV07`, `NAS-BKP3`, `PRN-2F14`), so a poisoner filtering for plausible names still
//! answers, and random enough that no real host has them.

/// Prefixes seen on Windows networks.
const PREFIXES: [&str; 14] = [
    "FILESRV", "FS", "NAS-BKP", "PRN-", "SQL", "APPSRV", "WEB", "EXCH", "SCAN", "BACKUP", "HR-PC",
    "FIN-PC", "DEVBOX", "SHARE",
];

/// Whether `name` can be asked with all three protocols: 1 to 15 ASCII letters, digits or
/// `-` (NetBIOS's limit), not starting or ending with `-`.
#[must_use]
pub fn is_valid(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// One of `configured`, or a fresh random name.
#[must_use]
pub fn pick(configured: &[String]) -> String {
    if !configured.is_empty() {
        let i = usize::try_from(rand::random::<u32>()).unwrap_or(0) % configured.len();
        if let Some(name) = configured.get(i) {
            return name.clone();
        }
    }
    random()
}

/// A random plausible host name.
#[must_use]
pub fn random() -> String {
    let r: u64 = rand::random();
    let prefix = PREFIXES
        .get(usize::try_from(r % PREFIXES.len() as u64).unwrap_or(0))
        .copied()
        .unwrap_or("FILESRV");
    let digits = r >> 8;
    if prefix.ends_with('-') {
        format!(
            "{prefix}{}{:02}",
            (b'A' + u8::try_from((digits >> 16) % 26).unwrap_or(0)) as char,
            digits % 100
        )
    } else {
        format!("{prefix}{:02}", digits % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::{is_valid, pick, random};

    #[test]
    fn random_names_are_valid_for_every_protocol() {
        for _ in 0..500 {
            let name = random();
            assert!(is_valid(&name), "{name}");
        }
        assert!(!is_valid(""));
        assert!(!is_valid("A-VERY-LONG-NAME1"));
        assert!(!is_valid("-LEAD"));
        assert!(!is_valid("has space"));
        assert!(!is_valid("dot.ted"));
        assert_eq!(pick(&["ONLY".to_owned()]), "ONLY");
    }
}
