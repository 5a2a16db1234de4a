//! Reading tensors back to the host. Every read is asynchronous, because WebGPU forbids
//! synchronous read-backs; native callers block on the future.

use burn::tensor::{Bool, Int, Tensor};

use crate::error::{Error, Result};

/// Every value of an integer tensor.
pub async fn read_ints(t: Tensor<1, Int>) -> Result<Vec<i64>> {
    t.into_data_async()
        .await
        .map_err(|e| Error::invalid("tensor read", format!("{e:?}")))?
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| Error::invalid("tensor read", format!("{e:?}")))
}

/// Every value of a float tensor, row-major, read asynchronously.
pub async fn read_floats<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(|e| Error::invalid("tensor read", format!("{e:?}")))?
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::invalid("tensor read", format!("{e:?}")))
}

/// Every value of a boolean tensor.
pub async fn read_bools(t: Tensor<1, Bool>) -> Result<Vec<bool>> {
    Ok(read_ints(t.int())
        .await?
        .into_iter()
        .map(|v| v != 0)
        .collect())
}
