//! PreAct ResNet-18: attacking a frozen copy never changes the model (its BatchNorm layers
//! use running statistics), while a training step does update them.

mod common;

use burn::module::Module;
use common::*;
use rampart_core::attack::{Attack, Norm, PgdConfig};
use rampart_core::model::{ModelConfig, ResNetConfig};
use rampart_core::train::{Method, TrainConfig, optimizer, train_step};

fn tiny_resnet() -> ModelConfig {
    ModelConfig::PreactResnet18(ResNetConfig {
        in_channels: 1,
        height: 8,
        width: 8,
        base_width: 2,
        normalization: rampart_core::model::Normalization::identity(1),
        ..ResNetConfig::cifar(3)
    })
}

#[test]
fn attacks_leave_batch_norm_alone_and_training_updates_it() {
    let device = cpu().autodiff();
    let model = tiny_resnet().init_seeded(&device, 1).unwrap();
    let x = images(6, 2, &device);
    let y = labels(&[0, 1, 2, 0, 1, 2], &device);
    let before = to_vec(model.valid().forward(x.clone().without_autodiff()));
    let attack = PgdConfig::new(Norm::Linf, 5).init().unwrap();
    let out = attack
        .run(&model, x.clone(), y.clone(), &[0.3; 6], 0)
        .unwrap();
    assert_eq!(out.adversarial.dims(), [6, 1, 8, 8]);
    let after = to_vec(model.valid().forward(x.clone().without_autodiff()));
    assert_eq!(before, after, "attacking changed the model");

    let method = Method::Standard;
    let mut optim = optimizer(&TrainConfig::new(method.clone()));
    let (trained, loss, _) =
        train_step(&method, model, &mut optim, x.clone(), y, 0.0, 1e-2, 0).unwrap();
    assert!(loss.is_finite());
    let moved = to_vec(trained.valid().forward(x.without_autodiff()));
    assert_ne!(before, moved, "a training step changed nothing");
}
