//! transformers 5.24's config defaults as vlbridge tables them (`models::config_classes`),
//! held to what the Python classes give (`tests/data/configs/transformers_defaults.json`, made
//! once by `scripts/config_defaults.py`): every default, alias and sub-config spec; what a
//! composite builds for absent sub-configs; the legacy spellings; and every published
//! config.json under `tests/data/configs/` resolved field by field as `AutoConfig` resolves it.

use std::path::Path;

use serde_json::Value;
use vlbridge::Error;
use vlbridge::models::{ConfigClass, ConfigJson, config_classes};

fn python() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs/transformers_defaults.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// JSON equality with numbers compared as f64 (Python writes `1e-05`, Rust may read `0.00001`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("table entry {json}: {e}"))
}

fn tabled(model_type: &str) -> &'static ConfigClass {
    config_classes().find(|c| c.model_type == model_type).unwrap_or_else(|| panic!("{model_type} is not tabled"))
}

#[test]
fn every_default_alias_and_sub_config_is_transformers_own() {
    let python = python();
    assert_eq!(python["transformers"], "5.24.0");
    let mut checked = 0;
    for class in config_classes() {
        let py = &python["classes"][class.model_type];
        assert_eq!(py["class"], class.class, "{}: the Python class", class.model_type);
        for d in class.defaults {
            let want = &py["defaults"][d.field];
            assert!(!want.is_null() || d.json == "null", "{}.{}: no such field in Python", class.class, d.field);
            assert!(same(&parse(d.json), want), "{}.{}: table {} but Python {want}", class.class, d.field, d.json);
            checked += 1;
        }
        let aliases: serde_json::Map<String, Value> =
            class.aliases.iter().map(|&(a, f)| (a.to_string(), Value::String(f.into()))).collect();
        assert_eq!(Value::Object(aliases), py["attribute_map"], "{}: attribute_map", class.class);
        let py_subs = py["sub_configs"].as_object().unwrap();
        assert_eq!(class.sub_configs.len(), py_subs.len(), "{}: sub-configs", class.class);
        for spec in class.sub_configs {
            let want = &py_subs[spec.key];
            assert_eq!(want["model_type"], spec.model_type, "{}.{}", class.class, spec.key);
            assert_eq!(want["fixed_class"], spec.fixed_class, "{}.{}: fixed class", class.class, spec.key);
            let kwargs: serde_json::Map<String, Value> =
                spec.init_kwargs.iter().map(|&(k, v)| (k.to_string(), parse(v))).collect();
            assert!(same(&Value::Object(kwargs), &want["init_kwargs"]), "{}.{}: init_kwargs", class.class, spec.key);
            // Every default sub-config type is tabled too, so resolution reaches its fields.
            tabled(spec.model_type);
        }
    }
    assert!(checked > 150, "{checked} defaults checked");
}

/// Every tabled field of `resolved` (and of its sub-configs, by their resolved model_type)
/// equals `want`'s.
fn assert_resolved_like(name: &str, resolved: &Value, want: &Value) {
    let model_type = resolved["model_type"].as_str().unwrap_or_else(|| panic!("{name}: no model_type"));
    assert_eq!(want["model_type"].as_str(), Some(model_type), "{name}: model_type");
    let class = tabled(model_type);
    for d in class.defaults {
        assert!(
            same(&resolved[d.field], &want[d.field]),
            "{name}.{}: {} vs Python {}",
            d.field,
            resolved[d.field],
            want[d.field]
        );
    }
    // An alias reads its field: checked where that field is tabled.
    for &(alias, field) in class.aliases.iter().filter(|(_, f)| class.defaults.iter().any(|d| d.field == *f)) {
        assert!(same(&resolved[alias], &want[field]), "{name}.{alias} (alias of {field})");
    }
    if !want["dtype"].is_null() {
        assert!(same(&resolved["dtype"], &want["dtype"]), "{name}.dtype: {} vs {}", resolved["dtype"], want["dtype"]);
    }
    for spec in class.sub_configs {
        assert_resolved_like(&format!("{name}.{}", spec.key), &resolved[spec.key], &want[spec.key]);
    }
}

#[test]
fn absent_sub_configs_resolve_as_the_composites_build_them() {
    let python = python();
    for class in config_classes().filter(|c| !c.sub_configs.is_empty()) {
        let config = ConfigJson::from_value("test", serde_json::json!({ "model_type": class.model_type }));
        assert_resolved_like(class.model_type, config.value(), &python["classes"][class.model_type]["defaults"]);
    }
}

#[test]
fn legacy_spellings_resolve_as_transformers_reads_them() {
    let python = python();
    let legacy = python["legacy"].as_object().unwrap();
    assert!(legacy.len() >= 8);
    for (name, case) in legacy {
        let config = ConfigJson::from_value(name, case["config"].clone());
        assert_resolved_like(name, config.value(), &case["resolved"]);
    }
    // The old Qwen2-VL layout: the text width came from the top level.
    let old = ConfigJson::from_value("old", legacy["qwen2_vl_top_level_text"]["config"].clone());
    assert_eq!(old.value()["text_config"]["hidden_size"], 1536);
    assert_eq!(old.value()["vision_config"]["model_type"], "qwen2_vl_vision");
}

#[test]
fn every_published_config_resolves_as_transformers_does() {
    let python = python();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.join("config.json").is_file() {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(path.join("SOURCE").is_file(), "{name}: says where it came from");
        let config = ConfigJson::read(&path).unwrap();
        let want = &python["published"][&name];
        assert!(want.is_object(), "{name}: run scripts/config_defaults.py");
        assert_resolved_like(&name, config.value(), want);
        seen += 1;
    }
    assert_eq!(seen, python["published"].as_object().unwrap().len());
}

#[test]
fn a_missing_field_without_a_default_is_a_typed_error_naming_it() {
    // A language model the tables do not know keeps only what the file says.
    let config = ConfigJson::from_value(
        "config.json",
        serde_json::json!({ "model_type": "llava", "text_config": { "model_type": "someone_elses_lm" } }),
    );
    let dir = tempdir();
    std::fs::write(dir.join("config.json"), serde_json::to_string(config.value()).unwrap()).unwrap();
    match vlbridge::models::inspect(&dir) {
        Err(Error::Config { field, problem }) => {
            assert_eq!(field, "text_config.hidden_size");
            assert!(problem.contains("missing"), "{problem}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vlbridge-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
