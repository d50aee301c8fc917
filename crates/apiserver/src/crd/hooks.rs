//! The strategy of one served custom resource version: decoding prunes unknown fields and
//! applies defaults with the version's schema, validation checks the schema, tables show
//! the version's printer columns, and `/scale` uses the CRD's replica and selector paths.

use std::sync::Arc;

use serde_json::Value;
use skiff_api::FieldErrors;

use super::columns::{self, PrinterColumn};
use super::schema;
use crate::resources::{Codec, Column, Context, Hooks, ScalePaths};

/// Prunes and defaults a request body (upstream's unstructured decoder for CRs).
pub struct CustomCodec {
    pub schema: Arc<Value>,
}

impl Codec for CustomCodec {
    fn normalize(&self, mut obj: Value) -> Result<(Value, Vec<String>), String> {
        match obj.get("metadata") {
            None | Some(Value::Object(_)) => {}
            Some(_) => return Err("metadata must be an object".into()),
        }
        let mut dropped = Vec::new();
        schema::prune(&self.schema, &mut obj, &mut dropped);
        schema::default(&self.schema, &mut obj);
        Ok((obj, dropped))
    }
}

pub struct CustomHooks {
    pub schema: Arc<Value>,
    pub columns: Vec<PrinterColumn>,
    /// The columns' texts, leaked once per definition: `Column` holds `&'static str`s.
    pub column_texts: Vec<[&'static str; 4]>,
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: no new objects (upstream refuses creates then).
    pub terminating: bool,
}

impl CustomHooks {
    pub fn new(
        schema: Arc<Value>,
        columns: Vec<PrinterColumn>,
        scale: Option<ScalePaths>,
        terminating: bool,
    ) -> Self {
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let column_texts = columns
            .iter()
            .map(|c| {
                let kind = if c.kind == "date" {
                    "date"
                } else {
                    c.kind.as_str()
                };
                [
                    leak(&c.name),
                    leak(kind),
                    leak(&c.format),
                    leak(&c.description),
                ]
            })
            .collect();
        Self {
            schema,
            columns,
            column_texts,
            scale,
            terminating,
        }
    }
}

impl Hooks for CustomHooks {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = FieldErrors::default();
        if self.terminating && skiff_api::meta::resource_version(obj).is_empty() {
            errs.push(skiff_api::FieldError::forbidden(
                "metadata",
                "create not allowed while custom resource definition is terminating",
            ));
            return errs;
        }
        schema::validate(&self.schema, obj, &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, _old: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = FieldErrors::default();
        schema::validate(&self.schema, new, &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        let mut out = vec![Column::name_column()];
        for (c, [name, kind, format, description]) in self.columns.iter().zip(&self.column_texts) {
            out.push(Column {
                name,
                kind,
                format,
                description,
                wide: c.priority > 0,
            });
        }
        out
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let mut cells = vec![Value::String(skiff_api::meta::name(obj).to_string())];
        cells.extend(self.columns.iter().map(|c| columns::cell(c, obj)));
        cells
    }

    fn scale_paths(&self) -> ScalePaths {
        self.scale.clone().unwrap_or_default()
    }

    fn openapi_schema(&self) -> Option<&Value> {
        Some(&self.schema)
    }
}
