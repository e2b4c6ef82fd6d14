//! [`KernelFamily`]: what each kernel unit declares of itself for the harnesses.

use std::fmt;

use super::{BenchCase, Case, CaseRng, CaseTarget, FAMILIES, KernelSpec};
use crate::error::{Error, Result};
use crate::gpu::Caps;

/// What a kernel family offers the harnesses, besides its ops: everything the shader test, the
/// fuzzer, the bench, the tune and the precision tests need to know of it, so they loop over
/// the registry and name no kernel.
pub struct KernelFamily {
    /// The kernel's name (as [`super::Kernel::name`]).
    pub name: &'static str,
    /// Every shader entry point it ships.
    pub specs: &'static [&'static KernelSpec],
    /// Whether its specs are alternatives a device can be forced to run (`kernel=variant`);
    /// not where they are the passes of one op (the naive and key-split attentions).
    pub forceable: bool,
    /// One random differential case (`vlbridge fuzz`); `None` for utility kernels.
    pub fuzz: Option<fn(&mut CaseRng, &CaseTarget) -> Result<Case>>,
    /// Its real-size rows of `vlbridge bench`.
    pub bench: fn() -> Vec<BenchCase>,
    /// The problems `vlbridge tune` times its variants on, one per problem class
    /// ([`super::Kernel::tune_class`]); none for a kernel without a tuned choice.
    pub tune: fn() -> Vec<BenchCase>,
    /// Its cases with f16 activations (`tests/precision.rs`).
    pub precision: fn() -> Result<Vec<Case>>,
}

impl KernelFamily {
    /// The defaults a family's declaration starts from (`..KernelFamily::BASE`): forceable,
    /// no cases, no bench rows, no tune.
    pub const BASE: KernelFamily = KernelFamily {
        name: "",
        specs: &[],
        forceable: true,
        fuzz: None,
        bench: Self::no_bench,
        tune: Self::no_bench,
        precision: Self::no_cases,
    };
}

impl fmt::Debug for KernelFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelFamily").field("name", &self.name).finish()
    }
}

impl KernelFamily {
    /// The family named `name`, or an error listing the known names.
    pub fn find(name: &str) -> Result<&'static KernelFamily> {
        FAMILIES.iter().copied().find(|f| f.name == name).ok_or_else(|| Error::Config {
            field: "kernel".into(),
            problem: format!(
                "unknown kernel `{name}` (known: {})",
                FAMILIES.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// The variants a device can be forced to run (`kernel=variant`), in registry order; empty
    /// for a kernel without a choice.
    pub fn alternatives(&self) -> Vec<&'static str> {
        if !self.forceable {
            return Vec::new();
        }
        let mut variants: Vec<&'static str> = Vec::new();
        for spec in self.specs {
            if !variants.contains(&spec.variant) {
                variants.push(spec.variant);
            }
        }
        if variants.len() > 1 { variants } else { Vec::new() }
    }

    /// Whether a device with `caps` can run `variant`.
    pub fn runs(&self, variant: &str, caps: &Caps) -> bool {
        self.specs.iter().any(|s| s.variant == variant && s.runs_on(caps))
    }

    /// Every family with fuzz cases.
    pub fn fuzzable() -> impl Iterator<Item = &'static KernelFamily> {
        FAMILIES.iter().copied().filter(|f| f.fuzz.is_some())
    }

    /// No cases: for utility kernels.
    pub fn no_cases() -> Result<Vec<Case>> {
        Ok(Vec::new())
    }

    /// No bench rows.
    pub fn no_bench() -> Vec<BenchCase> {
        Vec::new()
    }
}
