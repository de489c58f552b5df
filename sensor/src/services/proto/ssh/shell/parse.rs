//! Splitting a command line as bash does, for the few features intruders' one-liners use:
//! quotes, backslashes, `$VAR`/`${VAR}`/`~` expansion, `;`, `&&`, `||`, `|`, `&` and
//! `>`/`>>`/`2>` redirections.

/// A piece of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word, after quote removal and expansion.
    Word(String),
    /// `;`, `&&`, `||`, `|` or `&`.
    Op(&'static str),
    /// `>` (false) or `>>` (true) to the next word, for stdout (`fd` 1) or stderr (2).
    Redirect {
        /// Appending.
        append: bool,
        /// The descriptor redirected.
        fd: u8,
    },
}

/// Most tokens kept from one line.
const MAX_TOKENS: usize = 256;

/// Splits `line`, expanding variables with `var`.
pub fn tokens(line: &str, var: &dyn Fn(&str) -> String) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |out: &mut Vec<Token>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            out.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        if out.len() >= MAX_TOKENS {
            break;
        }
        match c {
            ' ' | '\t' => flush(&mut out, &mut word, &mut in_word),
            '\\' => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
                in_word = true;
            }
            '\'' => {
                in_word = true;
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                    word.push(n);
                }
            }
            '"' => {
                in_word = true;
                while let Some(n) = chars.next() {
                    match n {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                word.push(e);
                            }
                        }
                        '$' => word.push_str(&variable(&mut chars, var)),
                        other => word.push(other),
                    }
                }
            }
            '$' => {
                in_word = true;
                word.push_str(&variable(&mut chars, var));
            }
            '~' if !in_word => {
                in_word = true;
                word.push_str(&var("HOME"));
            }
            ';' => {
                flush(&mut out, &mut word, &mut in_word);
                out.push(Token::Op(";"));
            }
            '&' | '|' => {
                flush(&mut out, &mut word, &mut in_word);
                let double = chars.peek() == Some(&c);
                if double {
                    chars.next();
                }
                out.push(Token::Op(match (c, double) {
                    ('&', true) => "&&",
                    ('&', false) => "&",
                    ('|', true) => "||",
                    _ => "|",
                }));
            }
            '>' => {
                let fd = if in_word && word == "2" {
                    word.clear();
                    in_word = false;
                    2
                } else {
                    flush(&mut out, &mut word, &mut in_word);
                    1
                };
                let append = chars.peek() == Some(&'>');
                if append {
                    chars.next();
                }
                if chars.peek() == Some(&'&') {
                    // `2>&1` and the like: everything goes to one channel anyway.
                    chars.next();
                    while chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                    continue;
                }
                out.push(Token::Redirect { append, fd });
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    flush(&mut out, &mut word, &mut in_word);
    out
}

/// Reads a variable name after `$` and expands it.
fn variable(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    var: &dyn Fn(&str) -> String,
) -> String {
    let mut name = String::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        for c in chars.by_ref() {
            if c == '}' {
                break;
            }
            name.push(c);
        }
        return var(&name);
    }
    if chars.peek() == Some(&'?') {
        chars.next();
        return var("?");
    }
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if name.is_empty() {
        "$".to_owned()
    } else {
        var(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::{Token, tokens};

    fn w(s: &str) -> Token {
        Token::Word(s.to_owned())
    }

    #[test]
    fn splits_as_bash() {
        let var = |name: &str| match name {
            "HOME" => "/home/bob".to_owned(),
            "USER" => "bob".to_owned(),
            _ => String::new(),
        };
        assert_eq!(
            tokens(
                "echo 'a  b' \"$USER x\" ~ ${HOME}/f>>/tmp/o 2>/dev/null; id&&ls|x",
                &var
            ),
            vec![
                w("echo"),
                w("a  b"),
                w("bob x"),
                w("/home/bob"),
                w("/home/bob/f"),
                Token::Redirect {
                    append: true,
                    fd: 1
                },
                w("/tmp/o"),
                Token::Redirect {
                    append: false,
                    fd: 2
                },
                w("/dev/null"),
                Token::Op(";"),
                w("id"),
                Token::Op("&&"),
                w("ls"),
                Token::Op("|"),
                w("x"),
            ]
        );
        assert_eq!(tokens("cat x 2>&1", &var), vec![w("cat"), w("x")]);
    }
}
