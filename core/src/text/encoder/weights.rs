//! The encoder's weights: read from a sentence-transformers `safetensors` file into the Burn
//! module, and copied out of it for the host kernel ([`crate::kernels::bert`]).

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Bert, BertConfig, BertLayer};
use crate::error::{Error, Result};
use crate::kernels::bert as host;

async fn values<const D: usize>(p: &Param<Tensor<D>>) -> Result<Vec<f32>> {
    crate::tensor_io::read_floats(p.val()).await
}

async fn host_dense(linear: &Linear) -> Result<host::Dense> {
    let [inputs, outputs] = linear.weight.dims();
    let bias = match &linear.bias {
        Some(b) => values(b).await?,
        None => vec![0.0; outputs],
    };
    Ok(host::Dense {
        weight: values(&linear.weight).await?,
        bias,
        inputs,
        outputs,
    })
}

async fn host_norm(norm: &LayerNorm) -> Result<host::Norm> {
    let gamma = values(&norm.gamma).await?;
    let beta = match &norm.beta {
        Some(b) => values(b).await?,
        None => vec![0.0; gamma.len()],
    };
    Ok(host::Norm { gamma, beta })
}

impl Bert {
    /// A copy of the weights for the host kernel ([`crate::kernels::bert`]).
    pub(super) async fn to_host(&self) -> Result<host::HostBert> {
        let h = self.embedding_norm.gamma.dims()[0];
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let (q, k, v) = (
                host_dense(&l.query).await?,
                host_dense(&l.key).await?,
                host_dense(&l.value).await?,
            );
            // Fused `[hidden, 3·hidden]`: row i is q's row i, then k's, then v's.
            let mut weight = Vec::with_capacity(3 * h * h);
            for i in 0..h {
                for d in [&q, &k, &v] {
                    weight.extend_from_slice(&d.weight[i * h..(i + 1) * h]);
                }
            }
            let bias = [q.bias, k.bias, v.bias].concat();
            layers.push(host::Layer {
                qkv: host::Dense {
                    weight,
                    bias,
                    inputs: h,
                    outputs: 3 * h,
                },
                attention_out: host_dense(&l.attention_out).await?,
                attention_norm: host_norm(&l.attention_norm).await?,
                intermediate: host_dense(&l.intermediate).await?,
                output: host_dense(&l.output).await?,
                output_norm: host_norm(&l.output_norm).await?,
            });
        }
        let token_type = values(&self.token_type_embeddings.weight).await?;
        Ok(host::HostBert {
            hidden: h,
            heads: self.heads,
            eps: self.eps as f32,
            word: values(&self.word_embeddings.weight).await?,
            position: values(&self.position_embeddings.weight).await?,
            token_type: token_type[..h].to_vec(),
            embedding_norm: host_norm(&self.embedding_norm).await?,
            layers,
        })
    }
}

/// Reads named f32 tensors out of a safetensors file.
struct Weights<'a> {
    st: safetensors::SafeTensors<'a>,
    device: Device,
}

impl Weights<'_> {
    fn raw(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| Error::invalid("encoder weights", format!("no tensor {name}")))?;
        if t.shape() != shape {
            return Err(Error::invalid(
                "encoder weights",
                format!("{name} has shape {:?}, expected {shape:?}", t.shape()),
            ));
        }
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(Error::invalid(
                "encoder weights",
                format!("{name} is {:?}, expected F32", t.dtype()),
            ));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn vector(&self, name: &str, n: usize) -> Result<Param<Tensor<1>>> {
        let v = self.raw(name, &[n])?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(v, [n]),
            &self.device,
        )))
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Param<Tensor<2>>> {
        let v = self.raw(name, &[rows, cols])?;
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(v, [rows, cols]),
            &self.device,
        )))
    }

    /// A PyTorch `nn.Linear` (`[out, in]` weight), stored the Burn way (`[in, out]`).
    fn linear(&self, prefix: &str, inputs: usize, outputs: usize) -> Result<Linear> {
        let w = self.raw(&format!("{prefix}.weight"), &[outputs, inputs])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..outputs {
            for i in 0..inputs {
                t[i * outputs + o] = w[o * inputs + i];
            }
        }
        let mut linear = LinearConfig::new(inputs, outputs).init(&self.device);
        linear.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(t, [inputs, outputs]),
            &self.device,
        ));
        linear.bias = Some(self.vector(&format!("{prefix}.bias"), outputs)?);
        Ok(linear)
    }

    fn layer_norm(&self, prefix: &str, n: usize, eps: f64) -> Result<LayerNorm> {
        let mut norm = LayerNormConfig::new(n).with_epsilon(eps).init(&self.device);
        norm.gamma = self.vector(&format!("{prefix}.weight"), n)?;
        norm.beta = Some(self.vector(&format!("{prefix}.bias"), n)?);
        Ok(norm)
    }

    fn embedding(&self, name: &str, rows: usize, cols: usize) -> Result<Embedding> {
        let mut e = EmbeddingConfig::new(rows, cols).init(&self.device);
        e.weight = self.matrix(name, rows, cols)?;
        Ok(e)
    }
}

impl Bert {
    /// Loads BERT weights named as in a `BertModel` export without the `bert.` prefix
    /// (`embeddings.word_embeddings.weight`, `encoder.layer.N.attention.self.query.weight`, …).
    pub fn from_safetensors(config: &BertConfig, bytes: &[u8], device: &Device) -> Result<Self> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| Error::invalid("encoder weights", e.to_string()))?;
        let w = Weights {
            st,
            device: device.clone(),
        };
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{n}");
            layers.push(BertLayer {
                query: w.linear(&format!("{p}.attention.self.query"), h, h)?,
                key: w.linear(&format!("{p}.attention.self.key"), h, h)?,
                value: w.linear(&format!("{p}.attention.self.value"), h, h)?,
                attention_out: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                intermediate: w.linear(
                    &format!("{p}.intermediate.dense"),
                    h,
                    config.intermediate_size,
                )?,
                output: w.linear(&format!("{p}.output.dense"), config.intermediate_size, h)?,
                output_norm: w.layer_norm(&format!("{p}.output.LayerNorm"), h, eps)?,
                eps,
            });
        }
        Ok(Bert {
            word_embeddings: w.embedding(
                "embeddings.word_embeddings.weight",
                config.vocab_size,
                h,
            )?,
            position_embeddings: w.embedding(
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings,
                h,
            )?,
            token_type_embeddings: w.embedding(
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size,
                h,
            )?,
            embedding_norm: w.layer_norm("embeddings.LayerNorm", h, eps)?,
            layers,
            heads: config.num_attention_heads,
            eps,
        })
    }
}
