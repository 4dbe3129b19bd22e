//! Columns for `Table` output (`kubectl get`, `aos get`), per resource type.

use serde_json::Value;

use crate::ResourceType;

/// A column definition, as `meta.k8s.io/v1` `TableColumnDefinition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `"READY"` is shown for name `"Ready"`.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `date`.
    pub type_: &'static str,
    /// OpenAPI format: `name` for the NAME column, else `""`.
    pub format: &'static str,
    /// Description.
    pub description: &'static str,
    /// 0 = always shown; 1 = only with `-o wide`.
    pub priority: u8,
}

/// The columns for `rt`, the same as kubectl shows for the built-in kinds.
pub fn columns(rt: &ResourceType) -> Vec<Column> {
    let _ = rt;
    unimplemented!()
}

/// One row of cells for `obj`, matching `columns(rt)`. `now_unix` is the current
/// time in seconds, used for the AGE column (`"5m"`, `"2d3h"`).
pub fn row(rt: &ResourceType, obj: &Value, now_unix: i64) -> Vec<Value> {
    let _ = (rt, obj, now_unix);
    unimplemented!()
}
