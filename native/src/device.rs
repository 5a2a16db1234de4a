//! Choosing the compute device.

use anyhow::{Result, anyhow};
use burn::tensor::Device;
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DeviceChoice {
    /// Burn's pure-Rust CPU backend (flex, multi-threaded, SIMD).
    Cpu,
    /// wgpu: Vulkan/Metal/DX12 GPU, or lavapipe on a machine without one.
    Wgpu,
    /// Burn's deprecated ndarray CPU backend (built with `--features ndarray`; benchmarks only).
    #[cfg(feature = "ndarray")]
    Ndarray,
}

impl DeviceChoice {
    pub fn init(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            DeviceChoice::Ndarray => Ok(Device::ndarray()),
            DeviceChoice::Wgpu => Device::wgpu_options()
                .init()
                .map_err(|e| anyhow!("no wgpu device: {e} (on a machine without a GPU install Debian's mesa-vulkan-drivers)")),
        }
    }
}
