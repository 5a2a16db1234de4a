//! Flags that several verbs share: the network's shape and the attack settings.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use rampart_core::attack::{AttackLoss, AttackMethod, AttackSpec};
use rampart_core::model::{CnnConfig, ModelConfig, ResNetConfig};

/// The network: its style and widths.
#[derive(Args)]
pub struct ArchArgs {
    /// madry: conv5×5, pool, conv5×5, pool, fc, fc (Madry et al.; widths 32,64 and 1024);
    /// strided: conv4×4/2, conv4×4/2, fc, fc (Wong et al.'s fast-AT net; 16,32 and 100).
    #[arg(long, value_enum, default_value_t = ArchArg::Madry)]
    arch: ArchArg,
    /// Convolution widths, e.g. 32,64 (default: the architecture's).
    #[arg(long, value_delimiter = ',')]
    conv: Option<Vec<usize>>,
    /// Width of the hidden fully connected layer (default: the architecture's).
    #[arg(long)]
    hidden: Option<usize>,
    /// Channels of PreAct ResNet-18's first stage (64 in the standard network).
    #[arg(long, default_value_t = 64)]
    resnet_width: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArchArg {
    Madry,
    Strided,
    /// PreAct ResNet-18, CIFAR layout (per-channel normalisation with CIFAR-10's statistics
    /// for colour images).
    PreactResnet18,
}

impl ArchArgs {
    pub fn config(&self, [c, h, w]: [usize; 3], classes: usize) -> Result<ModelConfig> {
        let base = match self.arch {
            ArchArg::Madry => CnnConfig::madry(c, h, w, classes),
            ArchArg::Strided => CnnConfig::strided(c, h, w, classes),
            ArchArg::PreactResnet18 => {
                if self.conv.is_some() || self.hidden.is_some() {
                    bail!(
                        "--conv and --hidden size the CNNs; PreAct ResNet-18 takes --resnet-width"
                    );
                }
                let cifar = ResNetConfig::cifar(classes);
                let config = ModelConfig::PreactResnet18(ResNetConfig {
                    in_channels: c,
                    height: h,
                    width: w,
                    base_width: self.resnet_width,
                    normalization: if c == 3 {
                        cifar.normalization.clone()
                    } else {
                        rampart_core::model::Normalization::identity(c)
                    },
                    ..cifar
                });
                config.validate()?;
                return Ok(config);
            }
        };
        let conv = match self.conv.as_deref() {
            None => base.conv_channels,
            Some(&[c1, c2]) => [c1, c2],
            Some(_) => bail!("--conv takes two widths, e.g. 32,64"),
        };
        let hidden = self.hidden.unwrap_or(base.hidden);
        let config = ModelConfig::Cnn(base.with_widths(conv, hidden));
        config.validate()?;
        Ok(config)
    }
}

/// Attack settings shared by `eval` and `attack`.
#[derive(Args)]
pub struct AttackOpts {
    /// Attacks to run (comma-separated): fgsm, fgsm-l2, pgd, pgd-l2, apgd-ce, apgd-t
    /// (targeted DLR towards up to 9 other classes), square (score-based black box, --steps
    /// queries), mi-fgsm.
    #[arg(long, value_delimiter = ',', default_value = "pgd", value_parser = parse::<AttackMethod>)]
    pub attack: Vec<AttackMethod>,
    /// Iterations of PGD (queries of Square).
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// Absolute PGD step size (default 2.5·ε/steps).
    #[arg(long)]
    pub step_size: Option<f32>,
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// Loss of FGSM and PGD: ce or cw.
    #[arg(long, default_value = "ce", value_parser = parse::<AttackLoss>)]
    pub loss: AttackLoss,
    /// Start PGD at the clean input instead of a random point of the ball.
    #[arg(long)]
    pub no_random_start: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Parses a flag with the core type's own parser, so the CLI accepts exactly what the core
/// (and the browser) accept.
fn parse<T: std::str::FromStr<Err = rampart_core::Error>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: rampart_core::Error| e.to_string())
}

impl AttackOpts {
    /// One validated spec per `--attack`.
    pub fn specs(&self, targeted: bool) -> Result<Vec<AttackSpec>> {
        self.attack
            .iter()
            .map(|&method| {
                let spec = AttackSpec {
                    method,
                    steps: self.steps,
                    step_size: self.step_size,
                    restarts: self.restarts,
                    loss: self.loss,
                    random_start: !self.no_random_start,
                    targeted,
                };
                spec.validate()?;
                Ok(spec)
            })
            .collect()
    }
}
