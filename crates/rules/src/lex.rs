//! Splitting a line into words, with the column each word starts at (for diagnostics).

/// A word of a command line with its 1-based byte column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tok {
    pub text: String,
    pub col: u32,
}

/// Splits a line the way `iptables-restore` does: blanks separate words, double quotes group
/// (inside them `\` escapes the next character), a closing quote ends the word, single quotes
/// are ordinary characters. Err carries the column of an unterminated quote.
pub(crate) fn split_restore(line: &str) -> Result<Vec<Tok>, u32> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start: Option<u32> = None;
    let mut quote_col = 0u32;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        let col = i as u32 + 1;
        if in_quote {
            if escaped {
                cur.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
                out.push(Tok {
                    text: std::mem::take(&mut cur),
                    col: start.take().unwrap_or(quote_col),
                });
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_quote = true;
                quote_col = col;
                start.get_or_insert(col);
            }
            ' ' | '\t' | '\r' | '\n' => {
                if let Some(s) = start.take() {
                    out.push(Tok {
                        text: std::mem::take(&mut cur),
                        col: s,
                    });
                }
            }
            _ => {
                start.get_or_insert(col);
                cur.push(c);
            }
        }
    }
    if in_quote {
        return Err(quote_col);
    }
    if let Some(s) = start {
        out.push(Tok { text: cur, col: s });
    }
    Ok(out)
}

/// Splits a shell command line: blanks separate words, `'...'` is literal, `"..."` allows `\"`
/// `\\` `\$` escapes, a backslash outside quotes escapes the next character.
pub(crate) fn split_shell(line: &str) -> Result<Vec<Tok>, u32> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start: Option<u32> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let col = i as u32 + 1;
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if let Some(s) = start.take() {
                    out.push(Tok {
                        text: std::mem::take(&mut cur),
                        col: s,
                    });
                }
            }
            '\'' => {
                start.get_or_insert(col);
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, ch)) => cur.push(ch),
                        None => return Err(col),
                    }
                }
            }
            '"' => {
                start.get_or_insert(col);
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, ch @ ('"' | '\\' | '$' | '`'))) => cur.push(ch),
                            Some((_, ch)) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err(col),
                        },
                        Some((_, ch)) => cur.push(ch),
                        None => return Err(col),
                    }
                }
            }
            '\\' => {
                start.get_or_insert(col);
                if let Some((_, ch)) = chars.next() {
                    cur.push(ch);
                }
            }
            _ => {
                start.get_or_insert(col);
                cur.push(c);
            }
        }
    }
    if let Some(s) = start {
        out.push(Tok { text: cur, col: s });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: Vec<Tok>) -> Vec<String> {
        v.into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn restore_quotes_and_columns() {
        let t = split_restore(r#"-A INPUT -m comment --comment "a \"b\" c'd" -j ACCEPT"#).unwrap();
        assert_eq!(t[5].text, "a \"b\" c'd");
        assert_eq!(t[5].col, 31);
        assert_eq!(t[1].col, 4);
        assert_eq!(words(split_restore("a 'b c'").unwrap()), ["a", "'b", "c'"]);
        assert_eq!(words(split_restore("x \"\" y").unwrap()), ["x", "", "y"]);
        assert_eq!(split_restore("a \"b"), Err(3));
    }

    #[test]
    fn shell_quotes() {
        let t =
            split_shell(r#"iptables -A INPUT --log-prefix 'a b' -m comment --comment "x\"y" z\ w"#)
                .unwrap();
        assert_eq!(
            words(t),
            [
                "iptables",
                "-A",
                "INPUT",
                "--log-prefix",
                "a b",
                "-m",
                "comment",
                "--comment",
                "x\"y",
                "z w"
            ]
        );
        assert_eq!(split_shell("a 'b"), Err(3));
    }
}
