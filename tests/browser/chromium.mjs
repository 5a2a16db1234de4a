// Headless Chromium flags shared by the browser tests and the browser benchmarks: no network
// side traffic; WebGPU on SwiftShader (the CPU) where there is no GPU, or no WebGPU at all.
export const COMMON = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];
export const WEBGPU = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-angle=swiftshader", "--use-webgpu-adapter=swiftshader"];
export const NO_WEBGPU = ["--disable-gpu", "--disable-features=WebGPU"];
