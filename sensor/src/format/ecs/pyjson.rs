//! JSON text exactly as Python's `json.dump` writes it with its defaults, which is how
//! Trapster's file output writes each ECS document: `", "` between items, `": "` after keys,
//! and `ensure_ascii` (every character outside printable ASCII as a lowercase `\uXXXX`
//! escape, astral characters as a surrogate pair). Written on serde_json's `Formatter` hooks:
//! no crate reproduces Python's spacing and escaping.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// serde_json formatter producing Python `json.dumps` text.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                let mut buf = [0u8; 4];
                writer.write_all(c.encode_utf8(&mut buf).as_bytes())?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Writes `value` to `writer` as Python's `json.dump(value, f)` would.
///
/// # Errors
/// What serialising `value` or writing to `writer` returns.
pub fn to_writer<W: io::Write, T: Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> Result<(), serde_json::Error> {
    let mut ser = serde_json::Serializer::with_formatter(writer, PythonFormatter);
    value.serialize(&mut ser)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn text(v: &serde_json::Value) -> String {
        let mut out = Vec::new();
        super::to_writer(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Expected strings are what CPython 3.11 `json.dumps` prints for the same values.
    #[test]
    fn spacing_and_escapes_match_python() {
        assert_eq!(
            text(&json!({"a": [1, 2, {"b": null}], "c": true, "d": {}, "e": []})),
            r#"{"a": [1, 2, {"b": null}], "c": true, "d": {}, "e": []}"#
        );
        assert_eq!(
            text(&json!("é\u{7f}\n\t\"\\/\u{1b}\u{2028}😀")),
            r#""\u00e9\u007f\n\t\"\\/\u001b\u2028\ud83d\ude00""#
        );
    }
}
