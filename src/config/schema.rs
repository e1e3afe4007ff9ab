//! What the configuration reference (docs/configuration-reference.md) is
//! generated from, so the page cannot drift from the code: each table's JSON
//! schema, which `schemars` draws from the structs' doc comments and serde
//! attributes (renames, defaults, required keys), with its keys in the order
//! the struct declares them (a schema's keys are sorted, serde's are not).
//!
//! The file's own tables are listed in `raw::file_tables`, each layer's in
//! `probe::config_tables`. The raw structs keep durations, schedules and zones as strings so the
//! loader can point at a bad one; the marker types below tell the reference
//! which kind of text a string stands for (`#[schemars(with = "…")]`).

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

/// One config table: its schema and its keys in declaration order.
pub struct TableSchema {
    pub schema: Schema,
    pub keys: &'static [&'static str],
}

impl TableSchema {
    pub fn of<T: JsonSchema + DeserializeOwned>() -> TableSchema {
        TableSchema {
            schema: schemars::schema_for!(T),
            keys: serde_aux::serde_introspection::serde_introspect::<T>(),
        }
    }

    /// The struct's name, as `$ref`s to it in other schemas spell it.
    pub fn name(&self) -> &str {
        self.schema
            .get("title")
            .and_then(|title| title.as_str())
            .unwrap_or_default()
    }
}

macro_rules! text_kind {
    ($(#[$doc:meta])* $name:ident, $format:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "format": $format })
            }
        }
    };
}

text_kind!(
    /// A duration as written in the file: `90s`, `10m`, `1h30m`.
    DurationText,
    "duration"
);
text_kind!(
    /// A crontab schedule or macro (`*/15 * * * *`, `@hourly`), or `"none"`.
    CronText,
    "cron"
);
text_kind!(
    /// An IANA time zone name (`Europe/Berlin`).
    TimeZoneText,
    "time-zone"
);
