//! LOGIN7 (MS-TDS 2.2.6.4): the fixed header, the offset/length table, and the strings it
//! points to (UTF-16LE, the password obfuscated by a nibble swap and an XOR with `0xA5`).

/// Fields of a LOGIN7 the sensor reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login7 {
    /// TDS version the client asks for (`0x74000004` = 7.4).
    pub tds_version: u32,
    /// Client host name.
    pub hostname: String,
    /// SQL login (empty with Windows authentication).
    pub username: String,
    /// De-obfuscated password.
    pub password: String,
    /// Application name.
    pub app_name: String,
    /// Server name the client dialled.
    pub server_name: String,
    /// Client library (`ODBC`, `DB-Library`, `Core .Net SqlClient Data Provider`).
    pub library: String,
    /// Initial database.
    pub database: String,
    /// Language.
    pub language: String,
    /// Integrated (Windows) authentication requested.
    pub integrated: bool,
    /// The SSPI token (an NTLM NEGOTIATE or SPNEGO) for integrated authentication.
    pub sspi: Vec<u8>,
}

/// Why a LOGIN7 cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Shorter than the fixed part.
    #[error("LOGIN7 of {0} bytes is shorter than its fixed part")]
    Short(usize),
}

/// Length of the fixed part up to and including `cbSSPILong`.
const FIXED: usize = 94;
/// Fixed part of TDS 7.0/7.1 clients (without the change-password and long-SSPI fields).
const FIXED_70: usize = 86;

fn u16_at(b: &[u8], at: usize) -> usize {
    b.get(at..at + 2)
        .map_or(0, |s| usize::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// UTF-16LE text of `chars` characters at `offset` (empty when out of range).
fn text(b: &[u8], offset: usize, chars: usize, decode: fn(u8) -> u8) -> String {
    let Some(bytes) = chars
        .checked_mul(2)
        .and_then(|n| offset.checked_add(n))
        .and_then(|end| b.get(offset..end))
    else {
        return String::new();
    };
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([decode(p[0]), decode(p[1])]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Undoes LOGIN7's password obfuscation on one byte: XOR with `0xA5`, then swap nibbles.
#[must_use]
pub const fn unscramble(b: u8) -> u8 {
    (b ^ 0xa5).rotate_left(4)
}

/// Obfuscates one byte as clients do (the inverse of [`unscramble`]).
#[must_use]
pub const fn scramble(b: u8) -> u8 {
    b.rotate_left(4) ^ 0xa5
}

const fn same(b: u8) -> u8 {
    b
}

/// Reads a LOGIN7 payload (after the TDS header).
///
/// # Errors
/// [`LoginError::Short`] when the fixed part is not all there.
pub fn parse(b: &[u8]) -> Result<Login7, LoginError> {
    if b.len() < FIXED_70 {
        return Err(LoginError::Short(b.len()));
    }
    let field = |at: usize| (u16_at(b, at), u16_at(b, at + 2));
    let str_at = |at: usize| {
        let (offset, chars) = field(at);
        text(b, offset, chars, same)
    };
    let (pw_offset, pw_chars) = field(44);
    let option_flags2 = b.get(25).copied().unwrap_or(0);
    let integrated = option_flags2 & 0x80 != 0;
    let (sspi_offset, mut sspi_len) = field(78);
    if sspi_len == 0xffff && b.len() >= FIXED {
        sspi_len = usize::try_from(u32_at(b, 90)).unwrap_or(0);
    }
    let sspi = sspi_offset
        .checked_add(sspi_len)
        .and_then(|end| b.get(sspi_offset..end))
        .unwrap_or(&[])
        .to_vec();
    Ok(Login7 {
        tds_version: u32_at(b, 4),
        hostname: str_at(36),
        username: str_at(40),
        password: text(b, pw_offset, pw_chars, unscramble),
        app_name: str_at(48),
        server_name: str_at(52),
        library: str_at(60),
        language: str_at(64),
        database: str_at(68),
        integrated,
        sspi,
    })
}

/// Builds a LOGIN7 payload as a client does (tests, and the hostile-input corpus).
#[must_use]
pub fn build(login: &Login7) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let mut fixed = vec![0u8; FIXED];
    let mut data: Vec<u8> = Vec::new();
    let mut put = |fixed: &mut Vec<u8>, at: usize, bytes: &[u8], count: usize| {
        let offset = u16::try_from(FIXED + data.len()).unwrap_or(0);
        fixed[at..at + 2].copy_from_slice(&offset.to_le_bytes());
        fixed[at + 2..at + 4].copy_from_slice(&u16::try_from(count).unwrap_or(0).to_le_bytes());
        data.extend_from_slice(bytes);
    };
    let count = |s: &str| s.encode_utf16().count();
    put(
        &mut fixed,
        36,
        &utf16(&login.hostname),
        count(&login.hostname),
    );
    put(
        &mut fixed,
        40,
        &utf16(&login.username),
        count(&login.username),
    );
    let pw: Vec<u8> = utf16(&login.password).into_iter().map(scramble).collect();
    put(&mut fixed, 44, &pw, count(&login.password));
    put(
        &mut fixed,
        48,
        &utf16(&login.app_name),
        count(&login.app_name),
    );
    put(
        &mut fixed,
        52,
        &utf16(&login.server_name),
        count(&login.server_name),
    );
    put(&mut fixed, 56, &[], 0);
    put(
        &mut fixed,
        60,
        &utf16(&login.library),
        count(&login.library),
    );
    put(
        &mut fixed,
        64,
        &utf16(&login.language),
        count(&login.language),
    );
    put(
        &mut fixed,
        68,
        &utf16(&login.database),
        count(&login.database),
    );
    put(&mut fixed, 78, &login.sspi, login.sspi.len());
    put(&mut fixed, 82, &[], 0);
    put(&mut fixed, 86, &[], 0);
    fixed[4..8].copy_from_slice(&login.tds_version.to_le_bytes());
    fixed[8..12].copy_from_slice(&4096u32.to_le_bytes());
    if login.integrated {
        fixed[25] |= 0x80;
    }
    let mut out = fixed;
    out.extend_from_slice(&data);
    let len = u32::try_from(out.len()).unwrap_or(0);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::{Login7, LoginError, build, parse, scramble, unscramble};

    #[test]
    fn scrambling_round_trips_and_matches_the_spec() {
        for b in 0..=255u8 {
            assert_eq!(unscramble(scramble(b)), b);
        }
        // 'a' (0x61): swap -> 0x16, xor 0xa5 -> 0xb3.
        assert_eq!(scramble(0x61), 0xb3);
        assert_eq!(unscramble(0xb3), 0x61);
    }

    #[test]
    fn a_built_login_parses_back() {
        let login = Login7 {
            tds_version: 0x7400_0004,
            hostname: "WKS-7".to_owned(),
            username: "sa".to_owned(),
            password: "P@ssw0rd!é".to_owned(),
            app_name: "TSQL".to_owned(),
            server_name: "sql01".to_owned(),
            library: "DB-Library".to_owned(),
            language: "us_english".to_owned(),
            database: "master".to_owned(),
            integrated: false,
            sspi: Vec::new(),
        };
        assert_eq!(parse(&build(&login)).unwrap(), login);
        let windows = Login7 {
            integrated: true,
            sspi: b"NTLMSSP\0\x01\0\0\0".to_vec(),
            ..Login7::default()
        };
        assert_eq!(parse(&build(&windows)).unwrap(), windows);
    }

    #[test]
    fn every_truncation_is_safe() {
        let wire = build(&Login7 {
            username: "admin".to_owned(),
            password: "x".to_owned(),
            ..Login7::default()
        });
        for cut in 0..wire.len() {
            match parse(&wire[..cut]) {
                Err(LoginError::Short(n)) => assert!(n < 86 && n == cut),
                Ok(l) => assert!(cut >= 86 && l.username.len() <= 5),
            }
        }
        // Offsets and lengths at their maximum point nowhere.
        let mut big = wire;
        for at in (36..90).step_by(2) {
            big[at] = 0xff;
            big[at + 1] = 0xff;
        }
        let l = parse(&big).unwrap();
        assert_eq!((l.username.as_str(), l.password.as_str()), ("", ""));
    }
}
