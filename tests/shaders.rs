//! No GPU needed: every kernel of the registry, with activations stored as f32 and as f16,
//! parses and validates with naga, translates to SPIR-V, MSL, HLSL and GLSL (f16: not GLSL),
//! and its entry point matches the Rust `KernelSpec` (workgroup size, binding access, `Params`
//! size), so WGSL and Rust cannot drift apart silently.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use vlbridge::DType;
use vlbridge::kernels::{FAMILIES, KernelFamily, KernelSpec};
use vlbridge::pipeline::Access;

fn validate(source: &str, what: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module =
        naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(source)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(source)));
    (module, info)
}

fn specs() -> impl Iterator<Item = &'static KernelSpec> {
    FAMILIES.iter().flat_map(|f| f.specs.iter().copied())
}

#[test]
fn common_files_are_valid_wgsl_after_the_ones_they_build_on() {
    for (path, source, needs) in vlbridge::kernels::wgsl::COMMON {
        validate(&vlbridge::kernels::wgsl::assemble(needs, source), path);
    }
}

#[test]
fn every_kernel_has_one_name_and_unique_labels() {
    let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), FAMILIES.len(), "two families share a name");
    let mut labels: Vec<&str> = specs().map(|s| s.name).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), specs().count(), "two specs share a label");
}

#[test]
fn forceable_variants_are_alternatives_named_once() {
    let alternatives = |name: &str| KernelFamily::find(name).unwrap().alternatives();
    assert_eq!(alternatives("linear"), ["subgroup", "tiled", "tiled32", "splitk", "coop", "portable"]);
    assert_eq!(alternatives("attention_flash"), ["subgroup", "split", "portable"]);
    // One subgroup spec among portable passes: each variant once.
    assert_eq!(alternatives("tome"), ["portable", "subgroup"]);
    // Three passes, not three choices; a single spec is no choice.
    assert!(alternatives("attention_naive").is_empty());
    assert!(alternatives("layer_norm").is_empty());
}
#[test]
fn every_kernel_validates_and_translates_to_every_backend() {
    for (spec, storage) in specs().flat_map(|s| [(s, DType::F32), (s, DType::F16)]) {
        let source = spec.source_for(storage);
        let (module, info) = validate(&source, spec.file);
        // Overrides keep their defaults; backends other than SPIR-V need them resolved.
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((naga::ShaderStage::Compute, spec.entry)),
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{}: overrides: {e}", spec.file));

        let spv_options = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
        naga::back::spv::write_vec(&module, &info, &spv_options, None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", spec.file));

        // Cooperative matrices are simdgroup matrices in MSL 3.1; naga writes no HLSL or GLSL
        // for them (wgpu offers the feature on Vulkan and Metal only).
        let coop = spec.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        let msl_options =
            naga::back::msl::Options { lang_version: if coop { (3, 1) } else { (2, 4) }, ..Default::default() };
        let msl_pipeline = naga::back::msl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, spec.entry.to_string())),
            ..Default::default()
        };
        naga::back::msl::write_string(&module, &info, &msl_options, &msl_pipeline)
            .unwrap_or_else(|e| panic!("{}: MSL: {e}", spec.file));
        if coop {
            continue;
        }

        // f16 storage needs HLSL shader model 6.2; GL (and so GLSL) never offers SHADER_F16 in
        // wgpu, so f16 kernels are not translated to it.
        let f16 = spec.features_for(storage).contains(wgpu::Features::SHADER_F16);
        let shader_model = if f16 { naga::back::hlsl::ShaderModel::V6_2 } else { naga::back::hlsl::ShaderModel::V6_0 };
        let hlsl_options = naga::back::hlsl::Options { shader_model, ..Default::default() };
        let hlsl_pipeline = naga::back::hlsl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, spec.entry.to_string())),
        };
        let mut hlsl = String::new();
        naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{}: HLSL: {e}", spec.file));

        if f16 {
            continue;
        }
        let glsl_options =
            naga::back::glsl::Options { version: naga::back::glsl::Version::Desktop(430), ..Default::default() };
        let glsl_pipeline = naga::back::glsl::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: spec.entry.to_string(),
            multiview: None,
        };
        let mut glsl = String::new();
        naga::back::glsl::Writer::new(&mut glsl, &module, &info, &glsl_options, &glsl_pipeline, Default::default())
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{}: GLSL: {e}", spec.file));
    }
}

#[test]
fn entry_points_match_their_specs() {
    for spec in specs() {
        for storage in [DType::F32, DType::F16] {
            let (module, _) = validate(&spec.source_for(storage), spec.file);
            check_reflection(spec, &module);
        }
    }
}

fn check_reflection(spec: &KernelSpec, module: &naga::Module) {
    let entry = module
        .entry_points
        .iter()
        .find(|e| e.name == spec.entry)
        .unwrap_or_else(|| panic!("{}: no entry point `{}`", spec.file, spec.entry));
    assert_eq!(entry.stage, naga::ShaderStage::Compute, "{}", spec.file);
    assert_eq!(entry.workgroup_size, spec.workgroup_size, "{}: @workgroup_size", spec.file);

    let mut bindings: Vec<(u32, Access, u32)> = module
        .global_variables
        .iter()
        .filter_map(|(_, var)| {
            let binding = var.binding.as_ref()?;
            assert_eq!(binding.group, 0, "{}: `{:?}` must be in group 0", spec.file, var.name);
            let access = match var.space {
                naga::AddressSpace::Uniform => Access::Uniform,
                naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                    Access::ReadWrite
                }
                naga::AddressSpace::Storage { .. } => Access::Read,
                other => panic!("{}: unexpected address space {other:?}", spec.file),
            };
            let size = module.types[var.ty].inner.size(module.to_ctx());
            Some((binding.binding, access, size))
        })
        .collect();
    bindings.sort_by_key(|b| b.0);
    let indices: Vec<u32> = bindings.iter().map(|b| b.0).collect();
    assert_eq!(indices, (0..spec.bindings.len() as u32).collect::<Vec<_>>(), "{}: binding indices", spec.file);
    let accesses: Vec<Access> = bindings.iter().map(|b| b.1).collect();
    assert_eq!(accesses, spec.bindings, "{}: binding access", spec.file);
    for &(binding, access, size) in &bindings {
        if access == Access::Uniform {
            assert_eq!(u64::from(size), spec.params_size, "{}: Params size (binding {binding})", spec.file);
        }
    }
}

#[test]
fn reflection_catches_a_drifted_spec() {
    // The check above must fail when the Rust side disagrees with the WGSL.
    let real = &vlbridge::kernels::gemm::SUBGROUP_F32;
    let drifted = KernelSpec { params_size: real.params_size + 4, ..*real };
    let (module, _) = validate(&real.source_for(DType::F32), real.file);
    let caught = std::panic::catch_unwind(|| check_reflection(&drifted, &module));
    assert!(caught.is_err(), "a wrong Params size went unnoticed");
}
