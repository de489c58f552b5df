use super::{ClientGreeting, Digest, digest_for, parse_greeting, response_for};

fn client(protocol: u32, digests: &[&str]) -> ClientGreeting {
    ClientGreeting {
        protocol,
        has_sub: true,
        digests: digests.iter().map(|d| (*d).to_owned()).collect(),
    }
}

#[test]
fn greetings_are_parsed_with_their_digest_lists() {
    assert_eq!(
        parse_greeting("@RSYNCD: 31.0 sha512 sha256 sha1 md5 md4"),
        Some(client(31, &["sha512", "sha256", "sha1", "md5", "md4"]))
    );
    assert_eq!(
        parse_greeting("@RSYNCD: 29"),
        Some(ClientGreeting {
            protocol: 29,
            has_sub: false,
            digests: Vec::new()
        })
    );
    for bad in [
        "@RSYNCD:31.0",
        "@RSYNCD: x",
        "@RSYNCD: 31.x",
        "RSYNCD: 31.0",
        "",
    ] {
        assert_eq!(parse_greeting(bad), None, "{bad}");
    }
}

/// Known digests of "secret" + "challenge", computed independently (`md5sum`, `sha256sum`).
#[test]
fn hashes_match_independent_values() {
    assert_eq!(
        hex::encode(Digest::Md5.hash(b"secret", b"challenge")),
        "40488c31ff5713987d638c46dc599038"
    );
    assert_eq!(
        hex::encode(Digest::Sha256.hash(b"secret", b"challenge")),
        "b42bfed907d9f34b9d535290ba66116c6798809f7e9b4f5e2244da9d7dff7eab"
    );
}

#[test]
fn the_response_length_and_the_lists_tell_the_digest() {
    let all = [
        Digest::Sha512,
        Digest::Sha256,
        Digest::Sha1,
        Digest::Md5,
        Digest::Md4,
    ];
    let ch = "6Zy4kV3rlDXvqtUbL0lsUw";
    for d in all {
        let r = response_for(d, "pw", ch);
        let (found, hash) = digest_for(&r, &client(31, &[]), &all).unwrap();
        // MD4 and MD5 have the same length: the client's order puts MD5 first.
        let want = if d == Digest::Md4 { Digest::Md5 } else { d };
        assert_eq!(found, want);
        assert_eq!(hash.len(), d.output_len());
    }
    // A server announcing only md4, or a pre-30 client without lists, gets MD4.
    let r = response_for(Digest::Md4, "pw", ch);
    assert_eq!(
        digest_for(&r, &client(31, &[]), &[Digest::Md4]).unwrap().0,
        Digest::Md4
    );
    assert_eq!(
        digest_for(&r, &client(29, &[]), &[]).unwrap().0,
        Digest::Md4
    );
    assert_eq!(
        digest_for(&r, &client(31, &[]), &[]).unwrap().0,
        Digest::Md5
    );
    // The client's own list decides among what the server offers.
    let r = response_for(Digest::Sha1, "pw", ch);
    assert_eq!(
        digest_for(&r, &client(31, &["sha1", "md5"]), &all)
            .unwrap()
            .0,
        Digest::Sha1
    );
    assert_eq!(digest_for("not base64!", &client(31, &[]), &all), None);
    assert_eq!(digest_for("AAAA", &client(31, &[]), &all), None);
}
