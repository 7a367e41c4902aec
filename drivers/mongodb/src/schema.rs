//! The schema inferred from sampled documents: every field path with the
//! BSON types seen there and how often.

use std::collections::BTreeMap;

use ewii_driver_core::schema::{FieldSummary, TypeCount};
use mongodb::bson::{Bson, Document};

use crate::values::type_name;

/// Deepest path the inference follows (deeper fields are summarised as
/// `object`).
const MAX_DEPTH: usize = 8;

/// Most field paths reported; the rest are left out (the description says
/// how many documents were sampled, not that every path is listed).
const MAX_PATHS: usize = 500;

/// Counts per path: how many documents hold it, per type.
#[derive(Default)]
pub struct SchemaInference {
    paths: BTreeMap<String, (u64, BTreeMap<&'static str, u64>)>,
}

impl SchemaInference {
    /// Adds one sampled document.
    pub fn add(&mut self, doc: &Document) {
        let mut seen = BTreeMap::new();
        visit_document(doc, "", 0, &mut seen);
        for (path, types) in seen {
            if !self.paths.contains_key(&path) && self.paths.len() >= MAX_PATHS {
                continue;
            }
            let entry = self.paths.entry(path).or_default();
            entry.0 += 1;
            for t in types {
                *entry.1.entry(t).or_default() += 1;
            }
        }
    }

    /// The summary, by path; types most frequent first.
    pub fn finish(self) -> Vec<FieldSummary> {
        self.paths
            .into_iter()
            .map(|(path, (present_in, types))| {
                let mut types: Vec<TypeCount> = types
                    .into_iter()
                    .map(|(t, count)| TypeCount {
                        bson_type: t.to_owned(),
                        count,
                    })
                    .collect();
                types.sort_by(|a, b| b.count.cmp(&a.count).then(a.bson_type.cmp(&b.bson_type)));
                FieldSummary {
                    path,
                    types,
                    present_in,
                }
            })
            .collect()
    }
}

/// Types seen per path in one document (each type counted once per
/// document, so frequencies are "documents holding this type here").
type Seen = BTreeMap<String, std::collections::BTreeSet<&'static str>>;

fn visit_document(doc: &Document, prefix: &str, depth: usize, seen: &mut Seen) {
    for (key, value) in doc {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        visit(value, path, depth, seen);
    }
}

fn visit(value: &Bson, path: String, depth: usize, seen: &mut Seen) {
    seen.entry(path.clone())
        .or_default()
        .insert(type_name(value));
    if depth >= MAX_DEPTH {
        return;
    }
    match value {
        Bson::Document(inner) => visit_document(inner, &path, depth + 1, seen),
        Bson::Array(items) => {
            let element = format!("{path}.[]");
            for item in items {
                visit(item, element.clone(), depth + 1, seen);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn paths_types_and_frequencies() {
        let mut s = SchemaInference::default();
        s.add(&doc! {"a": 1, "b": {"c": "x"}, "t": [1, "two"]});
        s.add(&doc! {"a": "one", "b": {"c": "y"}});
        s.add(&doc! {"a": 2});
        let fields = s.finish();
        let a = fields.iter().find(|f| f.path == "a").expect("a");
        assert_eq!(a.present_in, 3);
        assert_eq!(
            (a.types[0].bson_type.as_str(), a.types[0].count),
            ("int", 2)
        );
        let c = fields.iter().find(|f| f.path == "b.c").expect("b.c");
        assert_eq!(c.present_in, 2);
        let t = fields.iter().find(|f| f.path == "t.[]").expect("t.[]");
        assert_eq!(t.types.len(), 2);
    }
}
