//! The JSON Schema of the spec, schemas/spec.schema.json, derived from the spec types with
//! schemars so that it cannot drift from what [`Spec::from_yaml`](super::Spec::from_yaml)
//! reads: serde's attributes (deny_unknown_fields, default, rename_all) carry over by
//! themselves, doc comments become descriptions. What serde's attributes cannot describe is
//! here: the `version` check and the names that `parsed` reads case-insensitively.
//! tests/it/spec_schema.rs checks the committed file against [`spec_schema`].

use schemars::generate::SchemaSettings;
use schemars::{json_schema, Schema, SchemaGenerator};
use serde_json::Value;

use super::{Spec, SPEC_VERSION};

/// Where the schema says it lives; `.invalid` like the other schemas: no server hosts them.
pub const SCHEMA_ID: &str = "https://archrepair-onnx.invalid/schemas/spec.schema.json";

/// The JSON Schema (draft 2020-12) of spec version [`SPEC_VERSION`], as committed in
/// schemas/spec.schema.json.
pub fn spec_schema() -> Value {
    let mut schema = SchemaSettings::draft2020_12().for_deserialize().into_generator().into_root_schema_for::<Spec>();
    schema.insert("$id".into(), SCHEMA_ID.into());
    schema.insert("title".into(), format!("archrepair-onnx spec, version {SPEC_VERSION}").into());
    schema.to_value()
}

/// `version`: [`Spec::from_yaml`](super::Spec::from_yaml) refuses every other number.
pub(super) fn version(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "const": SPEC_VERSION })
}

/// The names `data.format` accepts (`Format`'s `FromStr`).
const FORMAT_NAMES: &[&str] = &["idx", "cifar10", "cifar-10", "npy", "npz", "folder"];
/// The names `data.split` accepts (`Split`'s `FromStr`).
const SPLIT_NAMES: &[&str] = &["test", "t10k", "train"];
/// The names `data.layout` accepts (`Layout`'s `FromStr`).
const LAYOUT_NAMES: &[&str] = &["nchw", "nhwc"];

pub(super) fn format_name(_: &mut SchemaGenerator) -> Schema {
    names_in_any_case(FORMAT_NAMES)
}

pub(super) fn split_name(_: &mut SchemaGenerator) -> Schema {
    names_in_any_case(SPLIT_NAMES)
}

pub(super) fn layout_name(_: &mut SchemaGenerator) -> Schema {
    names_in_any_case(LAYOUT_NAMES)
}

/// An optional name read by `parsed` (spec.rs), whose `FromStr` lowercases first: null, one of
/// `names` as written (the `enum` editors complete from), or the same in any case (a pattern,
/// as JSON Schema has no case-insensitive enum). `names` hold lowercase letters, digits and `-`,
/// none of which a regular expression treats specially outside a character class.
fn names_in_any_case(names: &[&str]) -> Schema {
    let letter_in_any_case = |c: char| if c.is_ascii_alphabetic() { format!("[{c}{}]", c.to_ascii_uppercase()) } else { c.to_string() };
    let any_case: Vec<String> = names.iter().map(|name| name.chars().map(letter_in_any_case).collect()).collect();
    let mut listed: Vec<Value> = names.iter().map(|n| Value::from(*n)).collect();
    listed.push(Value::Null);
    json_schema!({
        "anyOf": [
            { "enum": listed },
            { "type": "string", "pattern": format!("^(?:{})$", any_case.join("|")) }
        ]
    })
}

#[cfg(test)]
mod tests {
    use std::fmt::Display;
    use std::str::FromStr;

    use super::*;
    use crate::data::{Format, Layout, Split};

    /// Every listed name parses in any case, and every value's own name is listed.
    fn names_match<T: FromStr<Err = String> + Display>(names: &[&str], values: &[T]) {
        for name in names {
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
            for written in [name.to_string(), name.to_ascii_uppercase()] {
                assert!(written.parse::<T>().is_ok(), "`{written}` is in the schema but does not parse");
            }
        }
        for value in values {
            let shown = value.to_string().to_ascii_lowercase();
            assert!(names.contains(&shown.as_str()), "`{shown}` parses but is not in the schema");
        }
    }

    #[test]
    fn spec_names_are_the_ones_from_str_reads() {
        names_match(FORMAT_NAMES, &[Format::Idx, Format::Cifar10, Format::Npy, Format::Npz, Format::Folder]);
        names_match(SPLIT_NAMES, &[Split::Test, Split::Train]);
        names_match(LAYOUT_NAMES, &[Layout::Nchw, Layout::Nhwc]);
    }

    #[test]
    fn spec_schema_names_itself_and_refuses_unknown_keys() {
        let schema = spec_schema();
        assert_eq!(schema["$id"], SCHEMA_ID);
        assert_eq!(schema["title"], "archrepair-onnx spec, version 1");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["version"]["const"], 1);
        assert_eq!(schema["required"], serde_json::json!(["version"]));
    }
}
