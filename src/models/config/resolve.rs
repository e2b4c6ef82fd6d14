//! What transformers does to a `config.json` before any model reads it: the legacy spellings
//! its config classes accept, the sub-configs chosen by `model_type`, and every missing field
//! filled from the class's defaults ([`super::classes`]).

use serde_json::{Map, Value};

use super::classes::{self, ConfigClass};

/// Resolves a whole `config.json` in place, as `AutoConfig` would build it. A `model_type` the
/// tables do not know is left as written (its fields stay what the file says).
pub(super) fn resolve(value: &mut Value) {
    let Some(config) = value.as_object_mut() else { return };
    let model_type = config.get("model_type").and_then(Value::as_str).map(str::to_owned);
    if let Some(class) = model_type.as_deref().and_then(classes::class) {
        resolve_as(config, class);
    }
}

fn resolve_as(config: &mut Map<String, Value>, class: &ConfigClass) {
    // PreTrainedConfig: `torch_dtype` is the old spelling of `dtype`.
    if is_absent(config.get("dtype"))
        && let Some(dtype) = config.get("torch_dtype").cloned()
    {
        config.insert("dtype".into(), dtype);
    }
    // An alias written in the file sets the field it stands for.
    for &(alias, field) in class.aliases {
        if !config.contains_key(field)
            && let Some(v) = config.get(alias).cloned()
        {
            config.insert(field.into(), v);
        }
    }
    legacy(config, class);
    for spec in class.sub_configs {
        let mut sub = match config.remove(spec.key) {
            Some(Value::Object(sub)) => sub,
            // Absent: the spec's class, from its `init_kwargs`.
            _ => spec
                .init_kwargs
                .iter()
                .map(|&(field, json)| (field.to_string(), parse(json)))
                .collect::<Map<String, Value>>(),
        };
        if !sub.contains_key("model_type") || spec.fixed_class {
            // A fixed class ignores the dict's own model_type (transformers writes its own back).
            sub.insert("model_type".into(), Value::String(spec.model_type.into()));
        }
        let model_type = sub.get("model_type").and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(class) = classes::class(&model_type) {
            resolve_as(&mut sub, class);
        }
        config.insert(spec.key.into(), Value::Object(sub));
    }
    for default in class.defaults {
        let value = config.get(default.field);
        if value.is_none() || (default.when_null && is_absent(value)) {
            config.insert(default.field.into(), parse(default.json));
        }
    }
    // Readers may use either spelling.
    for &(alias, field) in class.aliases {
        if let Some(v) = config.get(field).cloned() {
            config.insert(alias.into(), v);
        }
    }
    // Blip2Config.__post_init__: the Q-Former reads the vision tower's width.
    if class.model_type == "blip-2" {
        let width = config.get("vision_config").and_then(|v| v.get("hidden_size")).cloned();
        if let (Some(width), Some(Value::Object(q))) = (width, config.get_mut("qformer_config")) {
            q.insert("encoder_hidden_size".into(), width);
        }
    }
}

/// The class-specific spellings older files use, handled as the classes' `__post_init__` do.
fn legacy(config: &mut Map<String, Value>, class: &ConfigClass) {
    let (vision_type, text_type) = match class.model_type {
        "qwen2_vl" => ("qwen2_vl_vision", "qwen2_vl_text"),
        "qwen2_5_vl" => ("qwen2_5_vl_vision", "qwen2_5_vl_text"),
        // InternVLVisionConfig keeps sizes as (height, width).
        "internvl_vision" => {
            for key in ["image_size", "patch_size"] {
                if let Some(side @ Value::Number(_)) = config.get(key).cloned() {
                    config.insert(key.into(), Value::Array(vec![side.clone(), side]));
                }
            }
            return;
        }
        _ => return,
    };
    // Qwen2-VL files saved before the split keep the text model's fields at the top level.
    if is_absent(config.get("text_config")) {
        let text = classes::class(text_type).map_or(&[][..], |c| c.defaults);
        let mut fields: Map<String, Value> =
            text.iter().filter_map(|d| config.get(d.field).map(|v| (d.field.to_string(), v.clone()))).collect();
        // The text model takes the file's dtype too (either spelling).
        if let Some(dtype) = config.get("torch_dtype").or_else(|| config.get("dtype")) {
            fields.insert("dtype".into(), dtype.clone());
        }
        config.insert("text_config".into(), Value::Object(fields));
    }
    // And name their vision config by the composite's model_type.
    if let Some(Value::Object(vision)) = config.get_mut("vision_config")
        && vision.get("model_type").and_then(Value::as_str) == Some(class.model_type)
    {
        vision.insert("model_type".into(), Value::String(vision_type.into()));
    }
}

fn is_absent(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_null)
}

/// A table entry's JSON (the tables are tested to parse).
fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or(Value::Null)
}
