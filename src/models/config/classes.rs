//! transformers 5.24's config classes, as far as vlbridge reads them: each class's defaults for
//! the fields the crate uses, its `attribute_map` aliases and its sub-configs. Taken from the
//! classes' source (`configuration_*.py`); `tests/config_defaults.rs` holds every entry to what
//! the Python classes give (`scripts/config_defaults.py` stored that once).

/// One field's default, as JSON text.
#[derive(Debug, Clone, Copy)]
pub struct FieldDefault {
    /// The field.
    pub field: &'static str,
    /// Its default, as JSON.
    pub json: &'static str,
    /// Also filled when the file writes `null` (a default set in `__post_init__`).
    pub when_null: bool,
}

mod families;
mod nested;

/// A field filled when missing.
pub(super) const fn d(field: &'static str, json: &'static str) -> FieldDefault {
    FieldDefault { field, json, when_null: false }
}

/// A field filled when missing or `null` (`__post_init__` replaces `None`).
pub(super) const fn n(field: &'static str, json: &'static str) -> FieldDefault {
    FieldDefault { field, json, when_null: true }
}

/// A nested config (`text_config`, `vision_config`, `qformer_config`): `sub_configs_defaults`.
#[derive(Debug, Clone, Copy)]
pub struct SubConfig {
    /// Its key in the parent.
    pub key: &'static str,
    /// The `model_type` used when the nested dict names none.
    pub model_type: &'static str,
    /// The class is fixed (not chosen by the nested dict's own `model_type`).
    pub fixed_class: bool,
    /// What an absent sub-config is built from (`init_kwargs`), as (field, JSON).
    pub init_kwargs: &'static [(&'static str, &'static str)],
}

/// One config class.
#[derive(Debug, Clone, Copy)]
pub struct ConfigClass {
    /// Its `model_type`.
    pub model_type: &'static str,
    /// The Python class.
    pub class: &'static str,
    /// Defaults of the fields vlbridge reads.
    pub defaults: &'static [FieldDefault],
    /// `attribute_map`: (alias, field).
    pub aliases: &'static [(&'static str, &'static str)],
    /// Nested configs.
    pub sub_configs: &'static [SubConfig],
}

/// Every config class vlbridge tables: the twelve families, then the towers and language
/// models they nest.
pub fn all() -> impl Iterator<Item = &'static ConfigClass> {
    families::FAMILIES.iter().chain(nested::NESTED)
}

/// The class of `model_type`.
pub fn class(model_type: &str) -> Option<&'static ConfigClass> {
    all().find(|c| c.model_type == model_type)
}
