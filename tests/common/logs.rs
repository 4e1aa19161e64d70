//! Argus's logs as a test reads them: without the ANSI colours of its terminal output.
#![allow(dead_code)]

use std::path::Path;

/// `text` without ANSI colour sequences (ESC [ … m).
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().take_while(|c| *c != 'm').for_each(drop);
        } else {
            out.push(c);
        }
    }
    out
}

/// A log file without colours (empty when it does not exist).
pub fn plain_log(path: &Path) -> String {
    plain(&std::fs::read_to_string(path).unwrap_or_default())
}
