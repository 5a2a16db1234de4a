//! Seed ensembles: N heads trained from their own seeds, one after the other, each with its own
//! checkpoint, and merged into one MLP whose logits are their mean.

use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::{Mlp, MlpConfig, TextCheckpointOptions, TextEpoch, TextTrainConfig, TextTrained};
use crate::error::{Error, Result};

impl Mlp {
    /// The logit-averaging ensemble of `members` (MLPs of one shape) as a single MLP: the
    /// members' first layers side by side, deeper hidden layers block-diagonal, the output
    /// layers stacked and divided by their number, output biases averaged. Its logits are the
    /// mean of the members' logits (in evaluation, where dropout is off), so a bundle, the
    /// browser and every attack take it as they take one model.
    pub fn ensemble(members: &[Mlp]) -> Result<Mlp> {
        let first = members
            .first()
            .ok_or_else(|| Error::invalid("ensemble", "needs at least one model"))?;
        let shape = |m: &Mlp| {
            let input = m.layers.first().unwrap_or(&m.out).weight.dims()[0];
            (input, m.out.weight.dims(), m.hidden())
        };
        if members.iter().any(|m| shape(m) != shape(first)) {
            return Err(Error::invalid("ensemble", "models differ in shape"));
        }
        let n = members.len();
        let device = first.out.weight.device();
        let weights = |f: &dyn Fn(&Mlp) -> Tensor<2>| members.iter().map(f).collect::<Vec<_>>();
        let biases = |f: &dyn Fn(&Mlp) -> Tensor<1>| members.iter().map(f).collect::<Vec<_>>();
        let bias_of = |l: &Linear, width: usize| match &l.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([width], &device),
        };
        let leaf2 = |t: Tensor<2>| burn::module::Param::from_tensor(t.detach());
        let leaf1 = |t: Tensor<1>| Some(burn::module::Param::from_tensor(t.detach()));
        let mut layers = Vec::with_capacity(first.layers.len());
        for (j, layer) in first.layers.iter().enumerate() {
            let [rows, cols] = layer.weight.dims();
            let ws = weights(&|m| m.layers[j].weight.val());
            let weight = if j == 0 {
                Tensor::cat(ws, 1)
            } else {
                let mut w = Tensor::zeros([n * rows, n * cols], &device);
                for (i, wi) in ws.into_iter().enumerate() {
                    w = w.slice_assign([i * rows..(i + 1) * rows, i * cols..(i + 1) * cols], wi);
                }
                w
            };
            let bias = Tensor::cat(biases(&|m| bias_of(&m.layers[j], cols)), 0);
            let mut linear = LinearConfig::new(weight.dims()[0], weight.dims()[1]).init(&device);
            linear.weight = leaf2(weight);
            linear.bias = leaf1(bias);
            layers.push(linear);
        }
        let [rows, k] = first.out.weight.dims();
        let ws = weights(&|m| m.out.weight.val());
        let weight = if first.layers.is_empty() {
            Tensor::stack::<3>(ws, 0).sum_dim(0).reshape([rows, k])
        } else {
            Tensor::cat(ws, 0)
        } / n as f64;
        let bias = Tensor::stack::<2>(biases(&|m| bias_of(&m.out, k)), 0)
            .sum_dim(0)
            .reshape([k])
            / n as f64;
        let mut out = LinearConfig::new(weight.dims()[0], k).init(&device);
        out.weight = leaf2(weight);
        out.bias = leaf1(bias);
        Ok(Mlp {
            layers,
            out,
            dropout: first.dropout.clone(),
        })
    }
}

/// The checkpoint of ensemble member `member` (> 0; member 0 uses `path` itself).
pub fn member_checkpoint(path: &std::path::Path, member: usize) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".member{member}"));
    path.with_file_name(name)
}

/// Trains `config.seeds` members with [`super::train_member`] and merges them; see
/// [`super::train_mlp_resumable`].
pub(super) fn train(
    x: &[Vec<f32>],
    y: &[usize],
    num_classes: usize,
    config: &TextTrainConfig,
    device: &Device,
    checkpoint: Option<&TextCheckpointOptions>,
    on_epoch: &mut dyn FnMut(&TextEpoch),
) -> Result<TextTrained> {
    // The merged model must be storable: refuse an oversized ensemble before training it
    // (deeper layers are block-diagonal, so their weights grow with the square of `seeds`).
    MlpConfig {
        input: x.first().map_or(1, Vec::len),
        hidden: config.hidden.iter().map(|h| h * config.seeds).collect(),
        num_classes,
        dropout: config.dropout,
    }
    .validate()
    .map_err(|e| Error::invalid("seed ensemble", format!("{} members: {e}", config.seeds)))?;
    let mut members = Vec::with_capacity(config.seeds);
    let mut history = Vec::new();
    let mut resumed_at = 0;
    for i in 0..config.seeds {
        let member_config = TextTrainConfig {
            // Far apart, so that no member repeats another's draws in any epoch.
            seed: config
                .seed
                .wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            seeds: 1,
            ..config.clone()
        };
        let member_ck = checkpoint.map(|c| TextCheckpointOptions {
            path: if i == 0 {
                c.path.clone()
            } else {
                member_checkpoint(&c.path, i)
            },
            ..c.clone()
        });
        let trained = super::train_member(
            x,
            y,
            num_classes,
            &member_config,
            device,
            member_ck.as_ref(),
            &mut |e: &TextEpoch| {
                on_epoch(&TextEpoch {
                    member: i,
                    ..e.clone()
                })
            },
        )?;
        // Epochs done before this process, over all members.
        resumed_at += trained.resumed_at;
        history.extend(
            trained
                .history
                .into_iter()
                .map(|e| TextEpoch { member: i, ..e }),
        );
        if !trained.completed {
            return Ok(TextTrained {
                model: trained.model,
                history,
                resumed_at,
                completed: false,
            });
        }
        members.push(trained.model);
    }
    Ok(TextTrained {
        model: Mlp::ensemble(&members)?,
        history,
        resumed_at,
        completed: true,
    })
}
