//! Writing an edited pipeline back into its file (`PUT /v1/pipelines/{name}`), keeping
//! the file's comments, order and layout: only what the edit changed is touched.
//!
//! Three versions take part: the file's text, what that text parsed into (`old`), and
//! the edit (`new`). A key whose value is the same in `old` and `new` is left as the file
//! has it (written, or absent and defaulted); a changed value is replaced in place with
//! its comments kept; keys the edit dropped are removed, new ones appended to their
//! table; array-of-tables entries (`[[cameras]]`, `[[zones]]`, `[[rules]]`) are matched
//! by position.

use toml_edit::{DocumentMut, Item, Table};

use super::files::PipelineConfig;

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("the pipeline file is not valid TOML: {0}")]
    Parse(String),
    #[error("the pipeline does not serialise to TOML: {0}")]
    Serialise(String),
}

/// `text` (a pipeline file that parsed into `old`) rewritten to say `new`.
pub fn rewrite(text: &str, old: &PipelineConfig, new: &PipelineConfig) -> Result<String, RewriteError> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| RewriteError::Parse(e.to_string()))?;
    let effective = as_document(old)?;
    let wanted = as_document(new)?;
    merge_table(doc.as_table_mut(), Some(effective.as_table()), wanted.as_table());
    Ok(doc.to_string())
}

fn as_document(p: &PipelineConfig) -> Result<DocumentMut, RewriteError> {
    let text = toml::to_string(p).map_err(|e| RewriteError::Serialise(e.to_string()))?;
    text.parse().map_err(|e: toml_edit::TomlError| RewriteError::Serialise(e.to_string()))
}

/// Both sides come from the same serialiser, so equal text is equal content.
fn same(a: &Item, b: &Item) -> bool {
    a.to_string() == b.to_string()
}

fn merge_table(doc: &mut Table, effective: Option<&Table>, new: &Table) {
    let gone: Vec<String> = doc.iter().map(|(k, _)| k.to_string()).filter(|k| !new.contains_key(k)).collect();
    for k in gone {
        doc.remove(&k);
    }
    for (k, n) in new.iter() {
        let e = effective.and_then(|t| t.get(k));
        if e.is_some_and(|e| same(e, n)) {
            continue;
        }
        match doc.get_mut(k) {
            Some(d) => merge_item(d, e, n),
            None => {
                doc.insert(k, n.clone());
            }
        }
    }
}

fn merge_item(doc: &mut Item, effective: Option<&Item>, new: &Item) {
    match (doc, new) {
        (Item::Table(d), Item::Table(n)) => merge_table(d, effective.and_then(Item::as_table), n),
        (Item::ArrayOfTables(d), Item::ArrayOfTables(n)) => {
            let e = effective.and_then(Item::as_array_of_tables);
            while d.len() > n.len() {
                d.remove(d.len() - 1);
            }
            for (i, nt) in n.iter().enumerate() {
                match d.get_mut(i) {
                    Some(dt) => merge_table(dt, e.and_then(|e| e.get(i)), nt),
                    None => d.push(nt.clone()),
                }
            }
        }
        (Item::Value(d), Item::Value(n)) => {
            // The comment after the value and the spacing around it stay.
            let decor = d.decor().clone();
            *d = n.clone();
            *d.decor_mut() = decor;
        }
        (d, n) => *d = n.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# The site's pipeline.
name = "site"

[[cameras]]
id = "gate"                # the north gate
source = "rtsp://cam/1"

[[zones]]
id = "yard"
polygon = [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]]   # metres

[[rules]]
kind = "intrusion"
id = "no-entry"
zone = "yard"
min_dwell_s = 1.0          # one second inside
"#;

    fn parse(text: &str) -> PipelineConfig {
        toml::from_str(text).unwrap()
    }

    fn round_trip(edit: impl FnOnce(&mut PipelineConfig)) -> String {
        let old = parse(FILE);
        let mut new = old.clone();
        edit(&mut new);
        let text = rewrite(FILE, &old, &new).unwrap();
        assert_eq!(parse(&text), new, "the rewritten file must say what the edit says:\n{text}");
        text
    }

    #[test]
    fn no_change_leaves_the_file_as_it_was() {
        assert_eq!(round_trip(|_| {}), FILE);
    }

    #[test]
    fn a_changed_value_is_replaced_in_place_with_its_comment_and_nothing_else_moves() {
        let text = round_trip(|p| {
            let s = toml::to_string(&p.rules[0]).unwrap().replace("min_dwell_s = 1.0", "min_dwell_s = 4.0");
            p.rules[0] = toml::from_str(&s).unwrap();
        });
        assert_eq!(text, FILE.replace("min_dwell_s = 1.0          # one second inside", "min_dwell_s = 4.0          # one second inside"));
    }

    #[test]
    fn zones_added_moved_and_removed_keep_every_comment_of_the_rest() {
        let text = round_trip(|p| {
            p.zones[0].polygon[2] = [5.0, 5.0];
            let mut kiosk = p.zones[0].clone();
            kiosk.id = "kiosk".into();
            p.zones.push(kiosk);
        });
        assert!(text.contains("# The site's pipeline.") && text.contains("# the north gate") && text.contains("# one second inside"), "{text}");
        assert!(text.contains("[4.0, 0.0], [5.0, 5.0]]   # metres"), "{text}");
        assert_eq!(text.matches("[[zones]]").count(), 2, "{text}");
        // Defaults the file leaves out stay out (the camera's many optional keys).
        assert!(!text.contains("stall_timeout_s"), "{text}");

        let old = parse(&text);
        let mut fewer = old.clone();
        fewer.zones.truncate(1);
        let back = rewrite(&text, &old, &fewer).unwrap();
        assert_eq!(parse(&back), fewer);
        assert_eq!(back.matches("[[zones]]").count(), 1, "{back}");
    }
}
