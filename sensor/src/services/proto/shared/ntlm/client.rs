//! The client side of NTLM, as far as tests need it: a NEGOTIATE and an AUTHENTICATE built from
//! a password (MS-NLMP 3.1.5), so the protocol tests can run whole exchanges and check that the
//! captured hashcat line verifies, without a real client.

use super::{
    crypto::{nt_proof_str, nt_response_v1, utf16le},
    message::{self, AUTHENTICATE, NEGOTIATE, SIGNATURE, flags},
};

/// The flags a Windows 10 client sends in its NEGOTIATE.
pub const WINDOWS_CLIENT_FLAGS: u32 = 0xe208_8297;

/// A NEGOTIATE message with `flags` and no names.
#[must_use]
pub fn negotiate(flags: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&NEGOTIATE.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 0x0f]);
    out
}

/// The server challenge and target info of a CHALLENGE message.
#[must_use]
pub fn read_challenge(msg: &[u8]) -> Option<([u8; 8], Vec<u8>)> {
    if message::message_type(msg)? != message::CHALLENGE {
        return None;
    }
    let challenge: [u8; 8] = msg.get(24..32)?.try_into().ok()?;
    Some((challenge, message::field(msg, 40)?.to_vec()))
}

/// Which response [`authenticate`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// NTLMv2 with this client challenge and timestamp.
    V2 {
        /// Client challenge.
        client_challenge: [u8; 8],
        /// FILETIME in the blob.
        time: u64,
    },
    /// NTLMv1.
    V1,
    /// NTLMv1 with extended session security and this client challenge.
    V1Ess([u8; 8]),
    /// No response (anonymous).
    Anonymous,
}

/// The NTLMv2 blob (`temp` of MS-NLMP 3.3.2) for `target_info`.
#[must_use]
pub fn v2_blob(client_challenge: &[u8; 8], time: u64, target_info: &[u8]) -> Vec<u8> {
    let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(&time.to_le_bytes());
    blob.extend_from_slice(client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(target_info);
    blob.extend_from_slice(&[0; 4]);
    blob
}

/// An AUTHENTICATE message answering `challenge` for `domain\user` with `password`.
#[must_use]
pub fn authenticate(
    challenge: &[u8],
    user: &str,
    domain: &str,
    workstation: &str,
    password: &str,
    response: Response,
) -> Vec<u8> {
    let (server_challenge, target_info) = read_challenge(challenge).unwrap_or(([0; 8], Vec::new()));
    let (lm, nt) = match response {
        Response::V2 {
            client_challenge,
            time,
        } => {
            let blob = v2_blob(&client_challenge, time, &target_info);
            let proof = nt_proof_str(password, user, domain, &server_challenge, &blob);
            let mut nt = proof.to_vec();
            nt.extend_from_slice(&blob);
            (vec![0; 24], nt)
        }
        Response::V1 => (
            nt_response_v1(password, &server_challenge, None).to_vec(),
            nt_response_v1(password, &server_challenge, None).to_vec(),
        ),
        Response::V1Ess(client) => {
            let mut lm = client.to_vec();
            lm.extend_from_slice(&[0; 16]);
            (
                lm,
                nt_response_v1(password, &server_challenge, Some(&client)).to_vec(),
            )
        }
        Response::Anonymous => (vec![0], Vec::new()),
    };
    let mut flags = flags::UNICODE | flags::NTLM | flags::VERSION;
    if matches!(response, Response::V1Ess(_) | Response::V2 { .. }) {
        flags |= flags::EXTENDED_SESSIONSECURITY;
    }
    if response == Response::Anonymous {
        flags |= flags::ANONYMOUS;
    }
    let fields = [
        lm,
        nt,
        utf16le(domain),
        utf16le(user),
        utf16le(workstation),
        Vec::new(),
    ];
    let header = 88usize;
    let mut out = Vec::new();
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&AUTHENTICATE.to_le_bytes());
    let mut offset = header;
    for f in &fields {
        let len = u16::try_from(f.len()).unwrap_or(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&u32::try_from(offset).unwrap_or(0).to_le_bytes());
        offset = offset.saturating_add(f.len());
    }
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 0x0f]);
    out.extend_from_slice(&[0; 16]);
    for f in &fields {
        out.extend_from_slice(f);
    }
    out
}
