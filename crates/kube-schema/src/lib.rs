//! How the API identifies list items, from the Kubernetes OpenAPI schema.
//!
//! `kubectl apply` merges a list by its items' keys (`containers` by
//! `name`, Service `ports` by `port` *and* `protocol`), unions a set, and
//! replaces an atomic list whole. Which is which is declared in the schema
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-patch-merge-key`). For built-in kinds the answer comes from
//! `list_types.json`, generated from the kubernetes repository's
//! `api/openapi-spec/swagger.json` by `scripts/gen-kubernetes-list-types`
//! and read once per process: a lookup is a hash-map step, never a request.
//! Custom resources carry the same extensions in their CRD's
//! `openAPIV3Schema`, read from the cluster once per type and run
//! ([`from_crd_schema`]). A list the schema says nothing about is atomic, as
//! it is for server-side apply.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

/// How items of a list are identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole: any added, removed or reordered item is a change.
    Atomic,
    /// Scalars merged as a set: order does not matter, live extras are kept.
    Set,
    /// Objects merged by these key fields.
    Map(Vec<String>),
}

/// A type: its fields that lead to a list somewhere below.
#[derive(Debug, Clone, Default)]
pub struct TypeDef {
    pub fields: HashMap<String, Field>,
}

/// One field of a type.
#[derive(Debug, Clone, Default)]
pub struct Field {
    /// Set when the field is a list.
    pub list: Option<ListType>,
    /// The field is a map (`additionalProperties`) whose values have type `ty`.
    pub map_values: bool,
    /// The type of the value, of each list item, or of each map value.
    pub ty: Option<TypeRef>,
    /// The value (or each map value) is a resource quantity: a custom
    /// resource's field declared int-or-string with the quantity pattern
    /// that controller-gen writes for `resource.Quantity`.
    pub quantity: bool,
}

/// A type named in the built-in table, or written out (custom resources).
#[derive(Debug, Clone)]
pub enum TypeRef {
    Named(String),
    Inline(Box<TypeDef>),
}

/// The built-in table.
pub struct Schemas {
    types: HashMap<String, TypeDef>,
    kinds: HashMap<String, String>,
    key_defaults: Map<String, Value>,
    /// Where the table came from (spec and release).
    pub source: String,
}

#[derive(Deserialize)]
struct RawTable {
    source: String,
    key_defaults: Map<String, Value>,
    kinds: HashMap<String, String>,
    types: HashMap<String, HashMap<String, RawField>>,
}

#[derive(Deserialize)]
struct RawField {
    #[serde(default)]
    l: Option<String>,
    #[serde(default)]
    k: Vec<String>,
    #[serde(default)]
    t: Option<String>,
    #[serde(default)]
    m: bool,
}

fn list_type(name: &str, keys: Vec<String>) -> ListType {
    match name {
        "map" if !keys.is_empty() => ListType::Map(keys),
        "set" => ListType::Set,
        _ => ListType::Atomic,
    }
}

/// The table generated from the published OpenAPI spec, parsed on first use.
pub fn builtin() -> &'static Schemas {
    static TABLE: OnceLock<Schemas> = OnceLock::new();
    TABLE.get_or_init(|| {
        let raw: RawTable = serde_json::from_str(include_str!("list_types.json"))
            .expect("list_types.json is generated valid");
        let types = raw
            .types
            .into_iter()
            .map(|(name, fields)| {
                let fields = fields
                    .into_iter()
                    .map(|(field, raw)| {
                        let field_def = Field {
                            list: raw.l.as_deref().map(|l| list_type(l, raw.k.clone())),
                            map_values: raw.m,
                            ty: raw.t.map(TypeRef::Named),
                            // Built-in quantities: see `is_quantity`.
                            quantity: false,
                        };
                        (field, field_def)
                    })
                    .collect();
                (name, TypeDef { fields })
            })
            .collect();
        Schemas {
            types,
            kinds: raw.kinds,
            key_defaults: raw.key_defaults,
            source: raw.source,
        }
    })
}

impl Schemas {
    /// The root type of `apiVersion`/`kind`, when the table has it.
    pub fn root(&self, api_version: &str, kind: &str) -> Option<&TypeDef> {
        let name = self.kinds.get(&format!("{api_version}/{kind}"))?;
        self.types.get(name)
    }

    /// Whether the table knows this kind (custom resources are not in it).
    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        self.kinds.contains_key(&format!("{api_version}/{kind}"))
    }

    pub fn resolve<'a>(&'a self, ty: &'a TypeRef) -> Option<&'a TypeDef> {
        match ty {
            TypeRef::Named(name) => self.types.get(name),
            TypeRef::Inline(def) => Some(def),
        }
    }

    /// The value the API server gives a missing list-map key before merging
    /// (a port's `protocol` is `TCP`).
    pub fn key_default(&self, key: &str) -> Option<&Value> {
        self.key_defaults.get(key)
    }
}

/// Where the built-in API holds resource quantities, from
/// `quantity_fields.json` (generated by `scripts/gen-kubernetes-quantity-fields`
/// from the same release as the list table).
struct QuantityFields {
    /// Fields that are maps of quantities (`limits`, `requests`, `hard`, …).
    maps: std::collections::HashSet<String>,
    /// `(parent field, field)` of single quantities; parent "" for a kind's
    /// own field or a list item's.
    fields: std::collections::HashSet<(String, String)>,
}

fn quantity_fields() -> &'static QuantityFields {
    static TABLE: OnceLock<QuantityFields> = OnceLock::new();
    TABLE.get_or_init(|| {
        #[derive(Deserialize)]
        struct Raw {
            maps: Vec<String>,
            fields: Vec<(String, String)>,
        }
        let raw: Raw = serde_json::from_str(include_str!("quantity_fields.json"))
            .expect("quantity_fields.json is generated valid");
        QuantityFields {
            maps: raw.maps.into_iter().collect(),
            fields: raw.fields.into_iter().collect(),
        }
    })
}

/// Whether the value at `key` (inside the field `parent`; `None` at an
/// object's root or in a list item) is a resource quantity in the built-in
/// API. The API server stores quantities canonically (`1000m` as `1`), so
/// they compare by value; other strings compare by text (an env value
/// `"1000m"` is not `"1"`).
pub fn is_quantity(parent: Option<&str>, key: Option<&str>) -> bool {
    let table = quantity_fields();
    parent.is_some_and(|p| table.maps.contains(p))
        || key.is_some_and(|k| {
            table
                .fields
                .contains(&(parent.unwrap_or("").to_string(), k.to_string()))
        })
}

/// The JSON type of every field of the built-in kinds, from
/// `field_types.json` (generated by `scripts/gen-kubernetes-field-types`).
struct FieldTypes {
    kinds: HashMap<String, String>,
    types: HashMap<String, HashMap<String, String>>,
}

fn field_types() -> &'static FieldTypes {
    static TABLE: OnceLock<FieldTypes> = OnceLock::new();
    TABLE.get_or_init(|| {
        #[derive(Deserialize)]
        struct Raw {
            kinds: HashMap<String, String>,
            types: HashMap<String, HashMap<String, String>>,
        }
        let raw: Raw = serde_json::from_str(include_str!("field_types.json"))
            .expect("field_types.json is generated valid");
        FieldTypes {
            kinds: raw.kinds,
            types: raw.types,
        }
    })
}

/// A value of the wrong JSON type for its field: the API server's decoder
/// refuses the whole object (`cannot unmarshal number into Go struct field
/// EnvVar.value of type string`), so `kubectl apply` fails on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMismatch {
    /// Keys from the object's root; a list item's index joins its list's
    /// key: `["spec", "containers[0]", "env[1]", "value"]`.
    pub path: Vec<String>,
    /// What the field holds: `a string`, `an integer`, `a number`,
    /// `a boolean`, `a mapping` or `a list`.
    pub expected: &'static str,
}

/// Checks every field of a built-in kind against its type in the API;
/// kinds the table does not know (custom resources) and fields it does not
/// know pass. `null` passes anywhere (it means "unset"). An integral float
/// passes where an integer is wanted: YAML `1.0` reaches the server as `1`.
pub fn check_field_types(
    api_version: &str,
    kind: &str,
    object: &Value,
) -> Result<(), TypeMismatch> {
    let table = field_types();
    let Some(root) = table.kinds.get(&format!("{api_version}/{kind}")) else {
        return Ok(());
    };
    let mut path = Vec::new();
    check_type(table, &format!("T:{root}"), object, &mut path)
        .map_err(|expected| TypeMismatch { path, expected })
}

fn check_type(
    table: &FieldTypes,
    code: &str,
    value: &Value,
    path: &mut Vec<String>,
) -> Result<(), &'static str> {
    let ok = match (code, value) {
        (_, Value::Null) | ("a", _) => true,
        ("s", v) => v.is_string(),
        ("b", v) => v.is_boolean(),
        ("f", v) => v.is_number(),
        ("i", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        ("i", _) => false,
        (code, Value::Object(map)) if code.starts_with("T:") => {
            let Some(fields) = table.types.get(&code[2..]) else {
                return Ok(());
            };
            for (key, inner) in map {
                if let Some(field) = fields.get(key) {
                    path.push(key.clone());
                    check_type(table, field, inner, path)?;
                    path.pop();
                }
            }
            true
        }
        (code, Value::Object(map)) if code.starts_with("M:") => {
            for (key, inner) in map {
                path.push(key.clone());
                check_type(table, &code[2..], inner, path)?;
                path.pop();
            }
            true
        }
        (code, Value::Array(items)) if code.starts_with("L:") => {
            let list = path.pop().unwrap_or_default();
            for (index, inner) in items.iter().enumerate() {
                path.push(format!("{list}[{index}]"));
                check_type(table, &code[2..], inner, path)?;
                path.pop();
            }
            path.push(list);
            true
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(match code.split(':').next() {
        Some("s") => "a string",
        Some("i") => "an integer",
        Some("f") => "a number",
        Some("b") => "a boolean",
        Some("L") => "a list",
        _ => "a mapping",
    })
}

/// The list types declared in a CRD version's `openAPIV3Schema`. Lists
/// without `x-kubernetes-list-type` are atomic, as the API server treats them.
pub fn from_crd_schema(schema: &Value) -> TypeDef {
    let mut def = TypeDef::default();
    let Some(Value::Object(properties)) = schema.get("properties") else {
        return def;
    };
    for (name, property) in properties {
        if let Some(field) = crd_field(property) {
            def.fields.insert(name.clone(), field);
        }
    }
    def
}

fn crd_field(property: &Value) -> Option<Field> {
    match property.get("type").and_then(Value::as_str) {
        Some("array") => {
            let keys: Vec<String> = property
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let list = list_type(
                property
                    .get("x-kubernetes-list-type")
                    .and_then(Value::as_str)
                    .unwrap_or("atomic"),
                keys,
            );
            let items = property.get("items").map(from_crd_schema);
            Some(Field {
                list: Some(list),
                map_values: false,
                quantity: false,
                ty: items
                    .filter(|d| !d.fields.is_empty())
                    .map(|d| TypeRef::Inline(Box::new(d))),
            })
        }
        _ => {
            if let Some(values) = property
                .get("additionalProperties")
                .filter(|v| v.is_object())
            {
                let inner = values
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|t| *t == "array")
                    .map(|_| {
                        // A map of lists: one synthetic field holds the list type.
                        let mut def = TypeDef::default();
                        if let Some(field) = crd_field(values) {
                            def.fields.insert(String::new(), field);
                        }
                        def
                    })
                    .unwrap_or_else(|| from_crd_schema(values));
                if is_quantity_schema(values) {
                    return Some(Field {
                        list: None,
                        map_values: true,
                        ty: None,
                        quantity: true,
                    });
                }
                return (!inner.fields.is_empty()).then(|| Field {
                    list: None,
                    map_values: true,
                    ty: Some(TypeRef::Inline(Box::new(inner))),
                    quantity: false,
                });
            }
            if is_quantity_schema(property) {
                return Some(Field {
                    quantity: true,
                    ..Field::default()
                });
            }
            let inner = from_crd_schema(property);
            (!inner.fields.is_empty()).then(|| Field {
                list: None,
                map_values: false,
                ty: Some(TypeRef::Inline(Box::new(inner))),
                quantity: false,
            })
        }
    }
}

/// A CRD property holding a `resource.Quantity`: controller-gen writes it
/// as int-or-string with the quantity pattern (binary suffixes `Ki`…`Ei`).
fn is_quantity_schema(property: &Value) -> bool {
    property.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && property
            .get("pattern")
            .and_then(Value::as_str)
            .is_some_and(|p| p.contains("[KMGTPE]i"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field<'a>(schemas: &'a Schemas, ty: &'a TypeDef, path: &[&str]) -> &'a Field {
        let mut current = ty;
        let mut found = None;
        for (i, step) in path.iter().enumerate() {
            let f = current
                .fields
                .get(*step)
                .unwrap_or_else(|| panic!("no field {step} in {path:?}"));
            found = Some(f);
            if i + 1 < path.len() {
                current = schemas.resolve(f.ty.as_ref().unwrap()).unwrap();
            }
        }
        found.unwrap()
    }

    /// The list identities of the fields people most often keep in git,
    /// read from the generated table.
    #[test]
    fn generated_table_has_the_api_list_types() {
        let s = builtin();
        assert!(s.source.contains("swagger.json"), "{}", s.source);
        let deployment = s.root("apps/v1", "Deployment").expect("Deployment");
        let pod = ["spec", "template", "spec"];
        let table: &[(&[&str], ListType)] = &[
            (&["containers"], ListType::Map(vec!["name".into()])),
            (&["initContainers"], ListType::Map(vec!["name".into()])),
            (&["volumes"], ListType::Map(vec!["name".into()])),
            (&["tolerations"], ListType::Atomic),
            (&["imagePullSecrets"], ListType::Map(vec!["name".into()])),
            (
                &["topologySpreadConstraints"],
                ListType::Map(vec!["topologyKey".into(), "whenUnsatisfiable".into()]),
            ),
        ];
        for (tail, want) in table {
            let path: Vec<&str> = pod.iter().chain(tail.iter()).copied().collect();
            assert_eq!(
                field(s, deployment, &path).list.as_ref(),
                Some(want),
                "{path:?}"
            );
        }
        let container = ["spec", "template", "spec", "containers"];
        let container_table: &[(&str, ListType)] = &[
            ("env", ListType::Map(vec!["name".into()])),
            (
                "ports",
                ListType::Map(vec!["containerPort".into(), "protocol".into()]),
            ),
            ("volumeMounts", ListType::Map(vec!["mountPath".into()])),
            ("args", ListType::Atomic),
            ("command", ListType::Atomic),
            ("envFrom", ListType::Atomic),
        ];
        for (tail, want) in container_table {
            let path: Vec<&str> = container.iter().chain([tail]).copied().collect();
            assert_eq!(
                field(s, deployment, &path).list.as_ref(),
                Some(want),
                "{path:?}"
            );
        }
        let service = s.root("v1", "Service").unwrap();
        assert_eq!(
            field(s, service, &["spec", "ports"]).list,
            Some(ListType::Map(vec!["port".into(), "protocol".into()]))
        );
        assert_eq!(
            field(s, service, &["metadata", "finalizers"]).list,
            Some(ListType::Set)
        );
        assert_eq!(s.key_default("protocol"), Some(&json!("TCP")));
        assert!(s.root("example.com/v1", "Widget").is_none());
        let role = s.root("rbac.authorization.k8s.io/v1", "Role").unwrap();
        assert_eq!(field(s, role, &["rules"]).list, Some(ListType::Atomic));
    }

    #[test]
    fn crd_schemas_declare_their_own_lists() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "parts": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "kind"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"},
                          "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}},
            "steps": {"type": "array", "items": {"type": "string"}},
            "size": {"type": "integer"}}}}});
        let def = from_crd_schema(&schema);
        let s = builtin();
        let spec = s.resolve(def.fields["spec"].ty.as_ref().unwrap()).unwrap();
        assert_eq!(
            spec.fields["parts"].list,
            Some(ListType::Map(vec!["name".into(), "kind".into()]))
        );
        assert_eq!(spec.fields["steps"].list, Some(ListType::Atomic));
        assert!(!spec.fields.contains_key("size"));
        let part = s
            .resolve(spec.fields["parts"].ty.as_ref().unwrap())
            .unwrap();
        assert_eq!(part.fields["tags"].list, Some(ListType::Set));
    }
}
