//! The layout rules of `terraform fmt` that can be checked line by line, for machines without
//! a terraform binary: indentation (two spaces per open bracket, by hclwrite's rule, so a line
//! like `} : {` keeps its depth), `=` of consecutive one-line attributes aligned one space after
//! the longest name, one space after `=`, trailing comments of consecutive lines aligned, no
//! tab in indentation and no trailing whitespace. Heredoc bodies and block comments are left
//! alone, as terraform fmt leaves them.
//!
//! Not covered (terraform fmt is, where the binary exists): spacing between the other tokens of
//! a line (`a=1`, `f( x )`), the canonical form of expressions (`"${var.x}"` → `var.x`) and
//! block-label quoting.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    Equal,
    Comment,
    Heredoc,
    Other,
}

#[derive(Debug, Default)]
struct Line {
    /// Byte offset of each token in the line, and its kind.
    toks: Vec<(usize, Tok)>,
    text: String,
    /// Inside a heredoc body or a block comment: not formatted by terraform fmt.
    verbatim: bool,
    /// Inside a heredoc: part of the line that opened it, for alignment too.
    continued: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Brace,
    Interp,
}

/// One violation: 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub line: usize,
    pub message: String,
}

fn lex(source: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut in_string = false;
    let mut in_block_comment = false;
    let mut heredoc: Option<String> = None;
    for raw in source.split('\n') {
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        let mut line = Line {
            text: text.to_owned(),
            ..Line::default()
        };
        if let Some(marker) = &heredoc {
            line.verbatim = true;
            line.continued = true;
            if text.trim() == marker {
                heredoc = None;
            }
            lines.push(line);
            continue;
        }
        let b = text.as_bytes();
        let mut i = 0;
        line.verbatim = in_block_comment;
        while i < b.len() {
            let c = b[i];
            let next = b.get(i + 1).copied();
            if in_block_comment {
                if c == b'*' && next == Some(b'/') {
                    in_block_comment = false;
                    i += 2;
                } else {
                    i += 1;
                }
                continue;
            }
            if in_string {
                match (c, next) {
                    (b'\\', _) => i += 2,
                    (b'"', _) => {
                        in_string = false;
                        i += 1;
                    }
                    (b'$' | b'%', Some(b'{')) => {
                        line.toks.push((i, Tok::Open));
                        stack.push(Frame::Interp);
                        in_string = false;
                        i += 2;
                    }
                    _ => i += 1,
                }
                continue;
            }
            match (c, next) {
                (b' ' | b'\t', _) => i += 1,
                (b'#', _) | (b'/', Some(b'/')) => {
                    line.toks.push((i, Tok::Comment));
                    break;
                }
                (b'/', Some(b'*')) => {
                    line.toks.push((i, Tok::Comment));
                    in_block_comment = true;
                    i += 2;
                }
                (b'"', _) => {
                    line.toks.push((i, Tok::Other));
                    in_string = true;
                    i += 1;
                }
                (b'<', Some(b'<')) => {
                    let rest = &text[i + 2..];
                    let rest = rest.strip_prefix('-').unwrap_or(rest);
                    let marker: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if marker.is_empty() {
                        line.toks.push((i, Tok::Other));
                        i += 2;
                    } else {
                        line.toks.push((i, Tok::Heredoc));
                        heredoc = Some(marker);
                        break;
                    }
                }
                (b'{', _) => {
                    line.toks.push((i, Tok::Open));
                    stack.push(Frame::Brace);
                    i += 1;
                }
                (b'[' | b'(', _) => {
                    line.toks.push((i, Tok::Open));
                    i += 1;
                }
                (b'}', _) => {
                    line.toks.push((i, Tok::Close));
                    if stack.pop() == Some(Frame::Interp) {
                        in_string = true;
                    }
                    i += 1;
                }
                (b']' | b')', _) => {
                    line.toks.push((i, Tok::Close));
                    i += 1;
                }
                (b'=' | b'!' | b'<' | b'>', Some(b'=')) | (b'=', Some(b'>')) => {
                    line.toks.push((i, Tok::Other));
                    i += 2;
                }
                (b'=', _) => {
                    line.toks.push((i, Tok::Equal));
                    i += 1;
                }
                _ => {
                    // An identifier, number or operator: one token up to the next delimiter.
                    line.toks.push((i, Tok::Other));
                    i += 1;
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_-.:*".contains(&b[i]))
                    {
                        i += 1;
                    }
                }
            }
        }
        lines.push(line);
    }
    lines
}

fn bracket_change(toks: &[(usize, Tok)]) -> i64 {
    let mut net = 0;
    for (_, t) in toks {
        match t {
            Tok::Open => net += 1,
            Tok::Close => net -= 1,
            Tok::Heredoc => break,
            _ => {}
        }
    }
    net
}

/// The layout violations of one file's text.
pub fn check(source: &str) -> Vec<Violation> {
    let lines = lex(source);
    let mut out = Vec::new();
    let mut v = |line: usize, message: String| {
        out.push(Violation {
            line: line + 1,
            message,
        })
    };

    // Indentation, by hclwrite's indent stack.
    let mut indents: Vec<i64> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let text = &line.text;
        if !line.verbatim && text.trim_end() != text.as_str() {
            v(n, "trailing whitespace".to_owned());
        }
        if line.verbatim || line.toks.is_empty() {
            continue;
        }
        let code: Vec<_> = line
            .toks
            .iter()
            .copied()
            .filter(|(_, t)| *t != Tok::Comment)
            .collect();
        let net = bracket_change(&code);
        if net < 0 {
            let mut closed = -net;
            while closed > 0 {
                let Some(top) = indents.last_mut() else { break };
                if closed >= *top {
                    closed -= *top;
                    indents.pop();
                } else {
                    *top -= closed;
                    closed = 0;
                }
            }
        }
        let want = 2 * indents.len();
        let lead = &text[..text.len() - text.trim_start().len()];
        if lead.contains('\t') {
            v(n, "tab in indentation".to_owned());
        } else if lead.len() != want {
            v(
                n,
                format!(
                    "indented {} spaces, terraform fmt indents {want}",
                    lead.len()
                ),
            );
        }
        if net > 0 {
            indents.push(net);
        }
    }

    // Alignment of `=` and of trailing comments over runs of consecutive lines.
    struct Cells {
        lead_cols: usize,
        eq_at: Option<usize>,
        code_cols: usize,
        comment_at: Option<usize>,
    }
    let cells: Vec<Option<Cells>> = lines
        .iter()
        .map(|line| {
            if line.verbatim || line.toks.is_empty() {
                return None;
            }
            let text = &line.text;
            let comment_at = match line.toks.as_slice() {
                [.., (at, Tok::Comment)] if line.toks.len() > 1 => Some(*at),
                _ => None,
            };
            let code: Vec<_> = line
                .toks
                .iter()
                .copied()
                .filter(|(_, t)| *t != Tok::Comment)
                .collect();
            // hclwrite: the first `=` (not the first token) starts the assignment cell if the
            // rest of the line is bracket-balanced.
            let eq_at = code
                .iter()
                .position(|(_, t)| *t == Tok::Equal)
                .filter(|&i| i > 0 && bracket_change(&code[i..]) == 0)
                .map(|i| code[i].0);
            let lead_cols = eq_at.map_or(0, |at| text[..at].trim_end().chars().count());
            let code_end = comment_at.unwrap_or(text.len());
            let code_cols = text[..code_end].trim_end().chars().count();
            Some(Cells {
                lead_cols,
                eq_at,
                code_cols,
                comment_at,
            })
        })
        .collect();
    let mut run: Vec<usize> = Vec::new();
    let flush_eq = |run: &mut Vec<usize>, out: &mut Vec<Violation>| {
        let width = run
            .iter()
            .filter_map(|&i| cells[i].as_ref().map(|c| c.lead_cols))
            .max()
            .unwrap_or(0);
        for &i in run.iter() {
            let (Some(c), Some(at)) = (cells[i].as_ref(), cells[i].as_ref().and_then(|c| c.eq_at))
            else {
                continue;
            };
            let text = &lines[i].text;
            let spaces = text[..at].len() - text[..at].trim_end().len();
            let want = width - c.lead_cols + 1;
            if spaces != want {
                out.push(Violation {
                    line: i + 1,
                    message: format!(
                        "{spaces} spaces before `=`, terraform fmt aligns with {want}"
                    ),
                });
            }
            let after = &text[at + 1..];
            let rest = after.trim_start();
            if !rest.is_empty() && after.len() - rest.len() != 1 {
                out.push(Violation {
                    line: i + 1,
                    message: "not one space after `=`".to_owned(),
                });
            }
        }
        run.clear();
    };
    for (i, c) in cells.iter().enumerate() {
        match c {
            _ if lines[i].continued => {}
            Some(c) if c.eq_at.is_some() => run.push(i),
            _ => flush_eq(&mut run, &mut out),
        }
    }
    flush_eq(&mut run, &mut out);

    let flush_comment = |run: &mut Vec<usize>, out: &mut Vec<Violation>| {
        let width = run
            .iter()
            .filter_map(|&i| cells[i].as_ref().map(|c| c.code_cols))
            .max()
            .unwrap_or(0);
        for &i in run.iter() {
            let Some(c) = cells[i].as_ref() else { continue };
            let Some(at) = c.comment_at else { continue };
            let text = &lines[i].text;
            let spaces = text[..at].len() - text[..at].trim_end().len();
            let want = width - c.code_cols + 1;
            if spaces != want {
                out.push(Violation {
                    line: i + 1,
                    message: format!(
                        "{spaces} spaces before the comment, terraform fmt aligns with {want}"
                    ),
                });
            }
        }
        run.clear();
    };
    let mut run = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        match c {
            _ if lines[i].continued => {}
            Some(c) if c.comment_at.is_some() => run.push(i),
            _ => flush_comment(&mut run, &mut out),
        }
    }
    flush_comment(&mut run, &mut out);
    out.sort_by_key(|v| v.line);
    out
}

#[cfg(test)]
mod tests {
    use super::check;

    fn lines(src: &str) -> Vec<usize> {
        check(src).into_iter().map(|v| v.line).collect()
    }

    #[test]
    fn canonical_layout_passes() {
        let src = r#"locals {
  a   = 1
  bcd = "x" # why
  e   = { f = 1 }

  list = [
    "a",
  ]
  cond = var.x ? {
    a = 1
    } : {
    a = 2
  }
  doc = <<-EOT
      free   text =
  EOT
}
"#;
        assert_eq!(check(src), vec![]);
    }

    #[test]
    fn misaligned_equals_fail() {
        assert_eq!(lines("locals {\n  a = 1\n  bcd = 2\n}\n"), vec![2]);
    }

    #[test]
    fn wrong_indentation_fails() {
        assert_eq!(lines("locals {\n    a = 1\n}\n"), vec![2]);
        assert_eq!(lines("locals {\n\ta = 1\n}\n"), vec![2]);
    }

    #[test]
    fn trailing_whitespace_fails() {
        assert_eq!(lines("a = 1 \n"), vec![1]);
    }

    #[test]
    fn two_spaces_after_equals_fail() {
        assert_eq!(lines("a =  1\n"), vec![1]);
    }

    #[test]
    fn misaligned_trailing_comments_fail() {
        assert_eq!(
            lines("locals {\n  a   = 1 # x\n  bcd = 22   # y\n}\n"),
            vec![2, 3]
        );
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        assert_eq!(check("a = \"{[(\" # {\nb = \"${x}\"\n"), vec![]);
    }
}
