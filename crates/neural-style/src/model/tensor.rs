//! Reading burn tensors back into plain `f32` vectors, the form the kernels, the optimisers
//! and the checkpoints work on.

use burn::prelude::*;

use crate::error::{Error, Result};

/// The values of a tensor read back from its device as `f32`; `what` names it in the error.
pub(crate) fn values<const D: usize>(t: Tensor<D>, what: &'static str) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Error::TensorData {
            what,
            message: format!("{e:?}"),
        })
}
