//! Inputs by upstream name: a processor's saved outputs read from safetensors, and the typed
//! lookups the families make of them.

use std::fmt;
use std::path::Path;

use crate::dtype::HostVec;
use crate::error::{Error, Result};
use crate::host::{HostTensor, Tensors};
use crate::weights::Weights;

/// Every tensor of a safetensors file (a processor's output saved with `save_file`): floats
/// as f32, integers (image sizes, masks, grids) as u32.
pub fn read_tensors(path: impl AsRef<Path>) -> Result<Tensors> {
    tensors_of(&Weights::open(path)?)
}

/// [`read_tensors`] of a safetensors file already in memory (the web; a fetched file).
pub fn tensors_of(file: &Weights) -> Result<Tensors> {
    file.names()?
        .into_iter()
        .map(|name| {
            let shape = file.shape(&name)?;
            let data = match file.dtype(&name) {
                Ok(_) => HostVec::F32(file.f32(&name, None)?),
                Err(_) => HostVec::U32(
                    file.i64(&name)?
                        .into_iter()
                        .map(|v| {
                            u32::try_from(v).map_err(|_| Error::Input {
                                name: name.clone(),
                                problem: format!("value {v} out of range"),
                            })
                        })
                        .collect::<Result<_>>()?,
                ),
            };
            Ok((name, HostTensor::new(&shape, data)?))
        })
        .collect()
}

/// Input `name` of `inputs`, as f32 data of rank `rank`, or an [`Error::Input`].
pub(crate) fn input_f32<'a>(inputs: &'a Tensors, name: &str, rank: usize) -> Result<(&'a [usize], &'a [f32])> {
    let t = inputs
        .get(name)
        .ok_or_else(|| Error::Input { name: name.into(), problem: "missing from the inputs".into() })?;
    let Some(data) = t.data.as_f32() else {
        return Err(Error::Input { name: name.into(), problem: "expected float data".into() });
    };
    if t.shape.len() != rank {
        return Err(Error::Input { name: name.into(), problem: format!("shape {:?}, expected rank {rank}", t.shape) });
    }
    Ok((&t.shape, data))
}

/// Input `name` as integers (an image size), or an [`Error::Input`].
pub(crate) fn input_ints(inputs: &Tensors, name: &str, len: usize) -> Result<Vec<usize>> {
    let t = inputs
        .get(name)
        .ok_or_else(|| Error::Input { name: name.into(), problem: "missing from the inputs".into() })?;
    let values: Vec<usize> = match &t.data {
        HostVec::U32(v) => v.iter().map(|&x| x as usize).collect(),
        HostVec::F32(v) if v.iter().all(|x| x.fract() == 0.0 && *x >= 0.0) => v.iter().map(|&x| x as usize).collect(),
        _ => return Err(Error::Input { name: name.into(), problem: "expected non-negative integers".into() }),
    };
    if values.len() != len {
        return Err(Error::Input { name: name.into(), problem: format!("{} values, expected {len}", values.len()) });
    }
    Ok(values)
}

/// An [`Error::Input`] for an input whose dimension `what` does not fit.
pub(crate) fn input_shape_error(name: &str, shape: &[usize], expected: impl fmt::Display) -> Error {
    Error::Input { name: name.into(), problem: format!("shape {shape:?}, expected {expected}") }
}
