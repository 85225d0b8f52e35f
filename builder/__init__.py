"""mlcbuild: compile LLMs to WebGPU model libraries that export hidden states."""

__version__ = "0.1.0"
