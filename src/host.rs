//! Host tensors by name: what plans take in and give back ([`crate::connectors::ConnectorPlan`],
//! [`crate::models::Pretrained`]), under the upstream input and output names.

use std::collections::BTreeMap;

use crate::dtype::HostVec;
use crate::error::{Error, Result};

/// A host tensor: a row-major shape and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Its values.
    pub data: HostVec,
}

impl HostTensor {
    /// A tensor of `shape` holding `data` (whose length must fit).
    pub fn new(shape: &[usize], data: HostVec) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape("tensor", format!("elements of {shape:?}"), n, data.len()));
        }
        Ok(Self { shape: shape.to_vec(), data })
    }
}

/// Tensors by name.
pub type Tensors = BTreeMap<String, HostTensor>;

/// Reference outputs by name: (shape, f64 values).
pub type ReferenceTensors = BTreeMap<String, (Vec<usize>, Vec<f64>)>;
