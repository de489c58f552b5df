//! What each imitated FTP server says: reply texts, `FEAT`, `SYST`, listing style and idle
//! timeout of Microsoft IIS 10 FTP, vsftpd 3.0 (Debian 12) and ProFTPD 1.3.8 (Debian 12). The
//! product is the configured `product`, or else read from the banner (`Microsoft`, `vsFTPd`,
//! `ProFTPD`; any other banner gets vsftpd's behaviour, the most common Unix server).
//!
//! `FEAT` lists only what this emulation does: no `AUTH TLS`/`PBSZ`/`PROT`/`CCC` (no FTPS),
//! no `LANG` or `HOST`, which real servers list by default.

use std::net::Ipv4Addr;

/// An imitated FTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// Microsoft IIS 10 FTP service: MS-DOS listings, `421` after 120 s of silence.
    Iis,
    /// vsftpd 3.0.3: `ls -l` listings, no `MLSD`, `421 Timeout.` after 300 s.
    Vsftpd,
    /// ProFTPD 1.3.8: `ls -l` listings and `MLSD`, 300 s to log in, 600 s idle after.
    Proftpd,
}

/// How `LIST` output looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `12-01-24  10:15AM       <DIR>          name`.
    Dos,
    /// `drwxr-xr-x    2 0        0            4096 Nov 14  2024 name` (vsftpd's widths).
    Vsftpd,
    /// `drwxr-xr-x   2 ftp      ftp          4096 Nov 14  2024 name` (ProFTPD's widths).
    Proftpd,
}

impl Product {
    /// The product a configured name (`iis`, `vsftpd`, `proftpd`) or, when none, the banner
    /// claims.
    #[must_use]
    pub fn detect(configured: Option<&str>, banner: &str) -> Self {
        let text = configured.unwrap_or(banner).to_ascii_lowercase();
        if text.contains("microsoft") || text.contains("iis") {
            Self::Iis
        } else if text.contains("proftpd") {
            Self::Proftpd
        } else {
            Self::Vsftpd
        }
    }

    /// Seconds of silence before the server closes the control connection: before and after
    /// the login (IIS `controlChannelTimeout` 120; vsftpd `idle_session_timeout` 300;
    /// ProFTPD `TimeoutLogin` 300 and `TimeoutIdle` 600).
    #[must_use]
    pub const fn idle_secs(self, logged_in: bool) -> u64 {
        match (self, logged_in) {
            (Self::Iis, _) => 120,
            (Self::Vsftpd, _) | (Self::Proftpd, false) => 300,
            (Self::Proftpd, true) => 600,
        }
    }

    /// Seconds a data connection may take to be opened or to move a byte (IIS
    /// `dataChannelTimeout` 30; vsftpd `accept_timeout`/`connect_timeout` 60; ProFTPD
    /// `TimeoutNoTransfer` 300, of which the first 60 s are shown here).
    #[must_use]
    pub const fn data_secs(self) -> u64 {
        match self {
            Self::Iis => 30,
            Self::Vsftpd | Self::Proftpd => 60,
        }
    }

    /// The `421` sent when the control connection times out.
    #[must_use]
    pub fn timeout(self, secs: u64, logged_in: bool) -> String {
        match (self, logged_in) {
            (Self::Iis, _) => {
                format!("421 Timeout ({secs} seconds): closing control connection.\r\n")
            }
            (Self::Vsftpd, _) => "421 Timeout.\r\n".to_owned(),
            (Self::Proftpd, false) => {
                format!("421 Login timeout ({secs} seconds): closing control connection\r\n")
            }
            (Self::Proftpd, true) => {
                format!("421 Idle timeout ({secs} seconds): closing control connection\r\n")
            }
        }
    }

    /// The listing style.
    #[must_use]
    pub const fn style(self) -> Style {
        match self {
            Self::Iis => Style::Dos,
            Self::Vsftpd => Style::Vsftpd,
            Self::Proftpd => Style::Proftpd,
        }
    }

    /// Whether `MLSD`/`MLST` exist (vsftpd has neither).
    #[must_use]
    pub const fn has_mlsd(self) -> bool {
        !matches!(self, Self::Vsftpd)
    }

    /// `FEAT`.
    #[must_use]
    pub const fn feat(self) -> &'static str {
        match self {
            Self::Iis => {
                "211-Extended features supported:\r\n UTF8\r\n SIZE\r\n MDTM\r\n REST STREAM\r\n211 END\r\n"
            }
            Self::Vsftpd => {
                "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End\r\n"
            }
            Self::Proftpd => {
                "211-Features:\r\n MDTM\r\n MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.groupname*;UNIX.mode*;UNIX.owner*;UNIX.ownername*;\r\n UTF8\r\n EPRT\r\n EPSV\r\n REST STREAM\r\n SIZE\r\n211 End\r\n"
            }
        }
    }

    /// `SYST`.
    #[must_use]
    pub const fn syst(self) -> &'static str {
        match self {
            Self::Iis => "215 Windows_NT\r\n",
            Self::Vsftpd | Self::Proftpd => "215 UNIX Type: L8\r\n",
        }
    }

    /// `USER` accepted, password wanted.
    #[must_use]
    pub fn user(self, name: &str) -> String {
        match self {
            Self::Iis => "331 Password required\r\n".to_owned(),
            Self::Vsftpd => "331 Please specify the password.\r\n".to_owned(),
            Self::Proftpd => format!("331 Password required for {}\r\n", clean(name)),
        }
    }

    /// Login accepted.
    #[must_use]
    pub fn logged_in(self, name: &str) -> String {
        match self {
            Self::Iis => "230 User logged in.\r\n".to_owned(),
            Self::Vsftpd => "230 Login successful.\r\n".to_owned(),
            Self::Proftpd => format!("230 User {} logged in\r\n", clean(name)),
        }
    }

    /// Login refused.
    #[must_use]
    pub const fn login_failed(self) -> &'static str {
        match self {
            Self::Iis => "530 User cannot log in.\r\n",
            Self::Vsftpd | Self::Proftpd => "530 Login incorrect.\r\n",
        }
    }

    /// `PASS` without `USER`.
    #[must_use]
    pub const fn pass_first(self) -> &'static str {
        match self {
            Self::Iis | Self::Vsftpd => "503 Login with USER first.\r\n",
            Self::Proftpd => "503 Login with USER first\r\n",
        }
    }

    /// Any other command before the login.
    #[must_use]
    pub const fn login_first(self) -> &'static str {
        match self {
            Self::Iis | Self::Vsftpd => "530 Please login with USER and PASS.\r\n",
            Self::Proftpd => "530 Please login with USER and PASS\r\n",
        }
    }

    /// `QUIT`.
    #[must_use]
    pub const fn goodbye(self) -> &'static str {
        "221 Goodbye.\r\n"
    }

    /// `NOOP`.
    #[must_use]
    pub const fn noop(self) -> &'static str {
        match self {
            Self::Iis => "200 NOOP command successful.\r\n",
            Self::Vsftpd => "200 NOOP ok.\r\n",
            Self::Proftpd => "200 NOOP command successful\r\n",
        }
    }

    /// `OPTS UTF8 ON`.
    #[must_use]
    pub const fn utf8(self) -> &'static str {
        match self {
            Self::Iis => "200 OPTS UTF8 command successful - UTF8 encoding now ON.\r\n",
            Self::Vsftpd => "200 Always in UTF8 mode.\r\n",
            Self::Proftpd => "200 UTF8 set to on\r\n",
        }
    }

    /// `AUTH TLS` (no FTPS here).
    #[must_use]
    pub const fn no_tls(self) -> &'static str {
        match self {
            Self::Iis => "534 Local policy on server does not allow TLS secure connections.\r\n",
            Self::Vsftpd => "530 Please login with USER and PASS.\r\n",
            Self::Proftpd => "500 AUTH not understood\r\n",
        }
    }

    /// `PWD`.
    #[must_use]
    pub fn pwd(self, dir: &str) -> String {
        let dir = dir.replace('"', "\"\"");
        match self {
            Self::Iis => format!("257 \"{dir}\" is current directory.\r\n"),
            Self::Vsftpd | Self::Proftpd => format!("257 \"{dir}\" is the current directory\r\n"),
        }
    }

    /// `CWD` done.
    #[must_use]
    pub const fn cwd_ok(self) -> &'static str {
        match self {
            Self::Iis => "250 CWD command successful.\r\n",
            Self::Vsftpd => "250 Directory successfully changed.\r\n",
            Self::Proftpd => "250 CWD command successful\r\n",
        }
    }

    /// `CWD` to a directory that does not exist.
    #[must_use]
    pub fn cwd_failed(self, arg: &str) -> String {
        match self {
            Self::Iis => "550 The system cannot find the file specified. \r\n".to_owned(),
            Self::Vsftpd => "550 Failed to change directory.\r\n".to_owned(),
            Self::Proftpd => format!("550 {}: No such file or directory\r\n", clean(arg)),
        }
    }

    /// A file that does not exist (`RETR`, `SIZE`, `MDTM`).
    #[must_use]
    pub fn no_file(self, arg: &str, verb: &str) -> String {
        match (self, verb) {
            (Self::Iis, _) => "550 The system cannot find the file specified. \r\n".to_owned(),
            (Self::Vsftpd, "SIZE") => "550 Could not get file size.\r\n".to_owned(),
            (Self::Vsftpd, "MDTM") => "550 Could not get file modification time.\r\n".to_owned(),
            (Self::Vsftpd, _) => "550 Failed to open file.\r\n".to_owned(),
            (Self::Proftpd, _) => format!("550 {}: No such file or directory\r\n", clean(arg)),
        }
    }

    /// A change this server refuses (`DELE`, `MKD`, `RMD`, `RNFR`, uploads over listed files).
    #[must_use]
    pub fn denied(self, arg: &str) -> String {
        match self {
            Self::Iis => "550 Access is denied. \r\n".to_owned(),
            Self::Vsftpd => "550 Permission denied.\r\n".to_owned(),
            Self::Proftpd => format!("550 {}: Permission denied\r\n", clean(arg)),
        }
    }

    /// `TYPE`.
    #[must_use]
    pub fn type_set(self, binary: bool) -> String {
        let t = if binary { 'I' } else { 'A' };
        match self {
            Self::Iis => format!("200 Type set to {t}.\r\n"),
            Self::Vsftpd if binary => "200 Switching to Binary mode.\r\n".to_owned(),
            Self::Vsftpd => "200 Switching to ASCII mode.\r\n".to_owned(),
            Self::Proftpd => format!("200 Type set to {t}\r\n"),
        }
    }

    /// `PASV`.
    #[must_use]
    pub fn pasv(self, ip: Ipv4Addr, port: u16) -> String {
        let [a, b, c, d] = ip.octets();
        let [hi, lo] = port.to_be_bytes();
        format!("227 Entering Passive Mode ({a},{b},{c},{d},{hi},{lo}).\r\n")
    }

    /// `EPSV`.
    #[must_use]
    pub fn epsv(self, port: u16) -> String {
        format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
    }

    /// `PORT`/`EPRT` accepted.
    #[must_use]
    pub fn port_ok(self, extended: bool) -> String {
        let verb = if extended { "EPRT" } else { "PORT" };
        match self {
            Self::Iis => format!("200 {verb} command successful.\r\n"),
            Self::Vsftpd if extended => {
                "200 EPRT command successful. Consider using EPSV.\r\n".to_owned()
            }
            Self::Vsftpd => "200 PORT command successful. Consider using PASV.\r\n".to_owned(),
            Self::Proftpd => format!("200 {verb} command successful\r\n"),
        }
    }

    /// `PORT`/`EPRT` naming another host than the client's, a privileged port, or nonsense.
    #[must_use]
    pub fn port_refused(self, extended: bool) -> String {
        match self {
            Self::Iis => "501 Server cannot accept argument.\r\n".to_owned(),
            Self::Vsftpd if extended => "500 Bad EPRT command.\r\n".to_owned(),
            Self::Vsftpd => "500 Illegal PORT command.\r\n".to_owned(),
            Self::Proftpd => {
                format!(
                    "500 Illegal {} command\r\n",
                    if extended { "EPRT" } else { "PORT" }
                )
            }
        }
    }

    /// A transfer asked for with no `PASV`/`PORT` first.
    #[must_use]
    pub const fn no_data(self) -> &'static str {
        match self {
            Self::Iis | Self::Vsftpd => "425 Use PORT or PASV first.\r\n",
            Self::Proftpd => "425 Unable to build data connection: Connection refused\r\n",
        }
    }

    /// The data connection could not be opened in time.
    #[must_use]
    pub const fn data_failed(self) -> &'static str {
        match self {
            Self::Iis => "425 Cannot open data connection.\r\n",
            Self::Vsftpd => "425 Failed to establish connection.\r\n",
            Self::Proftpd => "425 Unable to build data connection: Connection timed out\r\n",
        }
    }

    /// The data connection broke during a transfer.
    #[must_use]
    pub const fn transfer_aborted(self) -> &'static str {
        match self {
            Self::Iis => "426 Connection closed; transfer aborted.\r\n",
            Self::Vsftpd => "426 Failure writing network stream.\r\n",
            Self::Proftpd => "426 Transfer aborted. Data connection closed\r\n",
        }
    }

    /// A transfer starts: `ready` when the client's data connection is already there (IIS then
    /// says `125`).
    #[must_use]
    pub fn opening(self, what: Transfer<'_>, ready: bool) -> String {
        match (self, what) {
            (Self::Iis, _) if ready => {
                "125 Data connection already open; Transfer starting.\r\n".to_owned()
            }
            (Self::Iis, Transfer::List) => "150 Opening ASCII mode data connection.\r\n".to_owned(),
            (Self::Iis, _) => "150 Opening BINARY mode data connection.\r\n".to_owned(),
            (Self::Vsftpd, Transfer::List) => {
                "150 Here comes the directory listing.\r\n".to_owned()
            }
            (Self::Vsftpd, Transfer::Retr(name, size)) => {
                format!(
                    "150 Opening BINARY mode data connection for {} ({size} bytes).\r\n",
                    clean(name)
                )
            }
            (Self::Vsftpd, Transfer::Stor(_)) => "150 Ok to send data.\r\n".to_owned(),
            (Self::Proftpd, Transfer::List) => {
                "150 Opening ASCII mode data connection for file list\r\n".to_owned()
            }
            (Self::Proftpd, Transfer::Mlsd) => {
                "150 Opening ASCII mode data connection for MLSD\r\n".to_owned()
            }
            (Self::Proftpd, Transfer::Retr(name, size)) => {
                format!(
                    "150 Opening BINARY mode data connection for {} ({size} bytes)\r\n",
                    clean(name)
                )
            }
            (Self::Proftpd, Transfer::Stor(name)) => {
                format!(
                    "150 Opening BINARY mode data connection for {}\r\n",
                    clean(name)
                )
            }
            (Self::Vsftpd, Transfer::Mlsd) => {
                "150 Here comes the directory listing.\r\n".to_owned()
            }
        }
    }

    /// A transfer is done.
    #[must_use]
    pub const fn done(self, list: bool) -> &'static str {
        match self {
            Self::Iis => "226 Transfer complete.\r\n",
            Self::Vsftpd if list => "226 Directory send OK.\r\n",
            Self::Vsftpd => "226 Transfer complete.\r\n",
            Self::Proftpd => "226 Transfer complete\r\n",
        }
    }

    /// `REST n`.
    #[must_use]
    pub fn rest(self, offset: u64) -> String {
        match self {
            Self::Iis => format!("350 Restarting at {offset}.\r\n"),
            Self::Vsftpd => format!("350 Restart position accepted ({offset}).\r\n"),
            Self::Proftpd => format!(
                "350 Restarting at {offset}. Send STORE or RETRIEVE to initiate transfer\r\n"
            ),
        }
    }

    /// A syntax error in an argument (`REST x`, `TYPE Q`).
    #[must_use]
    pub const fn bad_argument(self) -> &'static str {
        match self {
            Self::Iis => "501 Invalid number of parameters.\r\n",
            Self::Vsftpd => "500 Unrecognised TYPE command.\r\n",
            Self::Proftpd => "501 Invalid parameter\r\n",
        }
    }

    /// A command this server does not know.
    #[must_use]
    pub fn unknown(self, line: &str) -> String {
        let verb = line.split(' ').next().unwrap_or(line);
        match self {
            Self::Iis => format!("500 '{}': command not understood.\r\n", clean(line)),
            Self::Vsftpd => "500 Unknown command.\r\n".to_owned(),
            Self::Proftpd => format!(
                "500 {} not understood\r\n",
                clean(&verb.to_ascii_uppercase())
            ),
        }
    }

    /// `HELP`.
    #[must_use]
    pub const fn help(self) -> &'static str {
        match self {
            Self::Iis => {
                "214-The following commands are recognized (* ==>'s unimplemented).\r\n    ABOR  APPE  CDUP  CWD   DELE  EPRT  EPSV  FEAT  LIST  MDTM  MLSD  MKD\r\n    MODE  NLST  NOOP  OPTS  PASS  PASV  PORT  PWD   QUIT  REST  RETR  RMD\r\n    SIZE  STOR  STRU  SYST  TYPE  USER  XCUP  XCWD  XMKD  XPWD  XRMD\r\n214 HELP command successful.\r\n"
            }
            Self::Vsftpd => {
                "214-The following commands are recognized.\r\n ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD\r\n MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REIN REST RETR RMD  RNFR\r\n RNTO SITE SIZE SMNT STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD\r\n XPWD XRMD\r\n214 Help OK.\r\n"
            }
            Self::Proftpd => {
                "214-The following commands are recognized (* =>'s unimplemented):\r\n CWD     XCWD    CDUP    XCUP    SMNT*   QUIT    PORT    PASV    \r\n EPRT    EPSV    ALLO*   RNFR    RNTO    DELE    MDTM    RMD     \r\n XRMD    MKD     XMKD    PWD     XPWD    SIZE    SYST    HELP    \r\n NOOP    FEAT    OPTS    AUTH*   CCC*    CONF*   ENC*    MIC*    \r\n PBSZ*   PROT*   TYPE    STRU    MODE    RETR    STOR    STOU    \r\n APPE    REST    ABOR    RANG    USER    PASS    ACCT*   REIN*   \r\n LIST    NLST    STAT    SITE    MLSD    MLST    \r\n214 Direct comments to root@localhost\r\n"
            }
        }
    }
}

/// What a transfer moves, for its `150` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer<'a> {
    /// `LIST`/`NLST`.
    List,
    /// `MLSD`.
    Mlsd,
    /// `RETR name` of `size` bytes.
    Retr(&'a str, u64),
    /// `STOR`/`APPE name`.
    Stor(&'a str),
}

/// Client text echoed in a reply: printable ASCII only, bounded.
#[must_use]
pub fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Product;

    #[test]
    fn the_banner_or_the_configured_name_picks_the_product() {
        assert_eq!(Product::detect(None, "Microsoft FTP Service"), Product::Iis);
        assert_eq!(Product::detect(None, "(vsFTPd 3.0.3)"), Product::Vsftpd);
        assert_eq!(
            Product::detect(None, "ProFTPD Server (Debian) [::ffff:10.0.0.5]"),
            Product::Proftpd
        );
        assert_eq!(Product::detect(None, "FTP server ready"), Product::Vsftpd);
        assert_eq!(
            Product::detect(Some("proftpd"), "Microsoft FTP Service"),
            Product::Proftpd
        );
    }

    #[test]
    fn feat_lists_no_tls_lang_or_host() {
        for p in [Product::Iis, Product::Vsftpd, Product::Proftpd] {
            let feat = p.feat();
            for absent in ["AUTH", "PBSZ", "PROT", "CCC", "LANG", "HOST"] {
                assert!(!feat.contains(absent), "{p:?} lists {absent}");
            }
            assert_eq!(feat.contains("MLST"), p.has_mlsd() && p != Product::Iis);
        }
    }
}
