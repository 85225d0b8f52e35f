"""Graph to library: the compile child, CPU and WebGPU schedules, attention kernels, the wasm link, TVM's web
runtime objects, and the toolchain they need."""
